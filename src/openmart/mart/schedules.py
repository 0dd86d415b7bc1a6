"""The monitors' schedules (``monitors.schedule_seconds`` and ``monitors.next_run_at``) behind
typed functions: list them, set one, and claim the runs that are due.

A monitor is scheduled when ``next_run_at`` is set; it runs every ``schedule_seconds`` (NULL: its
kind's default, which the caller passes as ``defaults``). Slots lie on a grid anchored where the
schedule was armed: ``next_run_at`` only ever moves forward by whole periods.

Claiming (:func:`claim_next`) is ONE ``UPDATE ... WHERE next_run_at <= now ... RETURNING``: the
row moves to its first slot after ``now``, so a second claimer finds nothing due (never the same
slot twice), and a monitor that missed several slots during downtime is claimed once. Claims are
also serialised by a transaction-level advisory lock held for the claim's milliseconds (not for
the evaluation), so two claimers never split one subscription's due monitors between them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openmart.mart.engine import advisory_key

#: the period of a row whose kind has no default and no schedule_seconds (cannot be armed so; a guard)
FALLBACK_SECONDS = 3600


@dataclass(frozen=True)
class StoredSchedule:
    """One monitor's schedule as stored."""

    subscription_id: int
    subscription: str
    kind: str
    enabled: bool
    schedule_seconds: int | None  # the monitor's own period; None: its kind's default
    next_run_at: datetime | None  # None: not scheduled


@dataclass(frozen=True)
class ClaimedRun:
    """A monitor's due run, claimed: ``due_at`` was its ``next_run_at``, ``next_run_at`` its new one."""

    monitor_id: int
    subscription_id: int
    kind: str
    every_seconds: int
    due_at: datetime
    next_run_at: datetime

    @property
    def slot(self) -> datetime:
        """The latest slot at or before the claim's ``now`` (``due_at`` unless slots were missed)."""
        return self.next_run_at - timedelta(seconds=self.every_seconds)

    @property
    def missed(self) -> int:
        """Slots skipped (downtime): they are not run one by one, this run stands for them."""
        return round((self.slot - self.due_at).total_seconds() / self.every_seconds)


def now(conn: Connection) -> datetime:
    """The database's clock (every ``serve`` process agrees on it, whatever their own clocks say)."""
    return conn.execute(sa.text("SELECT now()")).scalar_one()


_LIST = """
SELECT m.subscription_id, s.name, m.kind, m.enabled, m.schedule_seconds, m.next_run_at
FROM monitors m JOIN subscriptions s ON s.id = m.subscription_id
{where}
ORDER BY s.name, m.id
"""


def list_schedules(conn: Connection, subscription_id: int | None = None) -> list[StoredSchedule]:
    """Every monitor's schedule (or one subscription's), by subscription name."""
    where = "" if subscription_id is None else "WHERE m.subscription_id = :s"
    rows = conn.execute(sa.text(_LIST.format(where=where)), {"s": subscription_id}).all()
    return [StoredSchedule(int(a), str(b), str(c), bool(d), e, f) for a, b, c, d, e, f in rows]


_SET = """
UPDATE monitors SET
  schedule_seconds = :seconds,
  next_run_at = CASE WHEN CAST(:arm AS integer) IS NULL THEN NULL
                     ELSE now() + make_interval(secs => CAST(:arm AS integer)) END,
  updated_at = now()
WHERE subscription_id = :s AND kind = :kind
RETURNING subscription_id, kind, enabled, schedule_seconds, next_run_at
"""


def set_schedule(
    conn: Connection, subscription_id: int, kind: str, *, schedule_seconds: int | None, arm_seconds: int | None
) -> StoredSchedule | None:
    """Give a monitor its period (None: its kind's default) and arm it: the next run
    ``arm_seconds`` from now (None: not scheduled). None when the subscription has no such monitor."""
    row = conn.execute(
        sa.text(_SET), {"seconds": schedule_seconds, "arm": arm_seconds, "s": subscription_id, "kind": kind}
    ).first()
    if row is None:
        return None
    name = conn.execute(sa.text("SELECT name FROM subscriptions WHERE id = :s"), {"s": subscription_id}).scalar_one()
    return StoredSchedule(int(row[0]), str(name), str(row[1]), bool(row[2]), row[3], row[4])


_PERIOD = "coalesce(schedule_seconds, (CAST(:defaults AS jsonb) ->> kind)::integer, :fallback)"

_CLAIM = f"""
WITH first_due AS (
  SELECT subscription_id FROM monitors
  WHERE enabled AND next_run_at <= :now
  ORDER BY next_run_at, id LIMIT 1
), period AS (
  SELECT id, next_run_at AS due_at, {_PERIOD} AS every FROM monitors
  WHERE subscription_id = (SELECT subscription_id FROM first_due)
)
UPDATE monitors m
SET next_run_at = m.next_run_at + make_interval(
      secs => (p.every * (floor(extract(epoch FROM (:now - m.next_run_at)) / p.every) + 1))::double precision)
FROM period p
WHERE m.id = p.id AND m.enabled AND m.next_run_at <= :now
RETURNING m.id, m.subscription_id, m.kind, p.every, p.due_at, m.next_run_at
"""


def claim_next(conn: Connection, at: datetime, defaults: Mapping[str, int]) -> list[ClaimedRun]:
    """Claim the due monitors of ONE subscription (the one due longest): each moves to its first
    slot after ``at``. Empty when nothing is due. Commit the caller's transaction to make the claim
    stick (and to release the claim lock)."""
    schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key("schedule-claim", str(schema))})
    params = {"now": at, "defaults": json.dumps(dict(defaults)), "fallback": FALLBACK_SECONDS}
    rows = conn.execute(sa.text(_CLAIM).bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True))), params)
    claimed = [ClaimedRun(int(i), int(s), str(k), int(e), d, n) for i, s, k, e, d, n in rows.all()]
    return sorted(claimed, key=lambda c: c.monitor_id)
