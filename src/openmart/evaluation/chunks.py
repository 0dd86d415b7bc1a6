"""Chunked evaluations (issue #17, docs/chunks.md): a window cut into chunks — by period, by
record count, or into a fixed number — and every enabled monitor run on each chunk, stored as
ONE evaluation of kind ``chunked`` whose measurements carry their chunk.

It keeps the runner's contract (:mod:`openmart.evaluation.runner`): the subscription's
evaluation lock is held once for the whole evaluation; the results — scored feedback, every
chunk's measurements, the alerts, the status — commit in one transaction or not at all; any
exception marks the evaluation failed (:class:`~openmart.errors.EvaluationFailed`).

Unlike a plain evaluation, the monitors run one after the other on the evaluation's own
connection, inside its transaction (each in a savepoint): chunks are many and small, and one
connection that sees the feedback scored a moment ago keeps it simple.

Alerts come from the NEWEST chunk only: it is the present; an older chunk's breach is history,
visible in its measurement (``breached``) but it opens no alert, and an older passing chunk
resolves none.

Thresholds given as ``learned`` are learned again from THE reference cut like this window
(:mod:`openmart.monitors.learned`), so the band fits the chunk size it judges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy.engine import Connection

from openmart.context import SubscriptionContext
from openmart.errors import EvaluationFailed, MonitorError
from openmart.evaluation import runner
from openmart.evaluation.results import EvaluationResult, MonitorOutcome
from openmart.mart import chunks, evaluations
from openmart.mart.alerts import AlertChanges
from openmart.mart.chunks import ChunkBounds, Chunking
from openmart.mart.windows import Window
from openmart.monitors import learned, registry
from openmart.monitors.config import MonitorConfig

log = logging.getLogger(__name__)

#: the columns of :meth:`ChunkedResult.frame`
COLUMNS = [
    "chunk",
    "chunk_start",
    "chunk_end",
    "chunk_records",
    "monitor",
    "metric",
    "feature",
    "group",
    "value",
    "threshold",
    "lower",
    "upper",
    "breached",
]


@dataclass
class ChunkedResult(EvaluationResult):
    """A finished chunked evaluation: ``measurements`` holds every chunk's (each with its
    ``chunk``); ``chunks`` the chunks' bounds and counts; ``learned`` the bands learned for it."""

    chunking: dict[str, Any] = field(default_factory=dict)
    chunks: list[dict[str, Any]] = field(default_factory=list)
    learned: dict[str, Any] = field(default_factory=dict)

    @property
    def frame(self) -> pd.DataFrame:
        """One row per chunk and measurement, oldest chunk first."""
        rows = []
        for m in self.measurements:
            details = m.details or {}
            # a learned threshold's band; estimated performance states its reference-chunk band itself
            band = details.get("learned") or {
                "lower": details.get("lower_threshold"),
                "upper": details.get("upper_threshold"),
            }
            rows.append(
                {
                    "chunk": m.chunk,
                    "chunk_start": m.chunk_start,
                    "chunk_end": m.chunk_end,
                    "chunk_records": m.chunk_records,
                    "monitor": m.monitor,
                    "metric": m.metric,
                    "feature": m.feature,
                    "group": m.group,
                    "value": m.value,
                    "threshold": m.threshold,
                    "lower": band.get("lower"),
                    "upper": band.get("upper"),
                    "breached": m.breached,
                }
            )
        return pd.DataFrame(rows, columns=COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"chunking": self.chunking, "chunks": self.chunks, "learned": self.learned}


def evaluate(
    ctx: SubscriptionContext,
    chunk_by: Chunking | str | dict[str, Any],
    *,
    window: Window | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    last: int | None = None,
    kinds: Iterable[str] | None = None,
    progress: runner.Progress | None = None,
    on_chunk: Callable[[int, int], object] | None = None,
    flush: Callable[[], object] | None = None,
    wait: bool = True,
    on_started: Callable[[int], object] | None = None,
) -> ChunkedResult:
    """Cut the window (or ``since``/``until``/``last``) by ``chunk_by`` (``1d``, ``size=500``,
    ``number=10``) and evaluate the enabled monitors (``kinds``: only these) on every chunk.
    ``on_chunk(index, total)`` hears each chunk as it starts."""
    chunking = Chunking.parse(chunk_by)
    if flush is not None:
        flush()
    if window is None:
        window = Window(since=since, until=until, last=last)
    configs = runner.enabled_configs(ctx, kinds)
    with runner.started(ctx, window, kind="chunked", wait=wait, progress=progress, chunking=chunking.to_dict()) as (
        ctx,
        lock_conn,
        evaluation_id,
    ):
        return _run(ctx, lock_conn, evaluation_id, window, chunking, configs, progress, on_chunk, on_started)


def _run(
    ctx: SubscriptionContext,
    conn: Connection,
    evaluation_id: int,
    window: Window,
    chunking: Chunking,
    configs: list[MonitorConfig],
    progress: runner.Progress | None,
    on_chunk: Callable[[int, int], object] | None,
    on_started: Callable[[int], object] | None,
) -> ChunkedResult:
    started = time.perf_counter()
    outcomes: list[MonitorOutcome] = []
    records: int | None = None
    step = "starting"
    try:
        if on_started is not None:
            on_started(evaluation_id)
        step = "scoring feedback"
        txn = conn.begin()
        scored, scoring_calls = runner._score_feedback(ctx, conn, configs, progress)
        step = "cutting chunks"
        bounds = chunks.boundaries(conn, ctx, window, chunking)
        parts = chunks.chunk_windows(window, bounds, chunks.floor_key(conn, ctx, window))
        records = sum(b.records for b in bounds)
        step = "learning thresholds"
        configs, bands = _learn(ctx, conn, configs, chunking, bounds)
        step = "running monitors"
        for b, part in zip(bounds, parts, strict=True):
            if on_chunk is not None:
                on_chunk(b.index, len(bounds))
            for config in configs:
                outcome = runner._in_savepoint(ctx, conn, config, part, progress)
                if outcome.status == "error":
                    raise runner._MonitorFailed(outcome)
                outcome.info["chunk"] = b.index
                for m in outcome.measurements:
                    m.chunk, m.chunk_start, m.chunk_end, m.chunk_records = b.index, b.start, b.end, b.records
                outcomes.append(outcome)
        step = "storing results"
        changes = _store(ctx, conn, evaluation_id, outcomes, bounds)
        summary = _summary(outcomes, bounds, chunking, bands, scored, scoring_calls, time.perf_counter() - started)
        evaluations.finish(conn, evaluation_id, summary=summary, records=records, scored_feedback=scored)
        step = "committing"
        txn.commit()
    except BaseException as exc:
        elapsed = time.perf_counter() - started
        runner._record_failure(ctx, conn, evaluation_id, exc, step, outcomes, records, elapsed)
        if isinstance(exc, Exception):
            cause = exc.error if isinstance(exc, runner._MonitorFailed) else exc
            raise EvaluationFailed(
                f"evaluation {evaluation_id} of {ctx.name!r} failed while {step}: {runner._describe(exc)}",
                evaluation_id=evaluation_id,
                error_type=runner._error_type(exc),
            ) from cause
        raise
    return ChunkedResult(
        evaluation_id,
        ctx.name,
        window.to_dict(),
        outcomes,
        time.perf_counter() - started,
        records=records,
        scored_feedback=scored,
        alerts=changes,
        chunking=chunking.to_dict(),
        chunks=[_chunk_dict(b) for b in bounds],
        learned=bands,
    )


def _learn(
    ctx: SubscriptionContext,
    conn: Connection,
    configs: list[MonitorConfig],
    chunking: Chunking,
    bounds: list[ChunkBounds],
) -> tuple[list[MonitorConfig], dict[str, Any]]:
    """Each config with its learned thresholds learned again on THE reference cut like this
    window; a monitor whose reference is too small for this chunking keeps the band it was
    enabled with (said in the summary). The bands, with the reference values, per monitor."""
    out, bands = [], {}
    reference = learned.reference_chunking(chunking, bounds)
    for config in configs:
        if not learned.has_learned(config):
            out.append(config)
            continue
        savepoint = conn.begin_nested()
        try:
            config = learned.learn(ctx, conn, registry.get(config.kind), config, reference)
            note = None
        except MonitorError as exc:
            note = f"kept the band learned when the monitor was enabled: {exc}"
        finally:
            savepoint.rollback()
        out.append(config)
        bands[str(config.kind)] = {
            "reference_chunking": reference.to_dict(),
            "thresholds": [t.to_dict() for t in config.thresholds if t.learned],
        } | ({"note": note} if note else {})
    return out, bands


def _store(
    ctx: SubscriptionContext,
    conn: Connection,
    evaluation_id: int,
    outcomes: list[MonitorOutcome],
    bounds: list[ChunkBounds],
) -> AlertChanges:
    """Every chunk's measurements; alerts from the newest chunk's only."""
    measurements = [m for o in outcomes for m in o.measurements]
    ids = evaluations.add_measurements(conn, evaluation_id, ctx.id, measurements)
    if not bounds:
        return AlertChanges((), (), ())
    newest = bounds[-1].index
    pairs = [(m, i) for m, i in zip(measurements, ids, strict=True) if m.chunk == newest]
    return runner._alert(ctx, conn, evaluation_id, [m for m, _ in pairs], [i for _, i in pairs])


def _chunk_dict(b: ChunkBounds) -> dict[str, Any]:
    return {
        "chunk": b.index,
        "start": b.start.isoformat() if b.start else None,
        "end": b.end.isoformat() if b.end else None,
        "records": b.records,
    }


def _summary(
    outcomes: list[MonitorOutcome],
    bounds: list[ChunkBounds],
    chunking: Chunking,
    bands: dict[str, Any],
    scored: int,
    calls: int,
    elapsed: float,
) -> dict[str, Any]:
    """Per monitor: its status in each chunk; the chunks; the learned bands."""
    summary: dict[str, Any] = {}
    for o in outcomes:
        entry = summary.setdefault(o.kind, {"status": "ok", "chunks": {}})
        entry["chunks"][str(o.info.get("chunk"))] = {"status": o.status, "reason": o.reason, "records": o.records}
        if o.status != "ok":
            entry["status"] = o.status if entry["status"] == "ok" else entry["status"]
    summary["chunking"] = chunking.to_dict()
    summary["chunks"] = [_chunk_dict(b) for b in bounds]
    if bands:
        summary["learned"] = bands
    summary["elapsed_s"] = round(elapsed, 3)
    if scored or calls:
        summary["feedback_scoring"] = {"records": scored, "scoring_calls": calls}
    return summary
