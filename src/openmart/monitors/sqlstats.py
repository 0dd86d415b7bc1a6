"""Aggregates computed inside PostgreSQL, in one scan of the window each: per-feature
histograms against fixed bin edges, value counts of categorical columns, and moments.

Only these aggregates cross the wire, never the window's rows. Bucket semantics are those of
``width_bucket(x, edges)``: bucket 0 holds ``x < edges[0]``, bucket ``i`` holds
``edges[i-1] <= x < edges[i]``, bucket ``len(edges)`` holds ``x >= edges[-1]`` — the same as
``numpy.searchsorted(edges, x, side="right")``. NULLs are counted apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from openmart.mart.identifiers import quote


@dataclass(frozen=True)
class Moments:
    count: int
    nulls: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None


def _run(raw: Any, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    with raw.cursor() as cur:
        cur.execute(sql, dict(params))
        return cur.fetchall()


def histograms(
    raw: Any, window_sql: str, params: Mapping[str, Any], edges: Mapping[str, Sequence[float]]
) -> dict[str, np.ndarray]:
    """Counts per bucket (``len(edges)+1`` buckets) for each numeric column, one scan."""
    if not edges:
        return {}
    names = list(edges)
    values, args = [], dict(params)
    for i, name in enumerate(names):
        args[f"h_e{i}"] = [float(e) for e in edges[name]]
        values.append(f"({i}, w.{quote(name)}, %(h_e{i})s::float8[])")
    sql = (
        f"SELECT v.i, width_bucket(v.x, v.e) AS b, count(*) FROM ({window_sql}) w, "
        f"LATERAL (VALUES {', '.join(values)}) v(i, x, e) WHERE v.x IS NOT NULL GROUP BY 1, 2"
    )
    out = {name: np.zeros(len(edges[name]) + 1, dtype=np.int64) for name in names}
    for i, bucket, count in _run(raw, sql, args):
        out[names[i]][bucket] = count
    return out


def value_counts(
    raw: Any, window_sql: str, params: Mapping[str, Any], columns: Sequence[str], as_text: bool = True
) -> dict[str, dict[str, int]]:
    """Counts of each distinct value for each column (as text), one scan; NULLs under None."""
    if not columns:
        return {}
    values = ", ".join(f"({i}, w.{quote(c)}::text)" for i, c in enumerate(columns))
    sql = f"SELECT v.i, v.x, count(*) FROM ({window_sql}) w, LATERAL (VALUES {values}) v(i, x) GROUP BY 1, 2"
    out: dict[str, dict[str, int]] = {c: {} for c in columns}
    for i, value, count in _run(raw, sql, params):
        out[columns[i]][value] = int(count)
    return out


def moments(raw: Any, window_sql: str, params: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Moments]:
    """count, nulls, mean, sample std, min and max of numeric columns, one scan."""
    if not columns:
        return {}
    parts = ["count(*)"]
    for c in columns:
        q = f"w.{quote(c)}"
        parts += [f"count({q})", f"avg({q})", f"stddev_samp({q})", f"min({q})", f"max({q})"]
    (row,) = _run(raw, f"SELECT {', '.join(parts)} FROM ({window_sql}) w", params)
    total = int(row[0])
    out = {}
    for k, c in enumerate(columns):
        n, mean, std, lo, hi = row[1 + 5 * k : 6 + 5 * k]
        out[c] = Moments(int(n), total - int(n), _f(mean), _f(std), _f(lo), _f(hi))
    return out


def count(raw: Any, window_sql: str, params: Mapping[str, Any]) -> int:
    (row,) = _run(raw, f"SELECT count(*) FROM ({window_sql}) w", params)
    return int(row[0])


def _f(v: Any) -> float | None:
    return None if v is None else float(v)
