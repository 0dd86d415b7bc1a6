"""The ``alerts`` table and its lifecycle, behind typed functions.

An alert is a breached threshold, keyed by what breached: (subscription, monitor, metric,
feature, group). It is ``open`` until someone ``acknowledged`` it, and ``resolved`` by a person
or by a later evaluation in which the same measurement passes (a value within its threshold).
While one is not resolved, the same breach again does not open another: the alert is updated
with the latest evaluation and counts its ``occurrences`` (a partial unique index keeps it so).

The evaluation runner calls :func:`record_breaches` and :func:`resolve_passing` in its final
transaction; people call :func:`acknowledge` and :func:`resolve` (API and CLI). Every function
takes the caller's connection.

Opening and resolving queue a message to each of the subscription's enabled alert channels in
the same transaction (:func:`openmart.mart.alert_deliveries.enqueue`, an outbox); a repeated
breach and an acknowledgement queue nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from openmart.errors import NotFound, ValidationError
from openmart.mart import alert_deliveries, models


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


#: who resolves an alert when a later evaluation passes
BY_EVALUATION = "evaluation"


@dataclass(frozen=True)
class AlertKey:
    """What breached: an alert is one per key while it is not resolved."""

    monitor: str
    metric: str
    feature: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Breach:
    """A breached measurement stored by the evaluation, for :func:`record_breaches`."""

    key: AlertKey
    measurement_id: int
    message: str


@dataclass(frozen=True)
class AlertRecord:
    """One row of ``alerts``."""

    id: int
    subscription_id: int
    subscription: str
    monitor: str
    metric: str
    feature: str | None
    group: str | None
    message: str
    status: AlertStatus
    occurrences: int
    evaluation_id: int
    measurement_id: int
    last_evaluation_id: int | None
    created_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolved_evaluation_id: int | None
    note: str | None

    @property
    def key(self) -> AlertKey:
        return AlertKey(self.monitor, self.metric, self.feature, self.group)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["status"] = str(self.status)
        return out


@dataclass(frozen=True)
class AlertChanges:
    """What an evaluation did to the alerts: ids opened, updated (breached again), resolved."""

    opened: tuple[int, ...] = ()
    updated: tuple[int, ...] = ()
    resolved: tuple[int, ...] = ()


COLUMNS = (
    "id",
    "subscription",
    "status",
    "monitor",
    "metric",
    "feature",
    "group",
    "message",
    "occurrences",
    "evaluation_id",
    "last_evaluation_id",
    "created_at",
    "last_seen_at",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "resolved_by",
    "resolved_evaluation_id",
    "note",
)


def _select() -> sa.Select[Any]:
    return sa.select(models.Alert, models.Subscription.name.label("subscription")).join(
        models.Subscription, models.Subscription.id == models.Alert.subscription_id
    )


def _record(row: models.Alert, subscription: str) -> AlertRecord:
    return AlertRecord(
        id=row.id,
        subscription_id=row.subscription_id,
        subscription=subscription,
        monitor=row.monitor,
        metric=row.metric,
        feature=row.feature,
        group=row.group,
        message=row.message,
        status=AlertStatus(row.status),
        occurrences=row.occurrences,
        evaluation_id=row.evaluation_id,
        measurement_id=row.measurement_id,
        last_evaluation_id=row.last_evaluation_id,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        resolved_evaluation_id=row.resolved_evaluation_id,
        note=row.note,
    )


def _filtered(q: sa.Select[Any], status: AlertStatus | str | None, subscription: str | None) -> sa.Select[Any]:
    if status is not None and str(status) != "all":
        q = q.where(models.Alert.status == str(AlertStatus(status)))
    if subscription is not None:
        q = q.where(models.Subscription.name == subscription)
    return q.order_by(models.Alert.id)


def parse_status(value: AlertStatus | str | None) -> AlertStatus | None:
    """A status filter as given by a person: a status, or ``all``/None for every alert."""
    if value is None or str(value) == "all":
        return None
    try:
        return AlertStatus(str(value))
    except ValueError:
        raise ValidationError(
            f"alert status {value!r}: choose from {', '.join(AlertStatus)} or all", value=value
        ) from None


def list_alerts(
    conn: Connection, *, status: AlertStatus | str | None = AlertStatus.OPEN, subscription: str | None = None
) -> list[AlertRecord]:
    """Alerts with this status (None or ``all``: every one), oldest first."""
    session = sa.orm.Session(bind=conn)
    return [_record(a, name) for a, name in session.execute(_filtered(_select(), parse_status(status), subscription))]


def frame(
    conn: Connection, *, status: AlertStatus | str | None = AlertStatus.OPEN, subscription: str | None = None
) -> pd.DataFrame:
    """:func:`list_alerts` as a DataFrame (one column per :data:`COLUMNS` and the row's ids)."""
    q = _filtered(_select(), parse_status(status), subscription)
    return pd.read_sql_query(q, conn)


def for_evaluation(conn: Connection, evaluation_id: int) -> list[AlertRecord]:
    """The alerts an evaluation opened, updated (breached again) or resolved, oldest first."""
    a = models.Alert
    touched = sa.or_(
        a.evaluation_id == evaluation_id,
        a.last_evaluation_id == evaluation_id,
        a.resolved_evaluation_id == evaluation_id,
    )
    session = sa.orm.Session(bind=conn)
    return [_record(row, name) for row, name in session.execute(_select().where(touched).order_by(a.id))]


def get(conn: Connection, alert_id: int, *, for_update: bool = False) -> AlertRecord:
    q = _select().where(models.Alert.id == alert_id)
    if for_update:
        q = q.with_for_update(of=models.Alert)
    found = sa.orm.Session(bind=conn).execute(q).first()
    if found is None:
        raise NotFound(f"no alert {alert_id}")
    return _record(*found)


def record_breaches(
    conn: Connection, subscription_id: int, evaluation_id: int, breaches: Sequence[Breach]
) -> AlertChanges:
    """One statement: open an alert per new breach, or update the unresolved alert of the same
    key (latest evaluation and measurement, message, occurrences + 1)."""
    if not breaches:
        return AlertChanges()
    latest = {b.key: b for b in breaches}  # one row per key: a statement may not update a row twice
    rows = [
        {
            "subscription_id": subscription_id,
            "evaluation_id": evaluation_id,
            "measurement_id": b.measurement_id,
            "last_evaluation_id": evaluation_id,
            "last_measurement_id": b.measurement_id,
            "monitor": b.key.monitor,
            "metric": b.key.metric,
            "feature": b.key.feature,
            "group": b.key.group,
            "message": b.message,
            "status": str(AlertStatus.OPEN),
        }
        for b in latest.values()
    ]
    stmt = insert(models.Alert).values(rows)
    table = models.Alert.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.subscription_id, table.c.monitor, table.c.metric, table.c.feature, table.c.group],
        index_where=table.c.status != str(AlertStatus.RESOLVED),
        set_={
            "last_evaluation_id": stmt.excluded.last_evaluation_id,
            "last_measurement_id": stmt.excluded.last_measurement_id,
            "message": stmt.excluded.message,
            "occurrences": table.c.occurrences + 1,
            "last_seen_at": sa.func.now(),
        },
    ).returning(table.c.id, sa.literal_column("xmax = 0").label("inserted"))
    opened, updated = [], []
    for alert_id, inserted in conn.execute(stmt):
        (opened if inserted else updated).append(int(alert_id))
    alert_deliveries.enqueue(conn, opened, alert_deliveries.DeliveryEvent.OPENED)  # a repeat queues nothing
    return AlertChanges(opened=tuple(sorted(opened)), updated=tuple(sorted(updated)))


def resolve_passing(
    conn: Connection, subscription_id: int, evaluation_id: int, passing: Sequence[AlertKey]
) -> list[int]:
    """Resolve the subscription's unresolved alerts whose key passed in this evaluation (one
    statement); their ids."""
    if not passing:
        return []
    keys = sa.values(
        sa.column("monitor", sa.String),
        sa.column("metric", sa.String),
        sa.column("feature", sa.Text),
        sa.column("grp", sa.Text),
        name="passing",
    ).data([(k.monitor, k.metric, k.feature, k.group) for k in passing])
    a = models.Alert
    done = conn.execute(
        sa.update(a)
        .where(
            a.subscription_id == subscription_id,
            a.status != str(AlertStatus.RESOLVED),
            a.monitor == keys.c.monitor,
            a.metric == keys.c.metric,
            a.feature.is_not_distinct_from(keys.c.feature),
            a.group.is_not_distinct_from(keys.c.grp),
        )
        .values(
            status=str(AlertStatus.RESOLVED),
            resolved_at=sa.func.now(),
            resolved_by=BY_EVALUATION,
            resolved_evaluation_id=evaluation_id,
        )
        .returning(a.id)
    )
    resolved = sorted(int(i) for i in done.scalars())
    alert_deliveries.enqueue(conn, resolved, alert_deliveries.DeliveryEvent.RESOLVED)
    return resolved


def acknowledge(conn: Connection, alert_id: int, *, by: str | None = None, note: str | None = None) -> AlertRecord:
    """open -> acknowledged (someone is on it). An acknowledged or resolved alert is refused."""
    current = get(conn, alert_id, for_update=True)
    if current.status is not AlertStatus.OPEN:
        raise ValidationError(f"alert {alert_id} is {current.status} already: only an open alert can be acknowledged")
    conn.execute(
        sa.update(models.Alert)
        .where(models.Alert.id == alert_id)
        .values(
            status=str(AlertStatus.ACKNOWLEDGED),
            acknowledged_at=sa.func.now(),
            acknowledged_by=by,
            note=note if note is not None else models.Alert.note,
        )
    )
    return get(conn, alert_id)


def resolve(conn: Connection, alert_id: int, *, by: str | None = None, note: str | None = None) -> AlertRecord:
    """open or acknowledged -> resolved. A resolved alert is refused (the same breach again
    opens a new one)."""
    current = get(conn, alert_id, for_update=True)
    if current.status is AlertStatus.RESOLVED:
        who = f" by {current.resolved_by}" if current.resolved_by else ""
        raise ValidationError(f"alert {alert_id} is resolved already{who}")
    conn.execute(
        sa.update(models.Alert)
        .where(models.Alert.id == alert_id)
        .values(
            status=str(AlertStatus.RESOLVED),
            resolved_at=sa.func.now(),
            resolved_by=by,
            note=note if note is not None else models.Alert.note,
        )
    )
    alert_deliveries.enqueue(conn, [alert_id], alert_deliveries.DeliveryEvent.RESOLVED)
    return get(conn, alert_id)
