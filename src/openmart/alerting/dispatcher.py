"""The sender of the outbox (``alert_deliveries``): :func:`deliver_due` makes one pass.

Each delivery is claimed in a short transaction of its own, sent with no transaction open (a slow
receiver holds no lock and no connection), and marked in another short transaction right after,
so a sender that dies mid-pass resends at most the one message it was sending. Claiming one at a
time keeps every lease honest: a claimed delivery is sent at once, not after a batch of slow ones.

Retries: a failure worth retrying puts the delivery back as ``pending`` after a backoff, exponential
with jitter: ``base * factor**(attempt-1)`` (capped), ±``jitter``. With the defaults (30 s, x4, 6
attempts): ~30 s, 2 min, 8 min, 32 min, 1 h, then ``failed``. A permanent failure (see the
channel modules) fails at once. ``OPENMART_ALERT_RETRY_BASE``, ``OPENMART_ALERT_MAX_ATTEMPTS`` and
``OPENMART_ALERT_LEASE`` change the base, the attempts and the lease (seconds).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from openmart import secrets
from openmart.alerting import channels, email, messages, webhook
from openmart.alerting.channels import DeliveryError
from openmart.config import Settings
from openmart.errors import ValidationError
from openmart.mart import alert_deliveries
from openmart.mart.alert_channels import ChannelKind, ChannelRecord
from openmart.mart.alert_deliveries import ClaimedDelivery

log = logging.getLogger(__name__)

BASE_ENV = "OPENMART_ALERT_RETRY_BASE"
ATTEMPTS_ENV = "OPENMART_ALERT_MAX_ATTEMPTS"
LEASE_ENV = "OPENMART_ALERT_LEASE"
#: seconds a claim lasts: far longer than a send may take (timeouts are 300 s at most), so only a
#: sender that died loses its claim
DEFAULT_LEASE = 600.0


def _env_number(environ: Mapping[str, str], name: str, default: float, *, integer: bool = False) -> float:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ValidationError(f"{name}={raw!r}: expected a number", column=name) from None
    if value <= 0:
        raise ValidationError(f"{name}={raw!r}: expected a number above 0", column=name)
    return value


@dataclass(frozen=True)
class Backoff:
    base: float = 30.0
    factor: float = 4.0
    max_attempts: int = 6
    cap: float = 3600.0
    jitter: float = 0.2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Backoff:
        env = os.environ if environ is None else environ
        return cls(
            base=_env_number(env, BASE_ENV, cls.base),
            max_attempts=int(_env_number(env, ATTEMPTS_ENV, cls.max_attempts, integer=True)),
        )

    def delay(self, attempt: int) -> float:
        """Seconds before the attempt after ``attempt`` (1-based); jitter spreads many senders."""
        plain = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        return plain * (1 + random.uniform(-self.jitter, self.jitter))


@dataclass
class DeliveryCounts:
    """What one pass did: claimed, sent, put back to retry, failed for good, and superseded (a
    later claim took the row after this sender's lease passed: its outcome was not recorded)."""

    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    superseded: int = 0

    def add(self, other: DeliveryCounts) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def send_message(kind: ChannelKind | str, clear: Mapping[str, str], message: messages.Message) -> None:
    """Send one message through a channel of ``kind`` with its clear settings."""
    if str(kind) == ChannelKind.WEBHOOK:
        webhook.send(clear["url"], message, timeout=float(clear.get("timeout", "10")))
    else:
        email.send(clear, message)


def send_test(channel: ChannelRecord, settings: Settings) -> messages.Message:
    """Send a test message through ``channel`` now (no alert, no outbox); DeliveryError when it
    was not taken. Returns what was sent."""
    label = f"{channel.subscription}/{channel.name}"
    clear = channels.reveal(channel.stored_settings, settings, label)
    message = messages.test_message(channel.subscription, channel.name, messages.public_url(clear.get("public_url")))
    send_message(channel.kind, clear, message)
    return message


def _attempt(claim: ClaimedDelivery, settings: Settings) -> DeliveryError | None:
    """Send a claimed delivery; the error when it was not taken (every exception becomes one:
    a pass must go on to the next delivery)."""
    d = claim.delivery
    try:
        clear = channels.reveal(claim.channel_settings, settings, f"{d.subscription}/{d.channel}")
        message = messages.render(claim, messages.public_url(clear.get("public_url")))
        send_message(d.kind, clear, message)
        return None
    except DeliveryError as exc:
        return exc
    except Exception as exc:  # a missing key, a bug: retried like a transient failure, and visible
        log.exception("alert delivery %s: unexpected error", d.id)
        return DeliveryError(f"{type(exc).__name__}: {secrets.scrub(str(exc))}")


def _outcome(
    engine: Engine, claim: ClaimedDelivery, error: DeliveryError | None, backoff: Backoff, now: datetime | None
) -> DeliveryCounts:
    d = claim.delivery
    counts = DeliveryCounts(claimed=1)
    with engine.begin() as conn:
        if error is None:
            recorded = alert_deliveries.mark_sent(conn, d.id, attempt=claim.attempt)
            counts.sent = 1
            where = f"{d.subscription}/{d.channel}"
            log.info("alert delivery %s sent: %s of alert %s to %s", d.id, d.event, d.alert_id, where)
        elif error.permanent or claim.attempt >= backoff.max_attempts:
            recorded = alert_deliveries.mark_failed(conn, d.id, str(error), None, attempt=claim.attempt)
            counts.failed = 1
            why = "permanent" if error.permanent else f"attempt {claim.attempt} of {backoff.max_attempts}"
            log.warning("alert delivery %s failed (%s), giving up: %s", d.id, why, error)
        else:
            wait = backoff.delay(claim.attempt)
            wait = max(wait, getattr(error, "retry_after", None) or 0.0)
            when: datetime | timedelta = (now + timedelta(seconds=wait)) if now else timedelta(seconds=wait)
            recorded = alert_deliveries.mark_failed(conn, d.id, str(error), when, attempt=claim.attempt)
            counts.retrying = 1
            log.warning("alert delivery %s attempt %s failed, next in %.0f s: %s", d.id, claim.attempt, wait, error)
    if not recorded:
        log.warning("alert delivery %s: claimed again by another sender after this one's lease; outcome dropped", d.id)
        counts = DeliveryCounts(claimed=1, superseded=1)
    return counts


def deliver_due(
    engine: Engine,
    settings: Settings,
    *,
    limit: int = 100,
    now: datetime | None = None,
    backoff: Backoff | None = None,
    lease_seconds: float | None = None,
) -> DeliveryCounts:
    """One pass: send up to ``limit`` due deliveries, each claimed, sent and marked on its own.
    ``now``: the clock to judge what is due (the database's unless given: tests move it)."""
    backoff = backoff or Backoff.from_env()
    lease = lease_seconds if lease_seconds is not None else _env_number(os.environ, LEASE_ENV, DEFAULT_LEASE)
    total = DeliveryCounts()
    for _ in range(max(0, int(limit))):
        with engine.begin() as conn:
            claimed = alert_deliveries.claim_due(conn, 1, lease, now=now)
        if not claimed:
            break
        claim = claimed[0]
        total.add(_outcome(engine, claim, _attempt(claim, settings), backoff, now))
    return total


def describe(counts: DeliveryCounts | Mapping[str, Any]) -> str:
    """``2 sent, 1 to retry, 1 failed`` (what was done, for a line of output)."""
    c = counts if isinstance(counts, Mapping) else counts.to_dict()
    parts = [f"{c['sent']} sent"]
    if c.get("retrying"):
        parts.append(f"{c['retrying']} to retry")
    if c.get("failed"):
        parts.append(f"{c['failed']} failed")
    if c.get("superseded"):
        parts.append(f"{c['superseded']} superseded")
    return ", ".join(parts)
