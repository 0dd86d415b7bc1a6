"""The data-quality monitor's aggregates, computed in PostgreSQL over a relation (a window of the
payload, or the whole reference): per column, in one scan, the present and missing counts, the
moments, min and max, and the counts that break a constraint (values outside a range, negative
values, non-integral numbers, values outside a domain); then, only for a constraint that was
broken, a few of the offending values with their counts.

Column names are quoted; ranges and domains are bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openmart.mart.identifiers import quote
from openmart.mart.windows import Relation, driver

#: a text value that reads as an integer / a number (SageMaker's Integral / Fractional of a text column)
INTEGRAL_TEXT = r"^\s*[-+]?[0-9]+\s*$"
NUMBER_TEXT = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


@dataclass(frozen=True)
class Checks:
    """What to count for one column (None: not checked)."""

    low: float | None = None  # values below are out of range
    high: float | None = None  # values above are out of range
    domain: Sequence[str] | None = None  # values outside are unseen
    integral: bool = False  # count the values that are not whole numbers
    number: bool = False  # (text columns) count the values that do not read as numbers


@dataclass
class ColumnCounts:
    rows: int
    present: int
    missing: int
    total: float | None = None
    mean: float | None = None
    std_pop: float | None = None
    min: float | None = None
    max: float | None = None
    out_of_range: int = 0
    unseen: int = 0
    wrong_type: int = 0
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _run(conn: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with driver(conn).cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _conditions(x: str, numeric: bool, checks: Checks, args: dict[str, Any]) -> dict[str, str]:
    """The SQL condition that marks an offending value, per kind of check."""
    out: dict[str, str] = {}
    if numeric:
        parts = []
        if checks.low is not None:
            args["dq_low"] = float(checks.low)
            parts.append(f"{x} < %(dq_low)s")
        if checks.high is not None:
            args["dq_high"] = float(checks.high)
            parts.append(f"{x} > %(dq_high)s")
        if parts:
            out["out_of_range"] = "(" + " OR ".join(parts) + ")"
        if checks.integral:
            # a double that is not a whole number (infinities and NaN are not integral either)
            out["wrong_type"] = f"({x} <> trunc({x}) OR {x} IN ('Infinity'::float8, '-Infinity'::float8, 'NaN'))"
    else:
        if checks.domain is not None:
            args["dq_domain"] = [str(v) for v in checks.domain]
            out["unseen"] = f"NOT ({x}::text = ANY(%(dq_domain)s::text[]))"
        if checks.integral or checks.number:
            args["dq_pattern"] = INTEGRAL_TEXT if checks.integral else NUMBER_TEXT
            out["wrong_type"] = f"({x}::text !~ %(dq_pattern)s)"
    return out


def column_counts(
    conn: Any, relation: Relation, column: str, *, numeric: bool, checks: Checks = Checks(), examples: int = 5
) -> ColumnCounts:
    """One scan for the counts of one column; one more per broken check for ``examples`` of
    its offending values (the most frequent first)."""
    x = f"w.{quote(column)}"
    args: dict[str, Any] = {}
    conds = _conditions(x, numeric, checks, args)
    cols = ["count(*)", f"count({x})"]
    if numeric:
        cols += [f"sum({x})", f"avg({x})", f"stddev_pop({x})", f"min({x})", f"max({x})"]
    names = list(conds)
    cols += [f"count(*) FILTER (WHERE {x} IS NOT NULL AND {conds[n]})" for n in names]
    sql, params = relation.query(f"SELECT {', '.join(cols)} FROM {{w}}", args)
    (row,) = _run(conn, sql, params)
    rows, present = int(row[0]), int(row[1])
    found = ColumnCounts(rows, present, rows - present)
    rest = list(row[2:])
    if numeric:
        total, mean, std, lo, hi = rest[:5]
        rest = rest[5:]
        found.total = None if total is None else float(total)
        found.mean = None if mean is None else float(mean)
        found.std_pop = None if std is None else float(std)
        found.min = None if lo is None else float(lo)
        found.max = None if hi is None else float(hi)
    for name, n in zip(names, rest, strict=True):
        setattr(found, name, int(n))
        if n and examples:
            found.examples[name] = _examples(conn, relation, x, conds[name], args, examples)
    return found


def _examples(conn: Any, relation: Relation, x: str, cond: str, args: dict[str, Any], n: int) -> list[dict[str, Any]]:
    sql, params = relation.query(
        f"SELECT {x} AS v, count(*) AS n FROM {{w}} WHERE {x} IS NOT NULL AND {cond} "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %(dq_n)s",
        {**args, "dq_n": int(n)},
    )
    return [{"value": v, "count": int(c)} for v, c in _run(conn, sql, params)]


def value_counts(conn: Any, relation: Relation, column: str, limit: int) -> tuple[int, list[tuple[str, int]]]:
    """(distinct present values, the ``limit`` most frequent values with their counts) of a
    column as text."""
    x = f"w.{quote(column)}::text"
    sql, params = relation.query(
        f"SELECT v, n, count(*) OVER () FROM (SELECT {x} AS v, count(*) AS n FROM {{w}} "
        f"WHERE {x} IS NOT NULL GROUP BY 1) q ORDER BY n DESC, v LIMIT %(dq_lim)s",
        {"dq_lim": int(limit)},
    )
    rows = _run(conn, sql, params)
    distinct = int(rows[0][2]) if rows else 0
    return distinct, [(str(v), int(n)) for v, n, _ in rows]


def histogram(conn: Any, relation: Relation, column: str, low: float, high: float, buckets: int) -> list[int]:
    """Counts of a numeric column in ``buckets`` equal-width buckets over [low, high] (the top
    bucket closed, so ``high`` itself counts in it)."""
    x = f"w.{quote(column)}"
    sql, params = relation.query(
        f"SELECT least(width_bucket({x}, %(h_lo)s, %(h_hi)s, %(h_n)s), %(h_n)s) AS b, count(*) "
        f"FROM {{w}} WHERE {x} IS NOT NULL AND {x} BETWEEN %(h_lo)s AND %(h_hi)s GROUP BY 1",
        {"h_lo": float(low), "h_hi": float(high), "h_n": int(buckets)},
    )
    counts = [0] * buckets
    for b, n in _run(conn, sql, params):
        counts[int(b) - 1] += int(n)
    return counts
