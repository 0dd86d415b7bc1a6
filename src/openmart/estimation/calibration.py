"""Probability calibration on the labelled reference, as NannyML 0.13 decides and does it.

Scores are recalibrated with isotonic regression only when that helps: ten stratified 90/10 splits
of the reference (seeded 42), isotonic regression fitted on each 90 % and applied to its 10 %, and the
binned expected calibration error (10 equal-count bins) of the pooled held-out scores compared before
and after. Nearly perfect rankings (ROC AUC > 0.999) and single-class references are left alone.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit


class Calibrator(Protocol):
    def __call__(self, proba: np.ndarray) -> np.ndarray: ...


def identity(proba: np.ndarray) -> np.ndarray:
    return np.asarray(proba, dtype=float)


def isotonic(proba: np.ndarray, y_true: np.ndarray) -> IsotonicRegression:
    return IsotonicRegression(out_of_bounds="clip", increasing=True).fit(proba, y_true)


def _bin_edges(n: int, bins: int) -> list[tuple[int, int]]:
    if n <= 2 * bins:
        bins = n // 2
        if bins < 2:
            raise ValueError(f"cannot split {n} scores into at least 2 calibration bins")
    width = n // bins
    edges = np.asarray(range(0, n + 1, width))
    edges[-1] = n
    return list(zip(edges[:-1], edges[1:], strict=True))


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, edges: list[tuple[int, int]]) -> float:
    # NannyML sorts with numpy's default (unstable) sort; so do we, so that ties fall in the same bins
    order = np.asarray(proba).argsort()
    proba, y_true = np.asarray(proba)[order], np.asarray(y_true)[order]
    n = len(proba)
    return float(sum((r - left) / n * abs(proba[left:r].mean() - y_true[left:r].mean()) for left, r in edges))


def needs_calibration(y_true: np.ndarray, proba: np.ndarray, bins: int = 10, splits: int = 10) -> bool:
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=float)
    if np.isnan(proba).any():
        raise ValueError("the reference's probabilities contain missing values")
    if np.unique(y_true).size == 1:
        return False
    if roc_auc_score(y_true, proba) > 0.999:
        return False
    truth, before, after = [], [], []
    for train, test in StratifiedShuffleSplit(n_splits=splits, test_size=0.1, random_state=42).split(proba, y_true):
        truth.append(y_true[test])
        before.append(proba[test])
        after.append(isotonic(proba[train], y_true[train]).predict(proba[test]))
    y, p, c = np.concatenate(truth), np.concatenate(before), np.concatenate(after)
    edges = _bin_edges(len(p), bins)
    return expected_calibration_error(y, p, edges) > expected_calibration_error(y, c, edges)


def fit_calibrator(y_true: np.ndarray, proba: np.ndarray) -> tuple[Calibrator, bool]:
    """The calibrator for these reference scores (isotonic when it helps, else the identity), and
    whether it recalibrates."""
    if needs_calibration(y_true, proba):
        model = isotonic(np.asarray(proba, dtype=float), np.asarray(y_true))
        return model.predict, True
    return identity, False
