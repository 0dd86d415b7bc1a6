"""Rows an engine returned for a spec, as the spec's piece."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from openmart.aggregates.specs import Count, GroupCount, GroupsValue, Histogram, Moments, MomentsValue, Spec, Value


def _plain(v: Any) -> Any:
    """One engine's value as another's: numbers as float (int for integral types), NaN kept."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v)
    return v


def piece(spec: Spec, rows: Sequence[Sequence[Any]]) -> Value:
    if isinstance(spec, Count):
        return int(rows[0][0])
    if isinstance(spec, Moments):
        n, total, squares, low, high = rows[0]
        if not n:
            return MomentsValue()
        return MomentsValue(int(n), float(total), float(squares), float(low), float(high))
    if isinstance(spec, Histogram):
        out = np.zeros(spec.bins, dtype=np.int64)
        for b, n in rows:
            out[int(b)] += int(n)
        return out
    if isinstance(spec, GroupCount):
        counts: dict[tuple[Any, ...], int] = {}
        for row in rows:
            key = tuple(_plain(v) for v in row[:-1])
            # NaN != NaN: every NaN row would be its own key; one key for all of them
            key = tuple(None if isinstance(v, float) and math.isnan(v) else v for v in key)
            counts[key] = counts.get(key, 0) + int(row[-1])
        return GroupsValue(counts)
    raise TypeError(f"not a spec: {spec!r}")
