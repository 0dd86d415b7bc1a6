"""Runs the monitors whose schedule is due: claim, then evaluate (``openmart serve`` calls
:func:`run_due` every few seconds; ``openmart monitor run-due`` and ``Mart.run_due`` once).

Once per slot, at most
    A due run is claimed before it runs (:func:`openmart.mart.schedules.claim_next`: one UPDATE
    moves ``next_run_at`` to the first slot after now). Several ``serve`` processes on one mart
    may look at the same moment; one of them gets the slot, the others find nothing due. The
    evaluation then takes the subscription's advisory lock like any other, so it never overlaps a
    manual one. A process that dies between the claim and the evaluation loses that slot (the next
    slot runs as usual): a slot is run at most once, never twice.

Missed slots run once
    After downtime, a monitor whose ``next_run_at`` lies several periods back is claimed once and
    moves to its first future slot; ``ScheduledRun.missed`` says how many slots that run stands for.

One evaluation per subscription and window
    The due monitors of one subscription that look at the same window run as ONE evaluation
    (``kinds`` = those). Which window a kind looks at (:func:`openmart.monitors.schedule.scheduled_window`):

    - "history" (quality, fairness, plug-ins unless they say otherwise): every record up to the
      slot (``until`` = the slot, so ``evaluations.window_end`` names it; records scored after it
      belong to the next run). Labels come late: feedback falls in a window by its payload's
      scoring time, so a label logged after its payload's period was evaluated would never reach
      quality if each run looked at its period only.
    - "period" (drift, performance): the records of the period the run stands for, from
      ``slot - period`` (``- (missed + 1) x period`` after downtime, so no record goes unseen) to
      the slot. OpenScale's drift looks at the last three hours, and its performance monitor
      reports throughput and latency per hour; an average over all history would hide today.

A failed evaluation is recorded ``failed`` by the runner; the scheduler logs it and goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from openmart.context import SubscriptionContext
from openmart.errors import EvaluationFailed
from openmart.evaluation import runner
from openmart.mart import schedules, subscriptions
from openmart.mart.schedules import ClaimedRun
from openmart.mart.subscriptions import SubscriptionRecord
from openmart.monitors.schedule import HISTORY, defaults, scheduled_window

log = logging.getLogger(__name__)

ContextFor = Callable[[SubscriptionRecord], SubscriptionContext]


@dataclass(frozen=True)
class ScheduledRun:
    """One claimed run: the evaluation it became (``status`` finished or failed), or ``error``
    when no evaluation could start (the subscription was removed, its binding cannot be opened)."""

    subscription: str
    kinds: tuple[str, ...]
    slot: datetime
    missed: int
    status: str
    evaluation_id: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "subscription": self.subscription,
            "kinds": list(self.kinds),
            "slot": self.slot.isoformat(),
            "missed": self.missed,
            "status": self.status,
            "evaluation_id": self.evaluation_id,
            "error": self.error,
        }


def run_due(
    engine: Engine,
    context_for: ContextFor,
    *,
    now: datetime | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ScheduledRun]:
    """Claim and run every monitor due at ``now`` (the database's clock when None), one
    subscription at a time; returns what ran. Runs that became due after ``now`` wait for the
    next call, so this returns even when evaluations take longer than a period. ``should_stop``
    is asked between subscriptions (the service's shutdown)."""
    kinds_default = defaults()
    if now is None:
        with engine.connect() as conn:
            now = schedules.now(conn)
    done: list[ScheduledRun] = []
    while not (should_stop and should_stop()):
        with engine.begin() as conn:
            claimed = schedules.claim_next(conn, now, kinds_default)
        if not claimed:
            break
        for group in by_window(claimed):
            done.append(_run(engine, context_for, group))
    return done


def by_window(claimed: list[ClaimedRun]) -> list[list[ClaimedRun]]:
    """The claimed runs of one subscription, grouped by the window they look at: every "history"
    kind together, and "period" kinds by their period and slot."""
    groups: dict[tuple[object, ...], list[ClaimedRun]] = {}
    for run in claimed:
        if scheduled_window(run.kind) == HISTORY:
            key: tuple[object, ...] = (HISTORY,)
        else:
            key = (run.every_seconds, run.slot, run.missed)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def _since(claimed: list[ClaimedRun]) -> datetime | None:
    first = claimed[0]
    if scheduled_window(first.kind) == HISTORY:
        return None
    return first.slot - timedelta(seconds=first.every_seconds * (first.missed + 1))


def _run(engine: Engine, context_for: ContextFor, claimed: list[ClaimedRun]) -> ScheduledRun:
    kinds = tuple(c.kind for c in claimed)
    slot = max(c.slot for c in claimed)
    missed = max(c.missed for c in claimed)
    since = _since(claimed)
    name = f"subscription {claimed[0].subscription_id}"
    try:
        with engine.connect() as conn:
            record = subscriptions.by_id(conn, claimed[0].subscription_id)
        name = record.name
        if missed:
            log.warning("%s: %s missed %d scheduled runs (downtime?): running once", name, "/".join(kinds), missed)
        result = runner.evaluate(context_for(record), since=since, until=slot, kinds=kinds, wait=True)
    except EvaluationFailed as exc:  # recorded failed by the runner; the schedule goes on
        log.warning("scheduled evaluation of %s (%s) failed: %s", name, ", ".join(kinds), exc)
        return ScheduledRun(name, kinds, slot, missed, "failed", exc.evaluation_id, str(exc))
    except Exception as exc:  # no evaluation started: say why, and go on with the other subscriptions
        log.exception("scheduled run of %s (%s) could not start", name, ", ".join(kinds))
        return ScheduledRun(name, kinds, slot, missed, "error", None, f"{type(exc).__name__}: {exc}")
    log.info("scheduled evaluation %s of %s (%s) finished", result.evaluation_id, name, ", ".join(kinds))
    return ScheduledRun(name, kinds, slot, missed, "finished", result.evaluation_id)
