"""Domain classifier, as NannyML 0.13's ``DomainClassifierCalculator`` computes it.

The reference's records are labelled 0 and a chunk's 1; a LightGBM classifier with NannyML's fixed
hyperparameters (``DEFAULT_LGBM_HYPERPARAMS``: 100 trees, 31 leaves, learning rate 0.1,
``random_state=13``) is cross-validated on them with a stratified 5-fold split (scikit-learn's
``StratifiedKFold``, not shuffled: rows in order, reference first), and the chunk's value is the
ROC AUC of the out-of-fold probabilities. 0.5: the classifier cannot tell the chunk from the
reference; 1: it always can. A reference chunk is scored the same way against the whole reference,
its own rows labelled 1.

Categorical features are ordinal-encoded over the rows of that fit (scikit-learn's
``OrdinalEncoder``: sorted categories, missing values left missing) and handed to LightGBM as
categorical; the columns are the categorical features then the continuous ones, each sorted by name,
as NannyML orders them. Thresholds are NannyML's constants: 0.45 and 0.65. NannyML gives the method
no sampling error.

Cost: each chunk fits five models on (reference + chunk) rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from openmart.multivariate.common import DriftValue, as_objects, chunk_slices, reference_chunk_size, split_features

METHOD = "domain_classifier"
#: NannyML 0.13's DEFAULT_LGBM_HYPERPARAMS, less its ``silent`` (a LightGBM 3 name LightGBM 4 ignores)
HYPERPARAMETERS: dict[str, Any] = {
    "boosting_type": "gbdt",
    "class_weight": None,
    "colsample_bytree": 1.0,
    "importance_type": "split",
    "learning_rate": 0.1,
    "max_depth": -1,
    "min_child_samples": 20,
    "min_child_weight": 0.001,
    "min_split_gain": 0.0,
    "n_estimators": 100,
    "n_jobs": -1,
    "num_leaves": 31,
    "objective": None,
    "random_state": 13,
    "reg_alpha": 0.0,
    "reg_lambda": 0.0,
    "subsample": 1.0,
    "subsample_for_bin": 200000,
    "subsample_freq": 0,
}
CV_FOLDS = 5
#: NannyML's ConstantThreshold(lower=0.45, upper=0.65)
LOWER_THRESHOLD = 0.45
UPPER_THRESHOLD = 0.65


def _design(x: pd.DataFrame, continuous: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """NannyML's ``preprocess_categorical_features``: each categorical column ordinal-encoded over
    these rows (sorted categories, NaN kept), then the continuous columns as float."""
    out: dict[str, np.ndarray] = {}
    for c in categorical:
        values = as_objects(x[c])
        present = values.dropna()
        # sorted as scikit-learn's OrdinalEncoder sorts one column's categories
        categories = np.sort(present.unique()) if len(present) else np.array([], dtype=object)
        codes = pd.Series(np.arange(len(categories), dtype=float), index=pd.Index(categories, dtype=object))
        out[c] = values.map(codes).to_numpy(dtype=float)
    for c in continuous:
        out[c] = pd.to_numeric(x[c], errors="coerce").to_numpy(dtype=float)
    return pd.DataFrame(out, columns=[*categorical, *continuous])


def cross_validated_auroc(
    x: pd.DataFrame,
    y: np.ndarray,
    categorical: Sequence[str],
    *,
    folds: int = CV_FOLDS,
    hyperparameters: dict[str, Any] | None = None,
) -> float:
    """The ROC AUC of out-of-fold LightGBM probabilities of ``y`` (0 reference, 1 chunk)."""
    from lightgbm import LGBMClassifier  # imported when used: LightGBM loads OpenMP

    params = {**HYPERPARAMETERS, **(hyperparameters or {}), "verbose": -1}
    predictions, targets = [], []
    for train, test in StratifiedKFold(n_splits=folds).split(x, y):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using categorical_feature in Dataset")
            model = LGBMClassifier(**params)
            model.fit(x.iloc[train], y[train], categorical_feature=list(categorical) or "auto")
        predictions.append(model.predict_proba(x.iloc[test])[:, 1])
        targets.append(y[test])
    truth, scores = np.concatenate(targets), np.concatenate(predictions)
    if np.unique(truth).size < 2:
        return 0.5  # NannyML: nothing to tell apart
    return float(roc_auc_score(truth, scores))


@dataclass
class DomainClassifier:
    """The reference (rows in order) and how to read its features; ``measure`` scores one chunk."""

    reference: pd.DataFrame
    features: list[str]
    continuous: list[str]
    categorical: list[str]
    chunk_size: int
    folds: int = CV_FOLDS
    hyperparameters: dict[str, Any] | None = None
    lower_threshold: float = LOWER_THRESHOLD
    upper_threshold: float = UPPER_THRESHOLD

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame,
        features: Sequence[str] | None = None,
        *,
        chunk_size: int | None = None,
        categorical: Sequence[str] | None = None,
        folds: int = CV_FOLDS,
        hyperparameters: dict[str, Any] | None = None,
    ) -> DomainClassifier:
        """Keep the reference's features. Nothing is learned yet: every chunk trains its own models."""
        if reference.empty:
            raise ValueError("the reference has no rows")
        features = list(features if features is not None else reference.columns)
        continuous, cats = split_features(reference, features, categorical)
        ref = reference[features].reset_index(drop=True)
        size = reference_chunk_size(len(ref), chunk_size)
        return cls(ref, features, continuous, cats, size, folds, hyperparameters)

    def _value(self, x: pd.DataFrame, y: np.ndarray, records: int) -> DriftValue:
        auroc = cross_validated_auroc(
            _design(x, self.continuous, self.categorical),
            y,
            self.categorical,
            folds=self.folds,
            hyperparameters=self.hyperparameters,
        )
        return DriftValue(METHOD, auroc, records, self.lower_threshold, self.upper_threshold)

    def measure(self, data: pd.DataFrame) -> DriftValue:
        """A chunk's AUROC against the whole reference (rows: the reference's, then the chunk's in order)."""
        if len(data) < self.folds:
            raise ValueError(f"the chunk has {len(data)} rows: {self.folds} stratified folds need as many")
        chunk = data[self.features].reset_index(drop=True)
        x = pd.concat([self.reference, chunk], ignore_index=True)
        y = np.concatenate([np.zeros(len(self.reference)), np.ones(len(chunk))])
        return self._value(x, y, len(chunk))

    def reference_chunks(self) -> list[DriftValue]:
        """Each reference chunk against the whole reference, its rows labelled 1 (NannyML's reference
        period). Costly: a reference of n records in k chunks trains 5·k models on n rows."""
        out = []
        for s in chunk_slices(len(self.reference), self.chunk_size):
            y = np.zeros(len(self.reference))
            y[s] = 1
            out.append(self._value(self.reference, y, s.stop - s.start))
        return out
