"""Mergeable partial aggregates: what a monitor asks an engine to count over a set of records.

A monitor's statistic is written once as a few of these pieces, which any engine (PostgreSQL,
DuckDB over Parquet, Spark) computes over any part of the records. Pieces of two parts merge by
addition (counts, sums) or by min/max, so the hot PostgreSQL partitions and the Parquet archive
are counted separately and added, and the statistic is then computed from the merged pieces
(:mod:`openmart.aggregates.statistics`). Nothing here depends on an engine: the engines compile
the specs (``openmart.mart.engines``).

Every piece is exact: counts are integers and sums of float64 are added in the engine's own order
(the only source of a difference between engines: rounding of a sum, ~1e-12 relative).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from openmart.errors import ValidationError
from openmart.mart.identifiers import validate_column


def _column(name: str) -> str:
    validate_column(name)
    return name


@dataclass(frozen=True)
class Count:
    """The number of records."""


@dataclass(frozen=True)
class Moments:
    """Of one numeric column: values present (not NULL/NaN), their sum, sum of squares, min and max."""

    column: str

    def __post_init__(self) -> None:
        _column(self.column)


@dataclass(frozen=True)
class Histogram:
    """Counts of one numeric column in the bins the ``edges`` make (edges from the reference, so
    every part of the records is binned alike): bin 0 holds NULL/NaN, bin ``i`` (1..k+1) the values
    with exactly ``i - 1`` edges at or below them (``width_bucket(v, edges) + 1`` in PostgreSQL)."""

    column: str
    edges: tuple[float, ...]

    def __post_init__(self) -> None:
        _column(self.column)
        e = np.asarray(self.edges, dtype=float)
        if e.size == 0 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
            raise ValidationError(f"histogram of {self.column!r}: edges must be finite and strictly increasing")

    @property
    def bins(self) -> int:
        return len(self.edges) + 2


@dataclass(frozen=True)
class GroupCount:
    """Counts per combination of the ``columns``' values (NULL is a value): a confusion matrix
    (label × prediction), fairness groups (group × outcome), a categorical column's frequencies,
    or (score × label) from which ROC AUC is exact."""

    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValidationError("a group count needs at least one column")
        for c in self.columns:
            _column(c)


Spec: TypeAlias = Count | Moments | Histogram | GroupCount


@dataclass
class MomentsValue:
    n: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def merge(self, other: MomentsValue) -> MomentsValue:
        return MomentsValue(
            self.n + other.n,
            self.total + other.total,
            self.squares + other.squares,
            min(self.low, other.low),
            max(self.high, other.high),
        )


@dataclass
class GroupsValue:
    """Counts keyed by the tuple of the group's values (None for NULL)."""

    counts: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def merge(self, other: GroupsValue) -> GroupsValue:
        out = dict(self.counts)
        for k, v in other.counts.items():
            out[k] = out.get(k, 0) + v
        return GroupsValue(out)


Value: TypeAlias = int | MomentsValue | np.ndarray | GroupsValue


def empty(spec: Spec) -> Value:
    """The piece of no records."""
    if isinstance(spec, Count):
        return 0
    if isinstance(spec, Moments):
        return MomentsValue()
    if isinstance(spec, Histogram):
        return np.zeros(spec.bins, dtype=np.int64)
    return GroupsValue()


def merge_value(spec: Spec, a: Value, b: Value) -> Value:
    if isinstance(spec, Count):
        return int(a) + int(b)  # type: ignore[arg-type]
    if isinstance(spec, Histogram):
        return np.asarray(a) + np.asarray(b)
    return a.merge(b)  # type: ignore[union-attr, arg-type]


@dataclass
class Pieces:
    """The values of some specs over one part of the records (or over parts merged)."""

    values: dict[Spec, Value]

    @classmethod
    def of(cls, specs: Sequence[Spec]) -> Pieces:
        return cls({s: empty(s) for s in specs})

    def merge(self, other: Pieces) -> Pieces:
        if set(self.values) != set(other.values):
            raise ValueError("pieces of different specs cannot merge")
        return Pieces({s: merge_value(s, v, other.values[s]) for s, v in self.values.items()})

    def __getitem__(self, spec: Spec) -> Any:
        return self.values[spec]


def merge_all(parts: Sequence[Pieces], specs: Sequence[Spec]) -> Pieces:
    out = Pieces.of(specs)
    for p in parts:
        out = out.merge(p)
    return out
