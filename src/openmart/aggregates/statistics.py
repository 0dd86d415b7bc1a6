"""Exact statistics from merged pieces (:mod:`openmart.aggregates.specs`), equal to what
scikit-learn and scipy compute from the records themselves:

- classification metrics from the confusion counts (``GroupCount((label, prediction))``);
- ROC AUC from the counts per (score, label): the Mann–Whitney statistic with ties counted half,
  which is the trapezoidal area scikit-learn's ``roc_auc_score`` integrates;
- two-sample KS (statistic) and Wasserstein-1 from value counts (``GroupCount((column,))``) of
  two samples: both are functions of the two empirical CDFs, which the counts give exactly;
- mean and standard deviation from moments.

Histogram distances (PSI, Jensen–Shannon, chi-square) are the drift monitor's own functions of
bin counts: a ``Histogram`` piece is their input as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from openmart.aggregates.specs import GroupsValue, MomentsValue


def mean_std(m: MomentsValue, ddof: int = 0) -> tuple[float, float]:
    if m.n <= ddof:
        return float("nan"), float("nan")
    mean = m.total / m.n
    var = max(m.squares - m.n * mean * mean, 0.0) / (m.n - ddof)
    return mean, math.sqrt(var)


def confusion(groups: GroupsValue, classes: Sequence[Any]) -> np.ndarray:
    """The confusion matrix (rows: label, columns: prediction) in the order of ``classes``; pairs
    with a NULL or a value outside ``classes`` are left out, as unlabelled records are."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for (label, prediction), n in groups.counts.items():
        if label in index and prediction in index:
            out[index[label], index[prediction]] += n
    return out


def binary_metrics(matrix: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall, F1 of a 2 × 2 confusion matrix whose second class is the
    positive one; a metric whose denominator is 0 is 0 (scikit-learn's ``zero_division=0``)."""
    (tn, fp), (fn, tp) = matrix.astype(float)
    total = tn + fp + fn + tp

    def ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": ratio(tp + tn, total),
        "precision": precision,
        "recall": recall,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def roc_auc(groups: GroupsValue, positive: Any) -> float:
    """ROC AUC from counts per (score, label): P(score of a positive > score of a negative) +
    half P(equal). NaN when one class is absent (scikit-learn raises there)."""
    per_score: dict[float, list[int]] = {}
    for (score, label), n in groups.counts.items():
        if score is None or label is None or (isinstance(score, float) and math.isnan(score)):
            continue
        pos_neg = per_score.setdefault(float(score), [0, 0])
        pos_neg[0 if label == positive else 1] += n
    if not per_score:
        return float("nan")
    scores = np.array(sorted(per_score))
    pos = np.array([per_score[s][0] for s in scores], dtype=float)
    neg = np.array([per_score[s][1] for s in scores], dtype=float)
    total_pos, total_neg = pos.sum(), neg.sum()
    if not total_pos or not total_neg:
        return float("nan")
    neg_below = np.cumsum(neg) - neg
    return float(np.sum(pos * (neg_below + neg / 2)) / (total_pos * total_neg))


def _cdf_steps(a: GroupsValue, b: GroupsValue) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The merged distinct values and both empirical CDFs at each (NULL/NaN left out)."""

    def counts(g: GroupsValue) -> dict[float, int]:
        out: dict[float, int] = {}
        for (v,), n in g.counts.items():
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            out[float(v)] = out.get(float(v), 0) + n
        return out

    ca, cb = counts(a), counts(b)
    values = np.array(sorted(set(ca) | set(cb)))
    na = np.array([ca.get(v, 0) for v in values], dtype=np.int64)
    nb = np.array([cb.get(v, 0) for v in values], dtype=np.int64)
    if not na.sum() or not nb.sum():
        raise ValueError("two-sample statistics need values on both sides")
    return values, np.cumsum(na) / na.sum(), np.cumsum(nb) / nb.sum()


def ks_statistic(reference: GroupsValue, current: GroupsValue) -> float:
    """max |F_ref − F_cur| over the values (scipy's ``ks_2samp`` statistic)."""
    _, fa, fb = _cdf_steps(reference, current)
    return float(np.max(np.abs(fa - fb)))


def wasserstein(reference: GroupsValue, current: GroupsValue) -> float:
    """W1 = ∫ |F_ref − F_cur| (scipy's ``wasserstein_distance``), in the column's units."""
    values, fa, fb = _cdf_steps(reference, current)
    return float(np.dot(np.abs(fa - fb)[:-1], np.diff(values)))
