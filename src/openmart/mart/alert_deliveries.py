"""The ``alert_deliveries`` table: an outbox of messages about alerts, behind typed functions.

One row per (alert, channel, event), ``event`` ``opened`` or ``resolved``. :func:`enqueue` makes
the rows in the transaction that opens or resolves the alerts (:mod:`openmart.mart.alerts` calls
it), so a message is queued if and only if the transition is committed; the unique key makes a
repeat a no-op, which is what makes *one* message per transition.

A sender (:mod:`openmart.alerting.dispatcher`) then:

1. :func:`claim_due` in a short transaction: due rows (``pending`` whose ``next_attempt_at`` has
   come, or ``sending`` whose ``lease_until`` passed: their sender died) become ``sending`` with a
   lease, ``attempts + 1``. ``FOR UPDATE SKIP LOCKED``: two senders never claim one row at once.
   An alert's ``resolved`` is not claimed while its ``opened`` to the same channel is still
   pending or sending, so a channel never hears of a resolution before the opening.
2. sends, outside any transaction;
3. :func:`mark_sent`, or :func:`mark_failed` with the next attempt's time (``None``: give up,
   status ``failed``). Both are fenced by the attempt number: a sender whose lease passed and
   whose row was claimed again cannot overwrite the newer claim's outcome.

Delivery is **at least once**: a sender that dies after the receiver took the message but before
:func:`mark_sent` committed leaves the row ``sending``; when the lease passes it is sent again.
Every message carries the row's id as an idempotency key (``X-Openmart-Delivery`` header, the
mail's ``Message-ID``) so a receiver can drop the repeat.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from openmart.errors import NotFound, ValidationError
from openmart.mart import models


class DeliveryEvent(StrEnum):
    OPENED = "opened"
    RESOLVED = "resolved"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


def parse_status(value: DeliveryStatus | str | None) -> DeliveryStatus | None:
    """A status filter as a person gives it: a status, or ``all``/None for every delivery."""
    if value is None or str(value) == "all":
        return None
    try:
        return DeliveryStatus(str(value))
    except ValueError:
        choices = ", ".join(DeliveryStatus)
        raise ValidationError(
            f"delivery status {value!r}: choose from {choices} or all", column="status", value=value
        ) from None


@dataclass(frozen=True)
class DeliveryRecord:
    """One row of ``alert_deliveries`` with what it is about: the subscription, the channel and
    the alert's key."""

    id: int
    alert_id: int
    subscription_id: int
    subscription: str
    channel_id: int
    channel: str
    kind: str
    event: DeliveryEvent
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    monitor: str
    metric: str
    feature: str | None
    group: str | None
    alert_status: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["event"], out["status"] = str(self.event), str(self.status)
        return out


COLUMNS = tuple(DeliveryRecord.__dataclass_fields__)


@dataclass(frozen=True)
class ClaimedDelivery:
    """A claimed delivery and everything its message says; ``attempt`` fences the marks."""

    delivery: DeliveryRecord
    #: the channel's settings as stored (sealed): the sender reveals them in memory
    channel_settings: Mapping[str, str]
    message: str
    occurrences: int
    evaluation_id: int
    last_evaluation_id: int | None
    alert_created_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolved_evaluation_id: int | None
    note: str | None
    #: the latest breaching measurement
    value: float | None
    threshold: float | None
    threshold_type: str | None
    #: the passing measurement of the evaluation that resolved it (None when a person did)
    resolved_value: float | None

    @property
    def attempt(self) -> int:
        return self.delivery.attempts


# -- the outbox ------------------------------------------------------------------------------------


def enqueue(conn: Connection, alert_ids: Iterable[int], event: DeliveryEvent | str) -> int:
    """Queue ``event`` of these alerts to every enabled channel of their subscriptions (one
    statement; a delivery queued already is left as it is). Returns how many were queued."""
    ids = sorted({int(i) for i in alert_ids})
    if not ids:
        return 0
    event = DeliveryEvent(str(event))
    a, c, d = models.Alert, models.AlertChannel, models.AlertDelivery
    source = (
        sa.select(a.id, c.id, sa.literal(str(event), sa.String))
        .join(c, sa.and_(c.subscription_id == a.subscription_id, c.enabled))
        .where(a.id.in_(ids))
    )
    stmt = (
        insert(d)
        .from_select([d.alert_id, d.channel_id, d.event], source)
        .on_conflict_do_nothing(index_elements=[d.alert_id, d.channel_id, d.event])
    )
    return int(conn.execute(stmt).rowcount or 0)


_DUE = """
WITH due AS (
    SELECT d.id
    FROM alert_deliveries d
    JOIN alert_channels c ON c.id = d.channel_id AND c.enabled
    WHERE ((d.status = 'pending' AND d.next_attempt_at <= {now})
           OR (d.status = 'sending' AND d.lease_until <= {now}))
      AND NOT (d.event = 'resolved' AND EXISTS (
            SELECT 1 FROM alert_deliveries o
            WHERE o.alert_id = d.alert_id AND o.channel_id = d.channel_id
              AND o.event = 'opened' AND o.status IN ('pending', 'sending')))
    ORDER BY d.next_attempt_at, d.id
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE alert_deliveries AS t
SET status = 'sending', attempts = t.attempts + 1,
    lease_until = {now} + make_interval(secs => :lease)
FROM due WHERE t.id = due.id
RETURNING t.id
"""


def claim_due(
    conn: Connection, limit: int, lease_seconds: float, *, now: datetime | None = None
) -> list[ClaimedDelivery]:
    """Claim up to ``limit`` due deliveries for ``lease_seconds`` (see the module's docstring);
    ``now``: the database's clock unless given. Commit the caller's transaction before sending."""
    if limit < 1:
        return []
    params: dict[str, Any] = {"limit": int(limit), "lease": float(lease_seconds)}
    stmt = sa.text(_DUE.format(now=":now" if now is not None else "now()"))
    if now is not None:
        stmt = stmt.bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True)))
        params["now"] = now
    ids = [int(i) for i in conn.execute(stmt, params).scalars()]
    return _claimed(conn, ids) if ids else []


def _fence(stmt: Any, delivery_id: int, attempt: int | None) -> Any:
    d = models.AlertDelivery
    stmt = stmt.where(d.id == delivery_id, d.status == str(DeliveryStatus.SENDING))
    return stmt if attempt is None else stmt.where(d.attempts == attempt)


def mark_sent(conn: Connection, delivery_id: int, *, attempt: int | None = None) -> bool:
    """sending -> sent. With ``attempt``: only if no later claim took the row (False then)."""
    d = models.AlertDelivery
    stmt = _fence(sa.update(d), delivery_id, attempt).values(
        status=str(DeliveryStatus.SENT), sent_at=sa.func.now(), lease_until=None, last_error=None
    )
    return bool(conn.execute(stmt).rowcount)


def mark_failed(
    conn: Connection,
    delivery_id: int,
    error: str,
    next_attempt_at: datetime | timedelta | None,
    *,
    attempt: int | None = None,
) -> bool:
    """sending -> pending again at ``next_attempt_at`` (a timedelta: from the database's now), or
    (None) -> failed for good. ``error`` must be scrubbed of secrets by the caller."""
    d = models.AlertDelivery
    values: dict[str, Any] = {"last_error": error[:2000], "lease_until": None}
    if next_attempt_at is None:
        values["status"] = str(DeliveryStatus.FAILED)
    else:
        values["status"] = str(DeliveryStatus.PENDING)
        if isinstance(next_attempt_at, timedelta):
            values["next_attempt_at"] = sa.func.now() + next_attempt_at
        else:
            values["next_attempt_at"] = next_attempt_at
    return bool(conn.execute(_fence(sa.update(d), delivery_id, attempt).values(**values)).rowcount)


def retry(conn: Connection, delivery_id: int) -> DeliveryRecord:
    """failed (or pending, waiting for its next attempt) -> pending, due now, with a fresh count
    of attempts. A delivery being sent or sent already is refused."""
    d = models.AlertDelivery
    current = get(conn, delivery_id, for_update=True)
    if current.status not in (DeliveryStatus.FAILED, DeliveryStatus.PENDING):
        raise ValidationError(
            f"delivery {delivery_id} is {current.status}: only a failed or pending delivery can be retried",
            column="status",
            value=str(current.status),
        )
    conn.execute(
        sa.update(d)
        .where(d.id == delivery_id)
        .values(status=str(DeliveryStatus.PENDING), attempts=0, next_attempt_at=sa.func.now(), lease_until=None)
    )
    return get(conn, delivery_id)


# -- reading ---------------------------------------------------------------------------------------


def _select() -> sa.Select[Any]:
    d, a, c, s = models.AlertDelivery, models.Alert, models.AlertChannel, models.Subscription
    return (
        sa.select(
            d.id,
            d.alert_id,
            s.id.label("subscription_id"),
            s.name.label("subscription"),
            c.id.label("channel_id"),
            c.name.label("channel"),
            c.kind,
            d.event,
            d.status,
            d.attempts,
            d.next_attempt_at,
            d.lease_until,
            d.last_error,
            d.created_at,
            d.sent_at,
            a.monitor,
            a.metric,
            a.feature,
            a.group,
            a.status.label("alert_status"),
        )
        .join(a, a.id == d.alert_id)
        .join(c, c.id == d.channel_id)
        .join(s, s.id == a.subscription_id)
    )


def _record(row: sa.Row[Any]) -> DeliveryRecord:
    m = row._mapping
    values = {name: m[name] for name in COLUMNS}
    values["event"] = DeliveryEvent(values["event"])
    values["status"] = DeliveryStatus(values["status"])
    return DeliveryRecord(**values)


def get(conn: Connection, delivery_id: int, *, for_update: bool = False) -> DeliveryRecord:
    q = _select().where(models.AlertDelivery.id == delivery_id)
    if for_update:
        q = q.with_for_update(of=models.AlertDelivery)
    row = conn.execute(q).first()
    if row is None:
        raise NotFound(f"no alert delivery {delivery_id}")
    return _record(row)


def list_deliveries(
    conn: Connection,
    *,
    status: DeliveryStatus | str | None = None,
    subscription: str | None = None,
    alert_ids: Sequence[int] | None = None,
    limit: int | None = None,
) -> list[DeliveryRecord]:
    """Deliveries, oldest first (with ``limit``: the newest ``limit`` of them, oldest first)."""
    d = models.AlertDelivery
    q = _select()
    wanted = parse_status(status)
    if wanted is not None:
        q = q.where(d.status == str(wanted))
    if subscription is not None:
        q = q.where(models.Subscription.name == subscription)
    if alert_ids is not None:
        q = q.where(d.alert_id.in_([int(i) for i in alert_ids]))
    if limit is not None:
        rows = conn.execute(q.order_by(d.id.desc()).limit(int(limit))).all()[::-1]
    else:
        rows = conn.execute(q.order_by(d.id)).all()
    return [_record(r) for r in rows]


def frame(
    conn: Connection,
    *,
    status: DeliveryStatus | str | None = None,
    subscription: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """:func:`list_deliveries` as a DataFrame, one column per :data:`COLUMNS`."""
    rows = list_deliveries(conn, status=status, subscription=subscription, limit=limit)
    return pd.DataFrame([{**r.__dict__, "event": str(r.event), "status": str(r.status)} for r in rows], columns=COLUMNS)


def failed_by_subscription(conn: Connection) -> dict[int, int]:
    """How many deliveries gave up (status failed), per subscription id (those with none left out)."""
    d, a = models.AlertDelivery, models.Alert
    rows = conn.execute(
        sa.select(a.subscription_id, sa.func.count())
        .select_from(d)
        .join(a, a.id == d.alert_id)
        .where(d.status == str(DeliveryStatus.FAILED))
        .group_by(a.subscription_id)
    ).all()
    return {int(sid): int(n) for sid, n in rows}


def for_alerts(conn: Connection, alert_ids: Iterable[int]) -> dict[int, list[DeliveryRecord]]:
    """The deliveries of each of these alerts, oldest first (an alert with none is left out)."""
    ids = sorted({int(i) for i in alert_ids})
    out: dict[int, list[DeliveryRecord]] = {}
    if not ids:
        return out
    for record in list_deliveries(conn, alert_ids=ids):
        out.setdefault(record.alert_id, []).append(record)
    return out


_DETAILS = """
SELECT d.id, c.settings AS channel_settings, a.message, a.occurrences, a.evaluation_id,
       a.last_evaluation_id, a.created_at AS alert_created_at, a.last_seen_at, a.resolved_at,
       a.resolved_by, a.resolved_evaluation_id, a.note,
       m.value, m.threshold, m.threshold_type, r.value AS resolved_value
FROM alert_deliveries d
JOIN alerts a ON a.id = d.alert_id
JOIN alert_channels c ON c.id = d.channel_id
LEFT JOIN measurements m ON m.id = coalesce(a.last_measurement_id, a.measurement_id)
LEFT JOIN LATERAL (
    SELECT x.value FROM measurements x
    WHERE x.evaluation_id = a.resolved_evaluation_id AND x.monitor = a.monitor AND x.metric = a.metric
      AND x.feature IS NOT DISTINCT FROM a.feature AND x."group" IS NOT DISTINCT FROM a."group"
    ORDER BY x.id LIMIT 1
) r ON true
WHERE d.id IN :ids
"""


def _claimed(conn: Connection, ids: list[int]) -> list[ClaimedDelivery]:
    q = _select().where(models.AlertDelivery.id.in_(ids))
    records = {r.id: r for r in (_record(row) for row in conn.execute(q))}
    stmt = sa.text(_DETAILS).bindparams(sa.bindparam("ids", expanding=True))
    out = []
    for row in conn.execute(stmt, {"ids": ids}).mappings():
        details = {k: v for k, v in row.items() if k != "id"}
        details["channel_settings"] = {str(k): str(v) for k, v in dict(details["channel_settings"]).items()}
        out.append(ClaimedDelivery(delivery=records[int(row["id"])], **details))
    return sorted(out, key=lambda c: c.delivery.id)
