"""What CBPE and DLE share: an estimate's shape, reference chunks, thresholds and the confidence band,
all as NannyML 0.13 computes them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: the confidence band is the estimate ± this many sampling errors (NannyML's SAMPLING_ERROR_RANGE)
SAMPLING_ERROR_RANGE = 3.0
#: thresholds are the mean of the reference chunks' realized metric ± this many standard deviations
#: (NannyML's StandardDeviationThreshold)
THRESHOLD_STDS = 3.0


@dataclass(frozen=True)
class Estimate:
    """One metric over one chunk: the estimate, its sampling error and band, the thresholds learned
    from the reference's chunks, and the realized value when the chunk's labels are known."""

    metric: str
    value: float
    sampling_error: float
    lower_confidence: float
    upper_confidence: float
    lower_threshold: float | None
    upper_threshold: float | None
    realized: float | None = None

    @property
    def alert(self) -> bool:
        """The estimate is outside the thresholds (NannyML's ``alert``)."""
        return (self.lower_threshold is not None and self.value < self.lower_threshold) or (
            self.upper_threshold is not None and self.value > self.upper_threshold
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["alert"] = self.alert
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def chunk_slices(n: int, size: int) -> Iterator[slice]:
    """NannyML's size-based chunks: consecutive ``size`` records, the incomplete last chunk kept."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1; got {size}")
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def thresholds(
    values: np.ndarray, low: float | None, high: float | None, k: float = THRESHOLD_STDS
) -> tuple[float | None, float | None]:
    """Mean ± k population standard deviations of the reference chunks' values (NaN ignored), each
    side replaced by the metric's limit when it reaches it (``calculate_threshold_values``)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return None, None
    mean, std = float(np.nanmean(values)), float(np.nanstd(values))
    lower, upper = mean - k * std, mean + k * std
    if low is not None and lower <= low:
        lower = low
    if high is not None and upper >= high:
        upper = high
    return lower, upper


def reference_thresholds(
    n: int, chunk_size: int, realized: Callable[[slice], float], low: float | None, high: float | None
) -> tuple[float | None, float | None]:
    """Thresholds from the realized metric of each reference chunk."""
    return thresholds(np.array([realized(s) for s in chunk_slices(n, chunk_size)]), low, high)


def band(value: float, sampling_error: float, low: float | None, high: float | None) -> tuple[float, float]:
    """The confidence band: value ± 3 sampling errors, clipped to the metric's range."""
    lower = value - SAMPLING_ERROR_RANGE * sampling_error
    upper = value + SAMPLING_ERROR_RANGE * sampling_error
    if low is not None:
        lower = max(low, lower)
    if high is not None:
        upper = min(high, upper)
    return lower, upper


def estimate(
    metric: str,
    value: float,
    sampling_error: float,
    limits: tuple[float | None, float | None],
    threshold: tuple[float | None, float | None],
    realized: float | None,
) -> Estimate:
    lower, upper = band(value, sampling_error, *limits)
    return Estimate(metric, float(value), float(sampling_error), lower, upper, *threshold, realized)
