"""Alert delivery: channels (a webhook with a Slack-compatible body, email over SMTP with
STARTTLS), the text of a message, and the dispatcher that sends the outbox
(``alert_deliveries``) with retries and backoff. docs/alerts.md describes the semantics."""
