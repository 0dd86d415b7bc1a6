"""Reference statistics, computed once when reference data is loaded and stored in the mart
(``subscriptions.reference_profile``), so an evaluation never re-reads the reference.

Per numeric column: moments, the PSI bin edges (reference deciles), fine edges (percentiles:
100 equal-frequency bins) with the reference's counts in them, and — for small references —
the values themselves, so p-value tests can be exact. Per categorical column: value counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from openmart.mart.records import as_text
from openmart.schema import ProblemType, SubscriptionSchema

PSI_BINS = 10
FINE_BINS = 100
SMALL_SAMPLE = 1000  # Evidently's line between p-value tests and distances
MAX_CATEGORIES = 1000


@dataclass
class ColumnProfile:
    name: str
    kind: str  # numeric | categorical
    count: int
    nulls: int
    n_unique: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    psi_edges: list[float] = field(default_factory=list)
    psi_counts: list[int] = field(default_factory=list)
    fine_edges: list[float] = field(default_factory=list)
    fine_counts: list[int] = field(default_factory=list)
    fine_sums: list[float] = field(default_factory=list)  # sum of the values in each fine bucket
    values: list[float] | None = None  # kept only for small references
    categories: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        return cls(**d)


def interior_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Quantile cut points between equal-frequency bins, without repeats (ties collapse bins)."""
    if values.size == 0:
        return np.array([])
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def bucket_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bucket with PostgreSQL ``width_bucket`` semantics (see openmart.mart.stats)."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def bucket_sums(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"), weights=values, minlength=len(edges) + 1)


def merge_buckets(fine_edges: Sequence[float], coarse_edges: Sequence[float], counts: Sequence[float]) -> np.ndarray:
    """Counts on ``coarse_edges`` from counts on ``fine_edges`` (coarse edges are fine edges)."""
    cut = np.searchsorted(np.asarray(fine_edges), np.asarray(coarse_edges)) + 1
    return np.add.reduceat(np.asarray(counts, dtype=float), np.concatenate([[0], cut]))


def profile_column(series: pd.Series, kind: str) -> ColumnProfile:
    nulls = int(series.isna().sum())
    present = series.dropna()
    if kind == "categorical":
        counts = present.map(as_text).value_counts()
        top = counts.iloc[:MAX_CATEGORIES]
        cats = {str(k): int(v) for k, v in top.items()}
        if len(counts) > MAX_CATEGORIES:
            cats["__other__"] = int(counts.iloc[MAX_CATEGORIES:].sum())
        return ColumnProfile(str(series.name), kind, int(present.size), nulls, int(counts.size), categories=cats)
    values = pd.to_numeric(present).to_numpy(dtype=float)
    fine_edges = interior_edges(values, FINE_BINS)
    # PSI's deciles are chosen among the fine edges, so PSI counts are sums of fine buckets
    psi_edges = (
        np.unique(
            fine_edges[
                np.searchsorted(fine_edges, interior_edges(values, PSI_BINS)).clip(0, max(len(fine_edges) - 1, 0))
            ]
        )
        if fine_edges.size
        else fine_edges
    )
    fine_counts = bucket_counts(values, fine_edges)
    return ColumnProfile(
        str(series.name),
        kind,
        int(values.size),
        nulls,
        int(np.unique(values).size),
        mean=float(values.mean()) if values.size else None,
        std=float(values.std(ddof=1)) if values.size > 1 else None,
        min=float(values.min()) if values.size else None,
        max=float(values.max()) if values.size else None,
        psi_edges=psi_edges.tolist(),
        psi_counts=merge_buckets(fine_edges, psi_edges, fine_counts).astype(int).tolist(),
        fine_edges=fine_edges.tolist(),
        fine_counts=fine_counts.tolist(),
        fine_sums=bucket_sums(values, fine_edges).tolist(),
        values=values.tolist() if values.size <= SMALL_SAMPLE else None,
    )


def profile_frame(frame: pd.DataFrame, kinds: dict[str, str]) -> dict[str, Any]:
    return {
        "rows": int(len(frame)),
        "columns": {
            name: profile_column(frame[name], kind).to_dict() for name, kind in kinds.items() if name in frame.columns
        },
    }


def set_profile(schema: SubscriptionSchema, frame: pd.DataFrame) -> dict[str, Any]:
    """The profile of a record set with the subscription's schema (its reference, or any set a
    comparison takes as baseline): every input column, and the model's output under
    ``__output__`` — its predictions, or its labels when the set has no predictions."""
    kinds = {c.name: str(c.kind) for c in schema.input_columns if c.name in frame.columns}
    outputs = frame.loc[:, list(kinds)].copy()
    predicted = schema.prediction in frame.columns and frame[schema.prediction].notna().any()
    source = schema.prediction if predicted else schema.label
    if source in frame.columns:
        outputs["__output__"] = frame[source]
        kinds["__output__"] = "numeric" if schema.problem_type is ProblemType.REGRESSION else "categorical"
    profile = profile_frame(outputs, kinds)
    profile["output_source"] = source
    return profile
