"""A baseline from the reference: its ``statistics.json`` and the ``constraints.json`` suggested
from it, computed in PostgreSQL (openmart.mart.data_quality), never by fetching its rows.

Suggestions (docs/data-quality.md): a numeric column is Integral when every reference value is a
whole number, Fractional otherwise; a categorical column is String with its values as the domain
(up to :data:`DOMAIN_LIMIT` of them); completeness is 1.0 for a complete column, else the lower
end of a 95% interval around the reference's share (so a window as complete as the reference
passes); numeric columns get ``is_non_negative`` (min >= 0) and openmart's range
``[min, max]`` with :data:`RANGE_TOLERANCE`.
"""

from __future__ import annotations

import math
from typing import Any

from openmart.context import SubscriptionContext
from openmart.errors import MonitorError
from openmart.mart import data_quality as dq
from openmart.mart import stats, windows
from openmart.monitors.dq_formats import RANGE
from openmart.schema import Column, ColumnKind

#: categorical columns with more distinct values get no domain (free text, ids: every new value
#: would be "unseen")
DOMAIN_LIMIT = 100
#: the share of a window's values allowed outside the reference's [min, max]: those extremes are
#: a sample's, so a window from the same distribution has on average 2/(n+1) of its values beyond
#: them (0.4% for a 500-row reference); 1% lets that pass and still finds a planted few percent
RANGE_TOLERANCE = 0.01
#: the thresholds SageMaker's Python SDK writes by default (DataQualityMonitoringConfig): every
#: value must have the declared type and lie in the domain
DATATYPE_CHECK_THRESHOLD = 1.0
DOMAIN_CONTENT_THRESHOLD = 1.0
KLL_BUCKETS = 10  # SageMaker materialises its distributions in 10 buckets


def _columns(ctx: SubscriptionContext) -> list[Column]:
    return list(ctx.schema.input_columns)


def _suggested_completeness(present: int, rows: int) -> float:
    if rows == 0:
        return 0.0
    p = present / rows
    if p == 1.0:
        return 1.0
    return max(0.0, math.floor((p - 1.96 * math.sqrt(p * (1 - p) / rows)) * 10_000) / 10_000)


def profile(ctx: SubscriptionContext, conn: Any) -> tuple[int, list[dict[str, Any]]]:
    """The reference's item count and, per column, what both documents are made of."""
    relation = windows.payload(windows.reference_window(ctx.record.reference_version), ctx)
    rows = stats.count(conn, relation)
    if rows == 0:
        raise MonitorError(f"subscription {ctx.name!r} has no reference data: load it first (openmart reference load)")
    out = []
    for column in _columns(ctx):
        numeric = column.kind is ColumnKind.NUMERIC
        counts = dq.column_counts(
            conn, relation, column.name, numeric=numeric, checks=dq.Checks(integral=numeric), examples=0
        )
        item: dict[str, Any] = {"column": column, "counts": counts}
        if numeric:
            item["type"] = "Unknown" if counts.present == 0 else ("Fractional" if counts.wrong_type else "Integral")
            if counts.present:
                lo, hi = counts.min, counts.max
                assert lo is not None and hi is not None
                item["buckets"] = _buckets(conn, relation, column.name, lo, hi, counts.present)
        else:
            item["type"] = "String" if counts.present else "Unknown"
            item["distinct"], item["values"] = dq.value_counts(conn, relation, column.name, DOMAIN_LIMIT + 1)
        out.append(item)
    return rows, out


def _buckets(conn: Any, relation: Any, column: str, lo: float, hi: float, present: int) -> list[dict[str, Any]]:
    if lo == hi:
        return [{"lower_bound": lo, "upper_bound": hi, "count": present}]
    counts = dq.histogram(conn, relation, column, lo, hi, KLL_BUCKETS)
    width = (hi - lo) / KLL_BUCKETS
    return [
        {"lower_bound": lo + i * width, "upper_bound": hi if i == KLL_BUCKETS - 1 else lo + (i + 1) * width, "count": n}
        for i, n in enumerate(counts)
    ]


def statistics(rows: int, columns: list[dict[str, Any]]) -> dict[str, Any]:
    """statistics.json: std_dev is the population standard deviation (ddof=0), as Deequ's
    StandardDeviation analyzer (SageMaker's container is built on Deequ) computes it. The KLL
    distribution holds its buckets only: openmart keeps no KLL sketch to write."""
    features = []
    for item in columns:
        c = item["counts"]
        common = {"num_present": c.present, "num_missing": c.missing}
        if item["column"].kind is ColumnKind.NUMERIC:
            numbers: dict[str, Any] = {"common": common}
            if c.present:
                numbers |= {"mean": c.mean, "sum": c.total, "std_dev": c.std_pop, "min": c.min, "max": c.max}
                numbers["distribution"] = {"kll": {"buckets": item["buckets"]}}
            features.append(
                {"name": item["column"].name, "inferred_type": item["type"], "numerical_statistics": numbers}
            )
        else:
            strings = {
                "common": common,
                "distinct_count": item["distinct"],
                "distribution": {
                    "categorical": {"buckets": [{"value": v, "count": n} for v, n in item["values"][:DOMAIN_LIMIT]]}
                },
            }
            features.append({"name": item["column"].name, "inferred_type": item["type"], "string_statistics": strings})
    return {"version": 0, "dataset": {"item_count": rows}, "features": features}


def suggest(rows: int, columns: list[dict[str, Any]]) -> dict[str, Any]:
    """constraints.json suggested from the reference's profile."""
    features = []
    for item in columns:
        c = item["counts"]
        feature: dict[str, Any] = {
            "name": item["column"].name,
            "inferred_type": item["type"],
            "completeness": _suggested_completeness(c.present, rows),
        }
        if item["column"].kind is ColumnKind.NUMERIC:
            if c.present:
                feature["num_constraints"] = {
                    "is_non_negative": bool(c.min >= 0),
                    RANGE: {"min": c.min, "max": c.max, "tolerance": RANGE_TOLERANCE},
                }
        elif c.present and item["distinct"] <= DOMAIN_LIMIT:
            feature["string_constraints"] = {"domains": sorted(v for v, _ in item["values"])}
        features.append(feature)
    return {
        "version": 0,
        "features": features,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": DATATYPE_CHECK_THRESHOLD,
            "domain_content_threshold": DOMAIN_CONTENT_THRESHOLD,
            # distributions are the drift monitor's work: this monitor does not compare them
            "distribution_constraints": {"perform_comparison": "Disabled"},
        },
    }
