"""Specs to SQL: one query per piece over a ``FROM`` clause, in a dialect (PostgreSQL, DuckDB,
Spark SQL).

NULL and NaN are both "no value" for numeric pieces (a NaN that reached a float column is not a
measurement); a group count keys both as None (one group), and the statistics skip it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from openmart.aggregates.specs import Count, GroupCount, Histogram, Moments, Spec
from openmart.mart.identifiers import quote, validate_column


def _backtick(name: str) -> str:
    """Spark SQL's identifier quoting (backticks, doubled inside), after the mart's validation."""
    validate_column(name)
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class Dialect:
    name: str
    double: str  # the float64 type's name
    #: the bin of an already NaN-free value ``x`` among literal edges, 1..k+1 (None: portable CASE sum)
    bucket: Callable[[str, Sequence[float]], str] | None = None
    quote: Callable[[str], str] = quote

    def value(self, column: str) -> str:
        """The column as float64, NULL where it is NULL or NaN."""
        c = self.quote(column)
        return (
            f"CASE WHEN CAST({c} AS {self.double}) <> CAST('NaN' AS {self.double}) THEN CAST({c} AS {self.double}) END"
        )


def _literal(v: float) -> str:
    return repr(float(v))


def _pg_bucket(x: str, edges: Sequence[float]) -> str:
    # width_bucket(x, thresholds) = the number of edges <= x (the array must be sorted)
    return f"width_bucket({x}, ARRAY[{', '.join(_literal(e) for e in edges)}]::float8[]) + 1"


POSTGRES = Dialect("postgres", "double precision", _pg_bucket)
DUCKDB = Dialect("duckdb", "DOUBLE")
SPARK = Dialect("spark", "DOUBLE", quote=_backtick)


def _case_bucket(x: str, edges: Sequence[float]) -> str:
    return "1 + " + " + ".join(f"CASE WHEN {x} >= {_literal(e)} THEN 1 ELSE 0 END" for e in edges)


def query(spec: Spec, source: str, dialect: Dialect) -> str:
    """The query computing ``spec`` over ``source`` (a FROM item, e.g. ``(SELECT ...) w``).
    Count and Moments give one row; Histogram (bin, n) rows; GroupCount (values..., n) rows."""
    if isinstance(spec, Count):
        return f"SELECT count(*) FROM {source}"
    if isinstance(spec, Moments):
        x = dialect.value(spec.column)
        return f"SELECT count(x), sum(x), sum(x * x), min(x), max(x) FROM (SELECT {x} AS x FROM {source}) m"
    if isinstance(spec, Histogram):
        x = dialect.value(spec.column)
        bucket = (dialect.bucket or _case_bucket)("x", spec.edges)
        return (
            f"SELECT CASE WHEN x IS NULL THEN 0 ELSE {bucket} END AS b, count(*) "
            f"FROM (SELECT {x} AS x FROM {source}) h GROUP BY 1"
        )
    if isinstance(spec, GroupCount):
        cols = ", ".join(dialect.quote(c) for c in spec.columns)
        return f"SELECT {cols}, count(*) FROM {source} GROUP BY {cols}"
    raise TypeError(f"not a spec: {spec!r}")
