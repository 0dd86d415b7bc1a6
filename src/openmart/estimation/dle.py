"""Direct loss estimation (DLE) for regressors, as NannyML 0.13 does it.

A LightGBM regressor (default hyperparameters, NannyML's choice) learns each reference record's loss
— ``|y - ŷ|`` for MAE, ``(y - ŷ)²`` for MSE — from the features and the prediction; a chunk's estimate
is the mean of its predicted losses (negative predictions clipped to 0). Categorical features are
ordinal-encoded as NannyML does (missing values a category of their own, unseen categories 0) and
handed to LightGBM as categorical.

It assumes no concept shift: the loss given the features is the reference's. The sampling error is
the reference's per-record loss standard deviation over ``sqrt(chunk size)``; thresholds are the
reference chunks' realized metric, mean ± 3 std (not below 0).

LightGBM is a dependency of openmart for this (NannyML uses it; another learner would not agree
with NannyML's estimates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.preprocessing import OrdinalEncoder

from openmart.estimation import common

if TYPE_CHECKING:
    from lightgbm import LGBMRegressor

METRICS = ("mae", "mse")
LIMITS = (0.0, None)
MISSING = "NML_missing_value"  # NannyML's category for a missing categorical value


def _loss(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    err = np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float)
    return np.abs(err) if metric == "mae" else np.square(err)


def is_categorical(column: pd.Series) -> bool:
    """NannyML's rule: text, category and boolean columns are categorical."""
    return (
        column.dtype == object
        or isinstance(column.dtype, pd.StringDtype | pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(column.dtype)
    )


@dataclass
class DLE:
    """A DLE estimator fitted on a labelled reference: ``features`` a frame of the model's inputs."""

    features: list[str]
    categorical: list[str]
    chunk_size: int
    metrics: tuple[str, ...]
    encoders: dict[str, OrdinalEncoder] = field(default_factory=dict)
    models: dict[str, LGBMRegressor] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    threshold_values: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        features: pd.DataFrame,
        y_pred: np.ndarray,
        y_true: np.ndarray,
        *,
        chunk_size: int,
        categorical: Sequence[str] | None = None,
        metrics: Sequence[str] = METRICS,
    ) -> DLE:
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"DLE metrics: {sorted(unknown)} unknown (choose from {', '.join(METRICS)})")
        y_pred, y_true = np.asarray(y_pred, dtype=float), np.asarray(y_true, dtype=float)
        names = list(features.columns)
        if categorical is None:
            categorical = [c for c in names if is_categorical(features[c])]
        est = cls(names, sorted(categorical), chunk_size, tuple(metrics))
        for column in est.categorical:
            encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
            encoder.fit(_filled(features[column]))
            est.encoders[column] = encoder
        n = len(y_true)
        for metric in est.metrics:

            def realized(s: slice, m: str = metric) -> float:
                return float(np.mean(_loss(m, y_true[s], y_pred[s])))

            est.threshold_values[metric] = common.reference_thresholds(n, chunk_size, realized, *LIMITS)
        from lightgbm import LGBMRegressor  # imported when a regressor is fitted, not with every monitor

        # NannyML drops reference records without a label or a prediction before it trains
        known = ~(np.isnan(y_true) | np.isnan(y_pred))
        X = est.design(features, y_pred)[known]
        for metric in est.metrics:
            loss = _loss(metric, y_true[known], y_pred[known])
            est.stds[metric] = float(np.std(loss))
            model = LGBMRegressor(verbose=-1)  # NannyML's defaults; verbose only silences the log
            est.models[metric] = model.fit(X, loss, categorical_feature=est.categorical)
        return est

    def design(self, features: pd.DataFrame, y_pred: np.ndarray) -> pd.DataFrame:
        """The learner's inputs: the features (categories as NannyML's codes, 1-based; 0 unseen) and
        the prediction, in NannyML's column order."""
        X = pd.DataFrame(index=range(len(features)))
        for column in self.features:
            values = features[column].reset_index(drop=True)
            if column in self.encoders:
                X[column] = self.encoders[column].transform(_filled(values)).ravel() + 1
            else:
                X[column] = pd.to_numeric(values, errors="coerce").astype(float)
        X["__y_pred__"] = np.asarray(y_pred, dtype=float)
        return X

    def estimate(
        self, features: pd.DataFrame, y_pred: np.ndarray, y_true: np.ndarray | None = None
    ) -> dict[str, common.Estimate]:
        """Each metric's estimate over one chunk, and the realized value over its labelled records
        when ``y_true`` is given (NaN: not labelled yet)."""
        y_pred = np.asarray(y_pred, dtype=float)
        n = len(y_pred)
        if n == 0:
            raise ValueError("DLE: an empty chunk")
        X = self.design(features, y_pred)
        realized = self.realized(y_true, y_pred) if y_true is not None else {}
        out: dict[str, common.Estimate] = {}
        for m in self.metrics:
            value = float(np.mean(np.maximum(0, self.models[m].predict(X))))
            se = self.stds[m] / np.sqrt(int(np.sum(~np.isnan(y_pred))))
            out[m] = common.estimate(m, value, se, LIMITS, self.threshold_values[m], realized.get(m))
        return out

    def realized(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
        """The metrics over the labelled records (a missing label: not labelled yet); empty when none."""
        yt = np.asarray(pd.to_numeric(pd.Series(y_true), errors="coerce"), dtype=float)
        yp = np.asarray(y_pred, dtype=float)
        known = ~(np.isnan(yt) | np.isnan(yp))
        if not known.any():
            return {}
        return {m: float(np.mean(_loss(m, yt[known], yp[known]))) for m in self.metrics}


def _filled(values: pd.Series) -> np.ndarray:
    column = values.astype(object)
    return column.where(column.notna(), MISSING).to_numpy().reshape(-1, 1)
