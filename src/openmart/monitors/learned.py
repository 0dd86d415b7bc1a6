"""Thresholds learned from THE reference's own chunk-to-chunk variability (issue #17,
docs/chunks.md), as NannyML's ``StandardDeviationThreshold``.

A threshold given as ``learned`` (``accuracy=learned``, ``learned:2`` for k = 2) is learned by
running the monitor itself over chunks of THE reference (the training set of the reference
version): each chunk gives the metric a value, and the band is

    lower = mean − k·std,   upper = mean + k·std      (k = 3 by default; std with ddof = 0, as numpy)

clipped to the metric's range (its :class:`~openmart.monitors.base.MetricSpec` ``low``/``high``).
A measurement outside the band, on either side, is breached. Drift's reference chunks are
measured against the whole reference (the stored profile): that is the natural variability.

When: at ``monitors.enable`` the band is learned on 10 chunks of the reference (NannyML's
``DefaultChunker``) and stored with the monitor's thresholds — the values, the reference chunk
values they came from and the chunking — so every evaluation has it. A chunked evaluation learns
it again with its own chunking (by size: the same size; by number: the same number of reference
chunks; by period: chunks of the median analysed chunk's size, a labelled set having no times),
so the band matches the chunk size it judges; it is stored in the measurements' details and in
the evaluation's summary.

A learned threshold keyed without a feature on a per-feature metric (drift's ``jensenshannon``)
is learned per feature. Several values of one chunk for one (metric, feature) — fairness groups —
are pooled.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

import numpy as np

from openmart.context import SubscriptionContext
from openmart.errors import MonitorError
from openmart.evaluation.results import MonitorOutcome
from openmart.mart import chunks, windows
from openmart.mart.chunks import ChunkBounds, Chunking
from openmart.monitors.base import Monitor
from openmart.monitors.config import MonitorConfig, Threshold, ThresholdType

#: the chunking a band is learned with when a monitor is enabled (NannyML's DefaultChunker)
DEFAULT_CHUNKING = Chunking("number", number=10)
#: what a measurement's details keep of its band (the reference values are in the config/summary)
_BAND = ("lower", "upper", "mean", "std", "k", "chunks")


def has_learned(config: MonitorConfig) -> bool:
    return any(t.learned is not None for t in config.thresholds)


def reference_chunking(chunking: Chunking, analysed: list[ChunkBounds]) -> Chunking:
    """The chunking of THE reference that matches an evaluation's: the same size or number; for
    period chunks, the median records of the analysed chunks (the reference has no times)."""
    if chunking.by != "period":
        return chunking
    size = int(statistics.median(b.records for b in analysed)) if analysed else 1
    return Chunking("size", size=max(1, size))


def learn(
    ctx: SubscriptionContext, conn: Any, monitor: Monitor, config: MonitorConfig, chunking: Chunking
) -> MonitorConfig:
    """``config`` with its learned thresholds learned (again) from THE reference cut by
    ``chunking``; MonitorError when too few reference chunks give the metric a value. Read-only:
    the caller rolls back what the monitor's queries left (a savepoint or a fresh connection)."""
    wanted = [t for t in config.thresholds if t.learned is not None]
    if not wanted:
        return config
    reference = windows.reference_window(ctx.record.reference_version)
    bounds = chunks.boundaries(conn, ctx, reference, chunking)
    samples: dict[tuple[str, str | None], list[float]] = {}
    for window in chunks.chunk_windows(reference, bounds):
        outcome = monitor.run(ctx, config, window, conn)
        for m in outcome.measurements:
            if m.value is not None:
                samples.setdefault((m.metric, m.feature), []).append(float(m.value))
    specs = {m.name: m for m in monitor.metrics}
    learned: list[Threshold] = []
    for t in wanted:
        keys = [key for key in samples if key[0] == t.metric and (t.feature is None or key[1] == t.feature)]
        if t.feature is None and (t.metric, None) in samples:
            keys = [(t.metric, None)]
        keys = [key for key in keys if len(samples[key]) >= 2]
        if not keys:
            raise MonitorError(
                f"{monitor.kind} threshold {t.metric}=learned: fewer than 2 of the reference's {len(bounds)} chunks "
                f"({chunking.describe()}) gave {t.metric} a value — load a larger reference, lower min_records "
                "or give a number"
            )
        k = float(t.learned.get("k", 3.0)) if t.learned else 3.0
        spec = specs.get(t.metric)
        for metric, feature in keys:
            values = samples[(metric, feature)]
            band = standard_deviation_band(values, k, spec.low if spec else None, spec.high if spec else None)
            band |= {
                "values": values,
                "chunks": len(values),
                "chunk_records": [b.records for b in bounds],
                "chunking": chunking.to_dict(),
                "reference_version": ctx.record.reference_version,
            }
            limit = band["lower"] if t.type is ThresholdType.LOWER_LIMIT else band["upper"]
            learned.append(Threshold(metric, t.type, float(limit), feature, band))
    rest = [t for t in config.thresholds if t.learned is None]
    return replace(config, thresholds=learned + rest)


def standard_deviation_band(values: list[float], k: float, low: float | None, high: float | None) -> dict[str, Any]:
    """mean ± k·std of ``values`` (population std, ddof = 0), clipped to [low, high]."""
    arr = np.asarray(values, dtype=float)
    mean, std = float(arr.mean()), float(arr.std(ddof=0))
    lower, upper = mean - k * std, mean + k * std
    if low is not None:
        lower, upper = max(lower, low), max(upper, low)
    if high is not None:
        lower, upper = min(lower, high), min(upper, high)
    return {"k": k, "mean": mean, "std": std, "lower": lower, "upper": upper}


def rejudge(config: MonitorConfig, outcome: MonitorOutcome) -> None:
    """Judge the outcome's measurements that have a learned band by it (a monitor judges with
    one limit, or with its own rule as drift does): breached outside the band, on either side;
    the band goes into the measurement's details."""
    bands = {(t.metric, t.feature): t for t in config.thresholds if t.learned and "lower" in t.learned}
    if not bands:
        return
    for m in outcome.measurements:
        t = bands.get((m.metric, m.feature)) or bands.get((m.metric, None))
        if t is None or t.learned is None:
            continue
        m.threshold, m.threshold_type = t.value, str(t.type)
        m.breached = t.breached(m.value)
        m.details = {**(m.details or {}), "learned": {k: t.learned.get(k) for k in _BAND}}
