"""Performance (OpenScale's "performance" / model health): throughput, payload size, latency and
error rate of the scoring requests capture saw (``scoring_requests``), per window.

Every figure is aggregated in PostgreSQL (:mod:`openmart.mart.scoring_requests`); percentiles
are ``percentile_cont`` (linear interpolation, as ``numpy.percentile``'s default). docs/monitors.md
lists the metrics with their units and how errors are counted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from openmart.context import SubscriptionContext
from openmart.errors import ValidationError
from openmart.mart import scoring_requests, stats, windows
from openmart.mart.scoring_requests import Aggregate
from openmart.mart.windows import Window
from openmart.monitors.base import (
    BaseMonitor,
    Direction,
    Measurement,
    MetricSpec,
    MonitorOutcome,
    OptionSpec,
    context_of,
    thresholds_option,
)
from openmart.monitors.config import MonitorConfig

KIND = "performance"
H, L = Direction.HIGHER_IS_BETTER, Direction.LOWER_IS_BETTER

#: name -> (direction, unit, help); no default thresholds: an alert only where the user sets one
METRICS: dict[str, tuple[Direction, str, str]] = {
    "requests_per_minute": (H, "requests/min", "scoring requests per minute (answered or not)"),
    "records_per_minute": (H, "records/min", "records scored per minute (in requests answered 2xx)"),
    "records_per_request": (H, "records", "mean records per answered request"),
    "request_bytes_mean": (L, "bytes", "mean request body size"),
    "response_bytes_mean": (L, "bytes", "mean response body size"),
    "latency_p50_ms": (L, "ms", "median latency per request, as the client waited"),
    "latency_p95_ms": (L, "ms", "95th percentile of latency per request"),
    "latency_p99_ms": (L, "ms", "99th percentile of latency per request"),
    "latency_per_record_p50_ms": (L, "ms", "median of latency / records, over answered requests"),
    "latency_per_record_p95_ms": (L, "ms", "95th percentile of latency / records"),
    "latency_per_record_p99_ms": (L, "ms", "99th percentile of latency / records"),
    "error_rate": (L, "share", "requests answered non-2xx (the deployment's or the proxy's own 502/504), of all"),
}
UNITS = {name: unit for name, (_, unit, _) in METRICS.items()}

_BUCKET = re.compile(r"^\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$")
_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_SECONDS |= {"d": 86400, "day": 86400}


def bucket_step(bucket: str | timedelta | None) -> timedelta:
    """A chart's bucket: ``minute``, ``hour``, ``day``, or ``<n>s|m|h|d`` (``5m``, ``1h``)."""
    if bucket is None:
        return timedelta(minutes=1)
    if isinstance(bucket, timedelta):
        step = bucket
    else:
        m = _BUCKET.match(str(bucket).lower())
        if not m:
            raise ValidationError(f"bucket {bucket!r}: expected minute, hour, day or e.g. 5m, 1h", value=bucket)
        step = timedelta(seconds=int(m.group(1) or 1) * _SECONDS[m.group(2)])
    if not timedelta(seconds=1) <= step <= timedelta(days=31):
        raise ValidationError(f"bucket {bucket!r}: must be between 1 second and 31 days", value=bucket)
    return step


def _minutes(agg: Aggregate, window: Window) -> float | None:
    """The window's length in minutes: since..until as given (an open end: the first or last
    request; with only ``since``, until now), never under one minute."""
    if agg.requests == 0 and (window.since is None or window.until is None):
        return None
    start = window.since if window.since is not None and window.last is None else agg.first_at
    if window.until is not None and window.last is None:
        end = window.until
    elif window.since is not None and window.last is None:
        end = datetime.now(UTC)
    else:
        end = agg.last_at
    if start is None or end is None:
        return None
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if (start.tzinfo is None) != (end.tzinfo is None):  # naive means UTC, as in the mart
        start = start.tz_localize("UTC") if start.tzinfo is None else start
        end = end.tz_localize("UTC") if end.tzinfo is None else end
    return max((end - start).total_seconds() / 60.0, 1.0)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


@dataclass
class Figures:
    """The window's metrics (None where undefined) and the counts behind them."""

    values: dict[str, float | None]
    counts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": dict(self.values), "units": UNITS, **self.counts}


def measure(conn: Any, ctx: SubscriptionContext, window: Window) -> Figures:
    """The performance metrics of the window (one aggregate query, plus a count of the payload
    table: records logged without a request row, e.g. ``payload.log``, show there)."""
    agg = scoring_requests.aggregate(conn, ctx.id, window)
    minutes = _minutes(agg, window)
    lat = agg.latency_ms or (None, None, None)
    per = agg.latency_per_record_ms or (None, None, None)
    values: dict[str, float | None] = {
        "requests_per_minute": _ratio(agg.requests, minutes),
        "records_per_minute": _ratio(agg.records, minutes),
        "records_per_request": _ratio(agg.records, agg.answered),
        "request_bytes_mean": agg.request_bytes_mean,
        "response_bytes_mean": agg.response_bytes_mean,
        "latency_p50_ms": lat[0],
        "latency_p95_ms": lat[1],
        "latency_p99_ms": lat[2],
        "latency_per_record_p50_ms": per[0],
        "latency_per_record_p95_ms": per[1],
        "latency_per_record_p99_ms": per[2],
        "error_rate": _ratio(agg.errors, agg.requests),
    }
    payload_records = stats.count(conn, windows.payload(window, ctx)) if window.last is None else None
    counts = {
        "requests": agg.requests,
        "errors": agg.errors,
        "answered": agg.answered,
        "records": agg.records,
        "minutes": minutes,
        "first_at": agg.first_at.isoformat() if agg.first_at else None,
        "last_at": agg.last_at.isoformat() if agg.last_at else None,
        "peak_requests_per_minute": agg.peak_requests_per_minute,
        "latency_mean_ms": agg.latency_mean_ms,
        "latency_max_ms": agg.latency_max_ms,
        "request_bytes_max": agg.request_bytes_max,
        "response_bytes_max": agg.response_bytes_max,
        "request_bytes_total": agg.request_bytes_total,
        "response_bytes_total": agg.response_bytes_total,
        "payload_records": payload_records,
        "payload_records_per_minute": _ratio(payload_records, minutes),
    }
    return Figures(values, counts)


@dataclass
class Performance:
    """What ``sub.performance()`` returns: the window's metrics (units in ``units``), the counts
    behind them, and the time series per bucket (None when not asked for)."""

    subscription: str
    window: Window
    figures: Figures
    bucket: timedelta | None
    series: pd.DataFrame | None

    @property
    def metrics(self) -> dict[str, float | None]:
        return self.figures.values

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subscription": self.subscription, "window": self.window.to_dict()}
        out |= self.figures.to_dict()
        if self.series is not None and self.bucket is not None:
            rows = json.loads(self.series.to_json(orient="records", date_format="iso", date_unit="s"))
            out["series"] = {"bucket_seconds": self.bucket.total_seconds(), "rows": rows}
        return out


def report(
    conn: Any,
    ctx: SubscriptionContext,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    last: int | None = None,
    bucket: str | timedelta | None = "minute",
) -> Performance:
    window = Window(since, until, last)
    step = bucket_step(bucket) if bucket is not None else None
    frame = scoring_requests.series(conn, ctx.id, window, step) if step is not None else None
    return Performance(ctx.name, window, measure(conn, ctx, window), step, frame)


class PerformanceMonitor(BaseMonitor):
    """Throughput, payload size, latency and error rate of the scoring requests (OpenScale's
    performance monitor). Thresholds are optional: e.g. ``latency_p99_ms=500``, ``error_rate=0.01``."""

    kind = KIND
    description = (
        "Scoring requests and records per minute, records per request, payload size, latency p50/p95/p99 per "
        "request and per record, and error rate, from the requests capture saw."
    )
    options = (
        thresholds_option(),
        OptionSpec("min_records", int, 1, low=1, help="Below this many scoring requests: 'not enough data'."),
    )
    metrics = tuple(
        MetricSpec(name, direction, None, low=0.0, high=1.0 if name == "error_rate" else None, help=f"{text} ({unit})")
        for name, (direction, unit, text) in METRICS.items()
    )

    def run(self, ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
        ctx = context_of(ctx)
        figures = measure(conn, ctx, window)
        requests = int(figures.counts["requests"])
        outcome = MonitorOutcome(KIND, records=int(figures.counts["records"]))
        outcome.info["requests"] = requests
        if requests < config.min_records:
            outcome.status = "not_enough_data"
            outcome.reason = f"{requests} scoring requests, fewer than {config.min_records}"
            return outcome
        details = {k: figures.counts[k] for k in ("requests", "errors", "records", "minutes")}
        for name, value in figures.values.items():
            outcome.measurements.append(
                Measurement.judged(KIND, name, value, config.threshold(name), details={**details, "unit": UNITS[name]})
            )
        return outcome
