"""PCA data-reconstruction error, as NannyML 0.13's ``DataReconstructionDriftCalculator`` computes it.

Fitted on the reference: missing values imputed (continuous: the mean; categorical: the most
frequent value, the smallest of ties as scikit-learn picks it), categorical values replaced by
their frequency in the reference (category_encoders' ``CountEncoder(normalize=True)``: an unseen
value becomes 0), every column standardised, then a PCA keeping the fewest components that explain
65 % of the variance (``n_components=0.65``, ``random_state=16``).

A chunk's records go through the same steps, are projected on the components and back, and each
record's error is the euclidean distance between it and its reconstruction. The chunk's value is
the mean error; its sampling error the errors' standard deviation (ddof 1) over ``sqrt(n)``; its
band the value ± 3 sampling errors (not below 0). What the components do not capture — a
relation between features the reference did not have — shows up as a larger error.

Thresholds: the reference's own chunks' values, mean ± 3 standard deviations (ddof 0); a lower
threshold at or below 0 is dropped (NannyML's ``override_using_none``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from openmart.multivariate.common import DriftValue, as_objects, chunk_slices, reference_chunk_size, split_features

METHOD = "reconstruction"
#: NannyML's defaults
N_COMPONENTS = 0.65
PCA_RANDOM_STATE = 16
SAMPLING_ERROR_RANGE = 3.0
THRESHOLD_STDS = 3.0
ReconstructionError = DriftValue


def _most_frequent(column: pd.Series) -> object:
    """scikit-learn's SimpleImputer(strategy='most_frequent'): the most frequent value, the smallest
    of ties."""
    counts = column.dropna().value_counts()
    if counts.empty:
        return np.nan
    return min(counts.index[counts == counts.max()])


@dataclass
class Reconstruction:
    """The fitted transformation and the thresholds learned from the reference's chunks."""

    features: list[str]
    continuous: list[str]
    categorical: list[str]
    chunk_size: int
    means: dict[str, float] = field(default_factory=dict)
    modes: dict[str, object] = field(default_factory=dict)
    frequencies: dict[str, dict[object, float]] = field(default_factory=dict)
    scaler: StandardScaler = field(default_factory=StandardScaler)
    pca: PCA | None = None
    reference_values: list[float] = field(default_factory=list)
    lower_threshold: float | None = None
    upper_threshold: float | None = None

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame,
        features: Sequence[str] | None = None,
        *,
        chunk_size: int | None = None,
        categorical: Sequence[str] | None = None,
        n_components: float | int = N_COMPONENTS,
    ) -> Reconstruction:
        """Fit on the reference (rows in order: its chunks are consecutive rows) and learn the
        thresholds from its chunks of ``chunk_size`` records (default: ten chunks)."""
        if reference.empty:
            raise ValueError("the reference has no rows")
        features = list(features if features is not None else reference.columns)
        continuous, cats = split_features(reference, features, categorical)
        self = cls(features, continuous, cats, reference_chunk_size(len(reference), chunk_size))
        for c in continuous:
            mean = pd.to_numeric(reference[c], errors="coerce").astype(float).mean()
            self.means[c] = 0.0 if np.isnan(mean) else float(mean)
        for c in cats:
            values = as_objects(reference[c])
            self.modes[c] = _most_frequent(values)
            imputed = values.fillna(self.modes[c]).map(str)
            self.frequencies[c] = imputed.value_counts(normalize=True).to_dict()
        data = self.scaler.fit_transform(self._encode(reference))
        self.pca = PCA(n_components=n_components, random_state=PCA_RANDOM_STATE).fit(data)
        chunks = chunk_slices(len(reference), self.chunk_size)
        self.reference_values = [self.measure(reference.iloc[s]).value for s in chunks]
        self.lower_threshold, self.upper_threshold = thresholds(np.array(self.reference_values))
        return self

    def _encode(self, data: pd.DataFrame) -> np.ndarray:
        """Imputed and count-encoded, in the features' order, as float64."""
        columns = {}
        for c in self.features:
            if c in self.frequencies:
                values = as_objects(data[c]).fillna(self.modes[c]).map(str)
                columns[c] = values.map(self.frequencies[c]).fillna(0.0).to_numpy(dtype=float)  # unseen: 0
            else:
                columns[c] = pd.to_numeric(data[c], errors="coerce").astype(float).fillna(self.means[c]).to_numpy()
        return np.column_stack([columns[c] for c in self.features])

    def errors(self, data: pd.DataFrame) -> np.ndarray:
        """Each record's reconstruction error: the euclidean distance between the standardised
        record and its projection on the principal components, mapped back."""
        assert self.pca is not None
        x = self.scaler.transform(self._encode(data))
        return np.linalg.norm(x - self.pca.inverse_transform(self.pca.transform(x)), axis=1)

    @property
    def components(self) -> int:
        assert self.pca is not None
        return int(self.pca.n_components_)

    def measure(self, data: pd.DataFrame) -> DriftValue:
        """One chunk's mean reconstruction error, sampling error, band and the learned thresholds."""
        if len(data) == 0:
            raise ValueError("the chunk has no rows")
        err = self.errors(data)
        mean = float(np.mean(err))
        # one record: no standard deviation, as NannyML's NaN
        se = float(np.std(err, ddof=1) / np.sqrt(err.size)) if err.size > 1 else float("nan")
        return DriftValue(
            METHOD,
            mean,
            int(err.size),
            self.lower_threshold,
            self.upper_threshold,
            se,
            max(mean - SAMPLING_ERROR_RANGE * se, 0.0),
            mean + SAMPLING_ERROR_RANGE * se,
        )


def thresholds(values: np.ndarray, k: float = THRESHOLD_STDS) -> tuple[float | None, float | None]:
    """Mean ± k population standard deviations of the reference chunks' values (NaN ignored); a lower
    threshold at or below 0 — an error cannot be below 0 — is dropped, as NannyML does."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return None, None
    mean, std = float(np.nanmean(values)), float(np.nanstd(values))
    lower = mean - k * std
    return (lower if lower > 0 else None), mean + k * std
