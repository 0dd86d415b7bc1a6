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


@dataclass(frozen=True)
class NumericSummary:
    """One numeric column of a window: counts and sums per bucket of the given edges, moments."""

    counts: np.ndarray
    sums: np.ndarray
    moments: Moments


def numeric_summary(
    raw: Any, window_sql: str, params: Mapping[str, Any], column: str, edges: Sequence[float]
) -> NumericSummary:
    """One scan: per ``width_bucket`` bucket the count, sum, sum of squares, min and max."""
    x = f"w.{quote(column)}"
    sql = (
        f"SELECT width_bucket({x}, %(s_edges)s::float8[]) AS b, count(*), sum({x}), sum({x} * {x}), "
        f"min({x}), max({x}) FROM ({window_sql}) w GROUP BY 1"
    )
    counts = np.zeros(len(edges) + 1, dtype=np.int64)
    sums = np.zeros(len(edges) + 1, dtype=float)
    nulls, sq, lo, hi = 0, 0.0, None, None
    for b, n, total, squares, mn, mx in _run(raw, sql, {**params, "s_edges": [float(e) for e in edges]}):
        if b is None:
            nulls = int(n)
            continue
        counts[b], sums[b], sq = n, float(total), sq + float(squares)
        lo = float(mn) if lo is None else min(lo, float(mn))
        hi = float(mx) if hi is None else max(hi, float(mx))
    n = int(counts.sum())
    mean = float(sums.sum() / n) if n else None
    std = float(np.sqrt(max(sq - n * mean * mean, 0.0) / (n - 1))) if n > 1 and mean is not None else None
    return NumericSummary(counts, sums, Moments(n, nulls, mean, std, lo, hi))


def column_counts(raw: Any, window_sql: str, params: Mapping[str, Any], column: str) -> dict[str | None, int]:
    """Counts of each distinct value of one column (as text), NULLs under None."""
    rows = _run(raw, f"SELECT w.{quote(column)}::text, count(*) FROM ({window_sql}) w GROUP BY 1", params)
    return {value: int(count) for value, count in rows}


def per_column(connect: Any, tasks: Mapping[Any, Any], workers: int = 2) -> dict[Any, Any]:
    """Run ``task(raw_connection)`` for each key, ``workers`` connections scanning at once: one
    scan per column beats one scan that pairs every row with every column (measured: 25
    features x 1M rows, 0.19 s a column against 9 s for the paired scan)."""
    from concurrent.futures import ThreadPoolExecutor

    keys = list(tasks)

    def work(chunk: list[Any]) -> dict[Any, Any]:
        raw = connect()
        try:
            return {k: tasks[k](raw) for k in chunk}
        finally:
            raw.rollback()
            raw.close()

    chunks = [keys[i::workers] for i in range(workers) if keys[i::workers]]
    out: dict[Any, Any] = {}
    if not chunks:
        return out
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        for part in pool.map(work, chunks):
            out.update(part)
    return out


def count(raw: Any, window_sql: str, params: Mapping[str, Any]) -> int:
    (row,) = _run(raw, f"SELECT count(*) FROM ({window_sql}) w", params)
    return int(row[0])


def _f(v: Any) -> float | None:
    return None if v is None else float(v)
