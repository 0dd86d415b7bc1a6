"""The report's performance section: the performance monitor's figures over every captured
request, and throughput and latency percentiles over time."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import pandas as pd

from openmart.report import charts

if TYPE_CHECKING:
    from openmart.api import Subscription

#: chart buckets, finest first: the first that keeps the chart under ``_POINTS`` points
_BUCKETS = (("minute", 60), ("5m", 300), ("15m", 900), ("hour", 3600), ("6h", 21600), ("day", 86400))
_POINTS = 240


def _bucket(first: str | None, last: str | None) -> tuple[str, int]:
    if not first or not last:
        return _BUCKETS[0]
    span = (pd.Timestamp(last) - pd.Timestamp(first)).total_seconds()
    return next((b for b in _BUCKETS if span / b[1] <= _POINTS), _BUCKETS[-1])


def _value(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.4g}"


def section(sub: Subscription) -> str:
    overall = sub.performance(bucket=None).to_dict()
    if not overall["requests"]:
        return '<p class="empty">no scoring requests captured yet (proxy, score or log_requests)</p>'
    name, _ = _bucket(overall["first_at"], overall["last_at"])
    series = sub.performance(bucket=name).series
    assert series is not None
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_value(v)}</td><td>{html.escape(overall['units'][k])}</td></tr>"
        for k, v in overall["metrics"].items()
    )
    table = f"<table><tr><th>metric</th><th>value</th><th>unit</th></tr>{rows}</table>"
    chart = charts.throughput_latency(
        list(series["bucket"]),
        list(series["requests"]),
        list(series["errors"]),
        {f"p{p}": [None if pd.isna(v) else float(v) for v in series[f"latency_p{p}_ms"]] for p in (50, 95, 99)},
        name,
    )
    meta = (
        f'<p class="meta">{overall["requests"]:,} requests ({overall["errors"]:,} errors), '
        f"{overall['records']:,} records, {html.escape(str(overall['first_at']))} to "
        f"{html.escape(str(overall['last_at']))}</p>"
    )
    return f'{meta}<div class="grid"><div>{table}</div><div class="chart">{chart}</div></div>'
