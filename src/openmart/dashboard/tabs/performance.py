"""Performance: throughput (requests and records per bucket) and latency percentiles over time,
from the logged scoring requests, and payload records per hour (kept by triggers, so cheap)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Connection

from openmart.dashboard import charts
from openmart.dashboard.charts import Point, Series
from openmart.dashboard.html import empty, figure
from openmart.dashboard.view import View
from openmart.mart import dashboard as reads
from openmart.mart import scoring_requests
from openmart.mart.dashboard import SubscriptionOverview
from openmart.mart.windows import Window

#: the bucket for a range's length: a few hundred points at most
BUCKETS = (
    (timedelta(hours=2), timedelta(minutes=1)),
    (timedelta(days=2), timedelta(minutes=15)),
    (timedelta(days=10), timedelta(hours=1)),
    (timedelta(days=40), timedelta(hours=6)),
)
LATENCIES = (("p50", "latency_p50_ms"), ("p95", "latency_p95_ms"), ("p99", "latency_p99_ms"))


def bucket_for(start: datetime | None, end: datetime | None) -> timedelta:
    if start is None:
        return timedelta(days=1)
    span = (end or datetime.now(UTC)) - start
    return next((b for limit, b in BUCKETS if span <= limit), timedelta(days=1))


def _at(value: object) -> datetime:
    at = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value  # pandas' Timestamp
    assert isinstance(at, datetime)
    return at


def render(view: View, conn: Connection, sub: SubscriptionOverview, feature: str | None) -> str:
    r = view.range
    bucket = bucket_for(r.start, r.end)
    frame = scoring_requests.series(conn, sub.id, Window(since=r.start, until=r.end), bucket)
    minutes = bucket.total_seconds() / 60
    per = f"per {int(minutes)} min" if minutes < 60 else f"per {int(minutes // 60)} h"
    out = []
    if frame.empty:
        out.append(
            empty(
                f"no scoring requests logged in {r.describe()}: capture through",
                f"openmart proxy {sub.name}  (or sub.log_requests(...))",
            )
        )
        out.append(figure(charts.time_series([]), "throughput", id="throughput"))
        out.append(figure(charts.time_series([]), "latency", id="latency"))
    else:
        times = [_at(t) for t in frame["bucket"]]

        def line(name: str, column: str) -> Series:
            return Series(
                name, [Point(t, None if v != v else float(v)) for t, v in zip(times, frame[column], strict=True)]
            )

        throughput = charts.time_series(
            [line("requests", "requests"), line("records", "records"), line("errors", "errors")],
            y_label=per,
            start=r.start,
        )
        latency = charts.time_series([line(n, c) for n, c in LATENCIES], y_label="ms", start=r.start)
        out.append('<div class="grid">')
        out.append(figure(throughput, f"throughput: requests, records and errors {per}", id="throughput"))
        out.append(figure(latency, f"latency percentiles (ms), {per}", id="latency"))
        out.append("</div>")
    hourly = reads.traffic(conn, sub.id, start=r.start, end=r.end)
    if hourly:
        svg = charts.time_series(
            [Series("payload records", [Point(h, float(n)) for h, n in hourly])], y_label="per hour"
        )
        out.append(figure(svg, "payload records per hour", id="traffic"))
    return "".join(out)
