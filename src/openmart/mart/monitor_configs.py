"""The ``monitors`` table: which monitors a subscription has, with their parameters, thresholds
and ``min_records``, behind typed functions. Every function takes the connection of the
caller's transaction. Rows come back as :class:`StoredMonitor` (plain data: the monitors layer
turns them into its own ``MonitorConfig``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from openmart.mart import models


@dataclass(frozen=True)
class StoredMonitor:
    kind: str
    parameters: dict[str, Any]
    thresholds: list[dict[str, Any]]
    min_records: int
    enabled: bool
    schedule_seconds: int | None = None  # the service's scheduler: None is the kind's default
    next_run_at: datetime | None = None  # None: not scheduled


def _armed(seconds: Any) -> Any:
    """``now() + seconds`` (NULL when seconds is NULL: not scheduled)."""
    return sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, sa.cast(seconds, sa.Float))


def upsert(
    conn: Connection,
    subscription_id: int,
    kind: str,
    *,
    parameters: Mapping[str, Any],
    thresholds: Sequence[Mapping[str, Any]],
    min_records: int,
    default_schedule_seconds: int | None = None,
) -> None:
    """Enable the subscription's monitor of this kind, replacing its configuration. A new or
    re-enabled monitor is scheduled (its own period, else ``default_schedule_seconds``; none: not
    scheduled); reconfiguring an enabled one keeps its schedule."""
    default = sa.literal(default_schedule_seconds, sa.Integer)
    stmt = insert(models.Monitor).values(
        subscription_id=subscription_id,
        kind=kind,
        parameters=dict(parameters),
        thresholds=[dict(t) for t in thresholds],
        min_records=int(min_records),
        enabled=True,
        next_run_at=_armed(default),
    )
    rearmed = sa.case(
        (models.Monitor.enabled, models.Monitor.next_run_at),
        else_=_armed(sa.func.coalesce(models.Monitor.schedule_seconds, default)),
    )
    stmt = stmt.on_conflict_do_update(
        constraint="uq_monitors_subscription_kind",
        set_={k: stmt.excluded[k] for k in ("parameters", "thresholds", "min_records", "enabled")}
        | {"updated_at": sa.func.now(), "next_run_at": rearmed},
    )
    conn.execute(stmt)


def disable(conn: Connection, subscription_id: int, kind: str) -> bool:
    """Disable it (its history stays); False when the subscription has no monitor of this kind."""
    done = conn.execute(
        sa.update(models.Monitor)
        .where(models.Monitor.subscription_id == subscription_id, models.Monitor.kind == kind)
        .values(enabled=False, updated_at=sa.func.now())
    )
    return bool(done.rowcount)


def list_for(conn: Connection, subscription_id: int) -> list[StoredMonitor]:
    rows = conn.execute(
        sa.select(
            models.Monitor.kind,
            models.Monitor.parameters,
            models.Monitor.thresholds,
            models.Monitor.min_records,
            models.Monitor.enabled,
            models.Monitor.schedule_seconds,
            models.Monitor.next_run_at,
        )
        .where(models.Monitor.subscription_id == subscription_id)
        .order_by(models.Monitor.id)
    ).all()
    return [StoredMonitor(k, dict(p or {}), list(t or []), int(m), bool(e), s, n) for k, p, t, m, e, s, n in rows]


def update_parameters(conn: Connection, subscription_id: int, kind: str, parameters: Mapping[str, Any]) -> None:
    """Replace a monitor's parameters (e.g. what it computed once and keeps)."""
    conn.execute(
        sa.update(models.Monitor)
        .where(models.Monitor.subscription_id == subscription_id, models.Monitor.kind == kind)
        .values(parameters=dict(parameters))
    )
