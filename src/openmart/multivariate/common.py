"""What both multivariate methods share: which features are categorical, the reference's chunks,
and a chunk's result, as NannyML 0.13 decides them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from openmart.estimation.common import chunk_slices
from openmart.estimation.dle import is_categorical

__all__ = ["DriftValue", "chunk_slices", "reference_chunk_size", "split_features"]

#: NannyML's DefaultChunker: with no chunking given, a data set is cut into this many chunks
DEFAULT_CHUNK_COUNT = 10


@dataclass(frozen=True)
class DriftValue:
    """One method over one chunk: the value, its sampling error and confidence band (None where the
    method has none: NannyML gives the domain classifier none), the thresholds and the records."""

    method: str
    value: float
    records: int
    lower_threshold: float | None
    upper_threshold: float | None
    sampling_error: float | None = None
    lower_confidence: float | None = None
    upper_confidence: float | None = None

    @property
    def alert(self) -> bool:
        """Outside the thresholds. NannyML's two methods word it differently (reconstruction:
        ``not lower < v < upper``; domain classifier: ``v < lower or v > upper``): they differ only
        on a value exactly at a threshold, which is kept as each method says."""
        if math.isnan(self.value):
            return False
        lower = -math.inf if self.lower_threshold is None else self.lower_threshold
        upper = math.inf if self.upper_threshold is None else self.upper_threshold
        if self.method == "reconstruction":
            return not (lower < self.value < upper)
        return self.value < lower or self.value > upper

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["alert"] = self.alert
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def reference_chunk_size(n: int, chunk_size: int | None) -> int:
    """Records per reference chunk: the given size, or NannyML's default of ten chunks (``n // 10``,
    the remainder an eleventh, incomplete chunk)."""
    if chunk_size is not None:
        return int(chunk_size)
    return max(1, n // DEFAULT_CHUNK_COUNT)


def split_features(
    frame: pd.DataFrame, features: Sequence[str], categorical: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """(continuous, categorical), each in sorted order as NannyML's ``_split_features_by_type``
    returns them. ``categorical`` None: NannyML's rule (text, category, boolean columns)."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"columns not in the data: {missing}")
    if categorical is None:
        cats = {f for f in features if is_categorical(frame[f])}
    else:
        unknown = [c for c in categorical if c not in features]
        if unknown:
            raise ValueError(f"categorical columns not among the features: {unknown}")
        cats = set(categorical)
    return sorted(f for f in features if f not in cats), sorted(cats)


def as_objects(column: pd.Series) -> pd.Series:
    """A categorical column as plain Python objects with NaN for missing (pandas 3's string dtype
    and None both become NaN), so every source of the same values compares equal."""
    values = column.astype(object)
    return values.where(values.notna(), np.nan)
