"""What a message about an alert says, whatever carries it: a title, a few lines (subscription,
monitor, metric, feature/group, value against threshold, when, evaluation), a link to the
dashboard's alerts tab when a public base URL is known, and the same facts as data.

:func:`slack_body` shapes it for a webhook (Slack's ``text`` + ``blocks``, plus an ``openmart``
object with the structured alert); the email sender uses :attr:`Message.text`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from openmart.mart.alert_deliveries import ClaimedDelivery

PUBLIC_URL_ENV = "OPENMART_PUBLIC_URL"


@dataclass(frozen=True)
class Message:
    #: the delivery's id: the idempotency key receivers may use to drop a repeat (None: a test)
    delivery_id: int | None
    event: str
    subscription: str
    title: str
    lines: tuple[str, ...]
    link: str | None
    alert: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        body = [self.title, "", *self.lines]
        if self.link:
            body += ["", f"Dashboard: {self.link}"]
        return "\n".join(body)

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "event": self.event,
            "subscription": self.subscription,
            "title": self.title,
            "alert": self.alert,
            "link": self.link,
        }


def public_url(setting: str | None) -> str | None:
    """The base of dashboard links: the channel's ``public_url``, else ``OPENMART_PUBLIC_URL``."""
    base = (setting or os.environ.get(PUBLIC_URL_ENV) or "").strip().rstrip("/")
    return base or None


def dashboard_link(base: str | None, subscription: str) -> str | None:
    return f"{base}/dashboard/subscriptions/{quote(subscription, safe='')}?tab=alerts" if base else None


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _what(claim: ClaimedDelivery) -> str:
    d = claim.delivery
    where = "".join(f" [{k}={v}]" for k, v in (("feature", d.feature), ("group", d.group)) if v is not None)
    return f"{d.monitor}.{d.metric}{where}"


def _limit(claim: ClaimedDelivery) -> str:
    if claim.threshold is None:
        return ""
    side = "lower limit" if claim.threshold_type == "lower_limit" else "upper limit"
    return f" against the {side} {claim.threshold:g}"


def render(claim: ClaimedDelivery, base_url: str | None = None) -> Message:
    """The message for a claimed delivery (``opened`` or ``resolved``)."""
    d = claim.delivery
    what = _what(claim)
    lines = [f"Subscription: {d.subscription}", f"Metric: {what}"]
    if str(d.event) == "opened":
        title = f"openmart alert opened: {d.subscription} {what}"
        lines += [
            f"Value: {_num(claim.value)}{_limit(claim)}",
            f"Opened: {_when(claim.alert_created_at)} (evaluation {claim.evaluation_id})",
        ]
    else:
        title = f"openmart alert resolved: {d.subscription} {what}"
        if claim.resolved_by == "evaluation":
            how = f"by evaluation {claim.resolved_evaluation_id}"
            if claim.resolved_value is not None:
                how += f": value {_num(claim.resolved_value)}{_limit(claim)}"
        else:
            how = f"by {claim.resolved_by}" if claim.resolved_by else "by hand"
        lines += [
            f"Resolved: {_when(claim.resolved_at)} {how}",
            f"Last breach: {_num(claim.value)}{_limit(claim)}, {claim.occurrences} time(s) since "
            f"{_when(claim.alert_created_at)} (evaluation {claim.last_evaluation_id or claim.evaluation_id})",
        ]
        if claim.note:
            lines.append(f"Note: {claim.note}")
    lines.append(f"Alert {d.alert_id}: {claim.message}")
    alert = {
        "id": d.alert_id,
        "subscription": d.subscription,
        "monitor": d.monitor,
        "metric": d.metric,
        "feature": d.feature,
        "group": d.group,
        "status": d.alert_status,
        "message": claim.message,
        "value": claim.value,
        "threshold": claim.threshold,
        "threshold_type": claim.threshold_type,
        "occurrences": claim.occurrences,
        "evaluation_id": claim.evaluation_id,
        "last_evaluation_id": claim.last_evaluation_id,
        "opened_at": claim.alert_created_at.isoformat(),
        "resolved_at": claim.resolved_at.isoformat() if claim.resolved_at else None,
        "resolved_by": claim.resolved_by,
        "resolved_evaluation_id": claim.resolved_evaluation_id,
        "resolved_value": claim.resolved_value,
    }
    link = dashboard_link(base_url, d.subscription)
    return Message(d.id, str(d.event), d.subscription, title, tuple(lines), link, alert)


def test_message(subscription: str, channel: str, base_url: str | None = None) -> Message:
    """What ``channels.test`` sends: proof the channel works, about no alert."""
    lines = (f"Subscription: {subscription}", f"Channel: {channel}", f"Sent: {_when(datetime.now(UTC))}")
    title = f"openmart test message for {subscription} (channel {channel})"
    return Message(None, "test", subscription, title, lines, dashboard_link(base_url, subscription))


def _mrkdwn(text: str) -> str:
    """Slack's three escapes: its markup reads <...> as links and mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(message: Message) -> dict[str, Any]:
    """A body Slack's incoming webhooks accept (``text`` is the notification's fallback,
    ``blocks`` the layout) that other receivers can read as data (``openmart``)."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn("\n".join(message.lines))}},
    ]
    if message.link:
        link = f"<{message.link}|Open the alerts in the dashboard>"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": link}})
    key = f"delivery {message.delivery_id}" if message.delivery_id is not None else "test"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"openmart · {key}"}]})
    return {"text": message.title, "blocks": blocks, "openmart": message.to_dict()}
