"""A webhook channel: one POST of a Slack-compatible JSON body (:func:`messages.slack_body`).

2xx is delivered. 408, 425, 429 and 5xx, timeouts and connection errors are worth another try
(429's ``Retry-After`` is honoured as the shortest wait). Any other answer (a 3xx, since redirects
are not followed, and 4xx: Slack answers 403/404 for a revoked or mistyped hook, 400 for a body it
refuses) is permanent: the delivery fails at once, visibly, instead of repeating for an hour the
same refusal; ``openmart alerts retry`` sends it again once the channel is fixed.

The URL is a secret: errors name it as ``scheme://host/***`` and are scrubbed."""

from __future__ import annotations

import httpx

from openmart import secrets
from openmart.alerting.channels import DeliveryError, shown_url
from openmart.alerting.messages import Message, slack_body

#: the delivery's id, the same on every attempt: a receiver drops a message it has seen
IDEMPOTENCY_HEADER = "X-Openmart-Delivery"
RETRYABLE = frozenset({408, 425, 429})


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: rare from webhooks; the backoff decides
        return None


def send(url: str, message: Message, *, timeout: float = 10.0) -> None:
    """POST the message; raises :class:`DeliveryError` (scrubbed) when it was not taken."""
    where = f"webhook {shown_url(url)}"
    headers = {"User-Agent": "openmart-alerts", "Content-Type": "application/json"}
    if message.delivery_id is not None:
        headers[IDEMPOTENCY_HEADER] = str(message.delivery_id)
    try:
        response = httpx.post(url, json=slack_body(message), headers=headers, timeout=timeout, follow_redirects=False)
    except httpx.TimeoutException:
        raise DeliveryError(f"{where}: no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        # httpx's messages may hold the URL: scrubbed by DeliveryError, and the type says enough
        raise DeliveryError(f"{where}: {type(exc).__name__}: {secrets.scrub(str(exc))}") from None
    status = response.status_code
    if 200 <= status < 300:
        return
    answer = " ".join(response.text[:300].split())
    retryable = status in RETRYABLE or status >= 500
    error = DeliveryError(f"{where}: HTTP {status} {answer}".rstrip(), permanent=not retryable)
    error.retry_after = _retry_after(response) if status == 429 else None  # type: ignore[attr-defined]
    raise error
