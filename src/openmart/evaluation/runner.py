"""Runs a subscription's enabled monitors over a window, stores the evaluation, its
measurements and an alert per breach, and returns the result."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from openmart.errors import OpenmartError
from openmart.evaluation.results import EvaluationResult, MonitorOutcome
from openmart.evaluation.window import Window
from openmart.mart import models
from openmart.monitors import registry
from openmart.monitors.config import MonitorConfig

if TYPE_CHECKING:
    from openmart.api import Subscription

log = logging.getLogger(__name__)


def evaluate(
    sub: Subscription,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    last: int | None = None,
    kinds: Iterable[str] | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int = 2,
) -> EvaluationResult:
    sub.flush()  # records captured in the background belong in the window
    window = Window(since=since, until=until, last=last)
    configs = [c for c in sub.monitors.configs() if c.enabled and (kinds is None or c.kind in set(kinds))]
    engine = sub.mart.engine
    started = time.perf_counter()
    with sa.orm.Session(engine) as s:
        row = models.Evaluation(subscription_id=sub.id, window_start=since, window_end=until, status="running")
        s.add(row)
        s.commit()
        evaluation_id = row.id

    # monitors are independent and mostly wait on PostgreSQL: two at a time use both cores
    def one(config: MonitorConfig) -> MonitorOutcome:
        if progress:
            progress(str(config.kind))
        return _run_one(sub, config, window)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(configs)))) as pool:
        outcomes = list(pool.map(one, configs))
    result = EvaluationResult(evaluation_id, sub.name, window.to_dict(), outcomes, time.perf_counter() - started)
    _store(sub, result, window)
    return result


def _run_one(sub: Subscription, config: MonitorConfig, window: Window) -> MonitorOutcome:
    monitor = registry.get(config.kind)
    raw = sub.mart.engine.raw_connection()
    started = time.perf_counter()
    try:
        outcome = monitor.run(sub, config, window, raw)
    except OpenmartError as exc:
        outcome = MonitorOutcome(str(config.kind), status="error", reason=str(exc))
    finally:
        raw.rollback()
        raw.close()
    outcome.info["elapsed_s"] = round(time.perf_counter() - started, 3)
    return outcome


def _store(sub: Subscription, result: EvaluationResult, window: Window) -> None:
    records = next((o.records for o in result.outcomes if o.kind == "drift"), None)
    with sa.orm.Session(sub.mart.engine) as s:
        evaluation = s.get(models.Evaluation, result.evaluation_id)
        assert evaluation is not None
        for m in result.measurements:
            mrow = models.Measurement(
                evaluation_id=result.evaluation_id,
                subscription_id=sub.id,
                monitor=m.monitor,
                metric=m.metric,
                value=m.value,
                threshold=m.threshold,
                threshold_type=m.threshold_type,
                breached=m.breached,
                feature=m.feature,
                group=m.group,
                details=m.details,
            )
            s.add(mrow)
            if m.breached:
                s.flush()
                s.add(
                    models.Alert(
                        subscription_id=sub.id,
                        evaluation_id=result.evaluation_id,
                        measurement_id=mrow.id,
                        monitor=m.monitor,
                        metric=m.metric,
                        message=f"{sub.name}: {m.describe()}",
                    )
                )
        evaluation.status = "failed" if any(o.status == "error" for o in result.outcomes) else "finished"
        evaluation.summary = {o.kind: o.summary() for o in result.outcomes} | {"elapsed_s": result.elapsed_s}
        evaluation.records = records
        evaluation.finished_at = sa.func.now()
        s.commit()
