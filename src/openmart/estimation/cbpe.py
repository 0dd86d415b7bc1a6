"""Confidence-based performance estimation (CBPE), as NannyML 0.13 does it.

A calibrated probability is the chance the record is positive, so a chunk's expected confusion
matrix is the sum of the probabilities: a record predicted positive adds ``p`` true positives and
``1 - p`` false positives, one predicted negative adds ``p`` false negatives and ``1 - p`` true
negatives. Accuracy, precision, recall and F1 follow from it; ROC AUC is the area under the curve
traced by ranking the records on the model's own scores and counting calibrated probabilities as
positives. Multiclass metrics are one-vs-rest macro averages over the classes (each class's
probabilities calibrated on its own, then renormalised to sum to one).

It assumes no concept shift (P(y | x) is the reference's) and scores that are calibrated — or
calibratable on the reference (see :mod:`.calibration`).

Sampling errors are NannyML's: a reference standard deviation scaled by ``sqrt(reference share /
chunk size)`` per metric. Thresholds are the reference chunks' realized metric, mean ± 3 std.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics as skm

from openmart.estimation import common
from openmart.estimation.calibration import Calibrator, fit_calibrator

METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")
LIMITS = (0.0, 1.0)


# -- estimates from calibrated probabilities (one class against the rest) -----------------------------


def _confusion(y_pred: np.ndarray, p: np.ndarray) -> tuple[float, float, float, float]:
    positive = y_pred == 1
    tp = float(np.sum(p, where=positive))
    fp = float(np.sum(1 - p, where=positive))
    fn = float(np.sum(p, where=~positive))
    tn = float(np.sum(1 - p, where=~positive))
    return tp, fp, fn, tn


def estimated_precision(y_pred: np.ndarray, p: np.ndarray) -> float:
    tp, fp, _, _ = _confusion(y_pred, p)
    return tp / (tp + fp) if tp + fp != 0 else 0.0


def estimated_recall(y_pred: np.ndarray, p: np.ndarray) -> float:
    tp, _, fn, _ = _confusion(y_pred, p)
    return tp / (tp + fn) if tp + fn != 0 else 0.0


def estimated_f1(y_pred: np.ndarray, p: np.ndarray) -> float:
    tp, fp, fn, _ = _confusion(y_pred, p)
    denominator = tp + 0.5 * (fp + fn)
    return tp / denominator if denominator != 0 else 0.0


def estimated_accuracy(y_pred: np.ndarray, p: np.ndarray) -> float:
    tp, _, _, tn = _confusion(y_pred, p)
    return (tp + tn) / len(y_pred)


def estimated_roc_auc(calibrated: np.ndarray, scores: np.ndarray) -> float:
    """The ROC curve of the records ranked by the model's scores (descending), each counting its
    calibrated probability as a positive and the rest as a negative; NannyML rounds the cumulative
    counts to 5 decimals."""
    order = np.argsort(scores)[::-1]
    tps = np.cumsum(np.asarray(calibrated, dtype=float)[order])
    fps = 1 + np.arange(len(tps)) - tps
    tps = np.round(np.r_[0, tps], 5)
    fps = np.round(np.r_[0, fps], 5)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(skm.auc(fps / fps[-1], tps / tps[-1]))


# -- sampling-error components from the labelled reference ----------------------------------------


def _roc_auc_components(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Per-positive rank statistics (the Mann-Whitney view of AUC): their variance and the positive share."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    if y.mean() > 0.5:  # NannyML measures the minority class
        y, s = 1 - y, 1 - s
    order = np.argsort(s)
    y = y[order]
    ranks = np.unique(y * np.arange(len(y)))[1:]  # as NannyML: a positive ranked first is dropped too
    ser = (ranks - np.arange(len(ranks))) / (len(y) - y.sum())
    return float(np.var(ser)), float(y.sum() / len(y))


def _f1_components(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    tp = int(np.sum((y_true == y_pred) & (y_pred == 1)))
    fp = int(np.sum((y_true != y_pred) & (y_pred == 1)))
    fn = int(np.sum((y_true != y_pred) & (y_pred == 0)))
    relevant = tp + fp + fn
    if relevant == 0:
        return float("nan"), 0.0
    values = np.r_[np.ones(tp), np.zeros(fn + fp)]
    return float(np.var(values)), relevant / len(y_pred)


def _precision_components(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    tp = int(np.sum((y_true == y_pred) & (y_pred == 1)))
    fp = int(np.sum((y_true != y_pred) & (y_pred == 1)))
    return float(np.var(np.r_[np.ones(tp), np.zeros(fp)])), float(np.sum(y_pred) / len(y_pred))


def _recall_components(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    tp = int(np.sum((y_true == y_pred) & (y_pred == 1)))
    fn = int(np.sum((y_true != y_pred) & (y_pred == 0)))
    return float(np.var(np.r_[np.ones(tp), np.zeros(fn)])), float(np.sum(y_true) / len(y_pred))


def _binary_f1_components(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """Binary F1's: the observation-level values scaled by NannyML's correcting factor."""
    tp = int(np.sum((y_true == y_pred) & (y_pred == 1)))
    fp = int(np.sum((y_true != y_pred) & (y_pred == 1)))
    fn = int(np.sum((y_true != y_pred) & (y_pred == 0)))
    relevant = tp + fp + fn
    if relevant == 0:
        return float("nan"), 0.0
    factor = relevant / ((fn + fp) * 0.5 + tp)
    values = np.r_[np.ones(tp), np.zeros(fn + fp)] * factor
    return float(np.var(values)), relevant / len(y_pred)


# -- realized metrics (the labels known): NannyML's choices of NaN ---------------------------------


def _realized_binary(metric: str, y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray) -> float:
    if len(y_true) == 0:
        return float("nan")
    if metric == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    if np.unique(y_true).size <= 1:
        return float("nan")
    if metric == "roc_auc":
        return float(skm.roc_auc_score(y_true, scores))
    if np.unique(y_pred).size <= 1:
        return float("nan")
    fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[metric]
    return float(fn(y_true, y_pred, zero_division=0))


def _realized_multiclass(
    metric: str, y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, classes: Sequence[Any]
) -> float:
    if len(y_true) == 0:
        return float("nan")
    if metric == "roc_auc":
        if set(np.unique(y_true)) != set(classes):
            return float("nan")
        return float(skm.roc_auc_score(y_true, scores, multi_class="ovr", average="macro", labels=list(classes)))
    if np.unique(y_true).size <= 1 or np.unique(y_pred).size <= 1:
        return float("nan")
    if metric == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[metric]
    return float(fn(y_true, y_pred, average="macro", labels=list(classes), zero_division=0))


# -- the estimator ---------------------------------------------------------------------------------


@dataclass
class CBPE:
    """A CBPE estimator fitted on a labelled reference. Binary: ``y_true``/``y_pred`` are 0/1 and
    ``proba`` the positive class's probability, shape (n,). Multiclass: labels from ``classes`` and
    ``proba`` of shape (n, len(classes)), columns in the order of ``classes``."""

    classes: list[Any] | None
    chunk_size: int
    metrics: tuple[str, ...]
    calibrators: list[Calibrator]
    calibrated: list[bool]
    components: dict[str, Any] = field(default_factory=dict)
    threshold_values: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def multiclass(self) -> bool:
        return self.classes is not None

    @classmethod
    def fit(
        cls,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        proba: np.ndarray,
        *,
        chunk_size: int,
        classes: Sequence[Any] | None = None,
        metrics: Sequence[str] = METRICS,
    ) -> CBPE:
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"CBPE metrics: {sorted(unknown)} unknown (choose from {', '.join(METRICS)})")
        y_true, y_pred, proba = np.asarray(y_true), np.asarray(y_pred), np.asarray(proba, dtype=float)
        if len(y_true) == 0:
            raise ValueError("CBPE needs a labelled reference; it has no records")
        n = len(y_true)
        if classes is None:
            y_true, y_pred = y_true.astype(int), y_pred.astype(int)
            calibrator, recalibrated = fit_calibrator(y_true, proba)
            est = cls(None, chunk_size, tuple(metrics), [calibrator], [recalibrated])
            est.components = {
                "roc_auc": _roc_auc_components(y_true, proba),
                "f1": _binary_f1_components(y_true, y_pred),
                "precision": _precision_components(y_true, y_pred),
                "recall": _recall_components(y_true, y_pred),
                "accuracy": float(np.std((y_true == y_pred).astype(int))),
            }

            def realized(metric: str, s: slice) -> float:
                return _realized_binary(metric, y_true[s], y_pred[s], proba[s])

        else:
            classes = list(classes)
            if proba.ndim != 2 or proba.shape[1] != len(classes):
                raise ValueError(f"CBPE: probabilities of shape {proba.shape}; expected (n, {len(classes)})")
            truth = [(y_true == c).astype(int) for c in classes]
            preds = [(y_pred == c).astype(int) for c in classes]
            fitted = [fit_calibrator(t, proba[:, i]) for i, t in enumerate(truth)]
            est = cls(classes, chunk_size, tuple(metrics), [f[0] for f in fitted], [f[1] for f in fitted])
            est.components = {
                "roc_auc": [_roc_auc_components(t, proba[:, i]) for i, t in enumerate(truth)],
                "f1": [_f1_components(t, p) for t, p in zip(truth, preds, strict=True)],
                "precision": [_precision_components(t, p) for t, p in zip(truth, preds, strict=True)],
                "recall": [_recall_components(t, p) for t, p in zip(truth, preds, strict=True)],
                "accuracy": float(np.std((y_true == y_pred).astype(int))),
            }
            labels = classes

            def realized(metric: str, s: slice) -> float:
                return _realized_multiclass(metric, y_true[s], y_pred[s], proba[s], labels)

        for metric in est.metrics:
            est.threshold_values[metric] = common.reference_thresholds(
                n, chunk_size, lambda s, m=metric: realized(m, s), *LIMITS
            )
        return est

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """The calibrated probabilities (multiclass: each class's, renormalised to sum to one)."""
        proba = np.asarray(proba, dtype=float)
        if not self.multiclass:
            return self.calibrators[0](proba)
        out = np.column_stack([c(proba[:, i]) for i, c in enumerate(self.calibrators)])
        total = out.sum(axis=1, keepdims=True)
        uniform = np.full_like(out, 1 / out.shape[1])
        return np.divide(out, total, out=uniform, where=total != 0)

    def sampling_error(self, metric: str, n: int) -> float:
        comp = self.components[metric]
        if metric == "accuracy":
            return comp / np.sqrt(n)
        if not self.multiclass:
            variance, share = comp
            return float(np.sqrt(variance) / np.sqrt(n * share))
        variances = [v / (n * share) for v, share in comp]
        std = np.sqrt(np.sum(variances)) / len(variances)
        return float(std * 1.2 if metric == "roc_auc" else std)  # NannyML's factor for multiclass AUC

    def estimate(
        self, y_pred: np.ndarray, proba: np.ndarray, y_true: np.ndarray | None = None
    ) -> dict[str, common.Estimate]:
        """Each metric's estimate over one chunk (its records), and the realized value when ``y_true``
        is given (``None`` entries: records without a label yet, left out of the realized value)."""
        y_pred, scores = np.asarray(y_pred), np.asarray(proba, dtype=float)
        n = len(y_pred)
        if n == 0:
            raise ValueError("CBPE: an empty chunk")
        calibrated = self.calibrate(scores)
        values: dict[str, float] = {}
        if not self.multiclass:
            yp = y_pred.astype(int)
            values = {
                "roc_auc": estimated_roc_auc(calibrated, scores),
                "accuracy": estimated_accuracy(yp, calibrated),
                "precision": estimated_precision(yp, calibrated),
                "recall": estimated_recall(yp, calibrated),
                "f1": estimated_f1(yp, calibrated),
            }
        else:
            assert self.classes is not None
            preds = [(y_pred == c).astype(int) for c in self.classes]
            columns = range(len(self.classes))
            values = {
                "roc_auc": float(np.mean([estimated_roc_auc(calibrated[:, i], scores[:, i]) for i in columns])),
                "accuracy": float(np.mean(_of_predicted(calibrated, y_pred, self.classes))),
                "precision": float(np.mean([estimated_precision(preds[i], calibrated[:, i]) for i in columns])),
                "recall": float(np.mean([estimated_recall(preds[i], calibrated[:, i]) for i in columns])),
                "f1": float(np.mean([estimated_f1(preds[i], calibrated[:, i]) for i in columns])),
            }
        realized = self.realized(y_true, y_pred, scores) if y_true is not None else {}
        return {
            m: common.estimate(
                m, values[m], self.sampling_error(m, n), LIMITS, self.threshold_values[m], realized.get(m)
            )
            for m in self.metrics
        }

    def realized(self, y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
        """The metrics over the labelled records of a chunk (None when undefined or none labelled)."""
        y_true = np.asarray(y_true, dtype=object)
        known = np.array([v is not None and v == v for v in y_true], dtype=bool)
        if not known.any():
            return {}
        yt, yp, sc = y_true[known], np.asarray(y_pred)[known], np.asarray(scores, dtype=float)[known]
        out: dict[str, float | None] = {}
        for m in self.metrics:
            if self.multiclass:
                assert self.classes is not None
                value = _realized_multiclass(m, yt, yp, sc, self.classes)
            else:
                value = _realized_binary(m, yt.astype(int), yp.astype(int), sc)
            out[m] = None if np.isnan(value) else value
        return out


def _of_predicted(calibrated: np.ndarray, y_pred: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    """Each record's calibrated probability of its predicted class (0 for a prediction outside ``classes``)."""
    index = {c: i for i, c in enumerate(classes)}
    positions = np.array([index.get(v, -1) for v in y_pred])
    taken = calibrated[np.arange(len(positions)), np.maximum(positions, 0)]
    return np.where(positions >= 0, taken, 0.0)
