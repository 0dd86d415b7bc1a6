"""Slice metrics from per-group sums, and the tests that compare two groups.

Every metric here is a function of a few sums over a group's records — the number of records,
of correct predictions, true/predicted/actual positives, absolute and squared errors — so the
metric of every slice of a feature comes from one ``np.bincount`` per sum over the feature's
integer codes, and the metric of "the rest" from the totals minus the slice. No loop per row,
none per slice.

Tests (two-sided):

- rates (accuracy, error rate, precision, recall, and F1 through the threat score
  TP / (TP + FP + FN), which F1 is a monotone function of: F1 = 2J / (1 + J)): the two-proportion
  z-test with the pooled proportion;
- regression errors (MAE, MSE, RMSE): Welch's t-test on the per-record absolute error (MAE) or
  squared error (MSE, RMSE), from the groups' sums and sums of squares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from openmart.errors import ValidationError
from openmart.schema import ProblemType

Sums = dict[str, np.ndarray]


@dataclass(frozen=True)
class SliceMetric:
    name: str
    higher_is_better: bool
    problems: tuple[ProblemType, ...]
    #: the per-record values the metric is built from ("n" is implicit)
    needs: tuple[str, ...]
    #: proportion tests: (successes, trials) sums; mean tests: (x, x squared) sums
    test: tuple[str, str]
    proportion: bool

    def value(self, s: Mapping[str, np.ndarray]) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            n = s["n"].astype(float)
            if self.name == "accuracy":
                return s["correct"] / n
            if self.name == "error_rate":
                return 1.0 - s["correct"] / n
            if self.name == "precision":
                return s["tp"] / s["pp"]
            if self.name == "recall":
                return s["tp"] / s["ap"]
            if self.name == "f1":
                return 2 * s["tp"] / (s["pp"] + s["ap"])
            if self.name == "mae":
                return s["ae"] / n
            if self.name == "mse":
                return s["se"] / n
            return np.sqrt(s["se"] / n)  # rmse

    def pvalue(self, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> np.ndarray:
        x, y = self.test
        if self.proportion:
            return proportion_test(_get(a, x), _get(a, y), _get(b, x), _get(b, y))
        return welch_test(a["n"], a[x], a[y], b["n"], b[x], b[y])


def _get(s: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key == "jaccard_trials":  # TP + FP + FN = predicted + actual positives - TP
        return s["pp"] + s["ap"] - s["tp"]
    return s[key].astype(float)


_C = (ProblemType.BINARY, ProblemType.MULTICLASS)
_B = (ProblemType.BINARY,)
_R = (ProblemType.REGRESSION,)
METRICS: dict[str, SliceMetric] = {
    m.name: m
    for m in (
        SliceMetric("accuracy", True, _C, ("correct",), ("correct", "n"), True),
        SliceMetric("error_rate", False, _C, ("correct",), ("correct", "n"), True),
        SliceMetric("precision", True, _B, ("tp", "pp"), ("tp", "pp"), True),
        SliceMetric("recall", True, _B, ("tp", "ap"), ("tp", "ap"), True),
        SliceMetric("f1", True, _B, ("tp", "pp", "ap"), ("tp", "jaccard_trials"), True),
        SliceMetric("mae", False, _R, ("ae", "se"), ("ae", "se"), False),
        SliceMetric("mse", False, _R, ("se", "se2"), ("se", "se2"), False),
        SliceMetric("rmse", False, _R, ("se", "se2"), ("se", "se2"), False),
    )
}


def metric_for(problem: ProblemType, name: str | None) -> SliceMetric:
    """The named metric (default: accuracy for classification, MAE for regression), checked
    against the problem type."""
    name = name or ("mae" if problem is ProblemType.REGRESSION else "accuracy")
    found = METRICS.get(name)
    if found is None or problem not in found.problems:
        usable = [m for m, d in METRICS.items() if problem in d.problems]
        raise ValidationError(f"slice metric {name!r}: not a {problem} slice metric (choose from {', '.join(usable)})")
    return found


def record_values(
    metric: SliceMetric, y_true: np.ndarray, y_pred: np.ndarray, positive: object | None
) -> dict[str, np.ndarray]:
    """The per-record float arrays ``metric`` sums (correct, tp, ..., ae, se, se2)."""
    out: dict[str, np.ndarray] = {}
    if metric.proportion:
        if "correct" in metric.needs:
            out["correct"] = (y_true == y_pred).astype(float)
        if positive is not None:
            truth, said = y_true == positive, y_pred == positive
            out["tp"] = (truth & said).astype(float)
            out["pp"] = said.astype(float)
            out["ap"] = truth.astype(float)
        return {k: v for k, v in out.items() if k in metric.needs}
    err = y_true.astype(float) - y_pred.astype(float)
    sq = err * err
    out = {"ae": np.abs(err), "se": sq}
    if "se2" in metric.needs:
        out["se2"] = sq * sq
    return {k: v for k, v in out.items() if k in metric.needs}


def group_sums(codes: np.ndarray, size: int, values: Mapping[str, np.ndarray]) -> Sums:
    """Per code in ``range(size)``: the record count ``n`` and each value's sum."""
    sums = {"n": np.bincount(codes, minlength=size).astype(float)}
    for key, v in values.items():
        sums[key] = np.bincount(codes, weights=v, minlength=size)
    return sums


def totals(values: Mapping[str, np.ndarray], n: int) -> Sums:
    return {"n": np.array([float(n)]), **{k: np.array([float(v.sum())]) for k, v in values.items()}}


def proportion_test(s1: np.ndarray, t1: np.ndarray, s2: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Two-sided p-values of the pooled two-proportion z-test (1 where a group is empty or both
    proportions are 0 or 1: no difference can be shown)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = s1 / t1, s2 / t2
        pooled = (s1 + s2) / (t1 + t2)
        se = np.sqrt(pooled * (1 - pooled) * (1 / t1 + 1 / t2))
        z = (p1 - p2) / se
    p = 2 * st.norm.sf(np.abs(z))
    return np.where(np.isfinite(z), p, 1.0)


def welch_test(
    n1: np.ndarray, x1: np.ndarray, xx1: np.ndarray, n2: np.ndarray, x2: np.ndarray, xx2: np.ndarray
) -> np.ndarray:
    """Two-sided p-values of Welch's t-test between two groups given by count, sum and sum of
    squares (1 where it is undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        m1, m2 = x1 / n1, x2 / n2
        v1 = np.maximum(xx1 - n1 * m1 * m1, 0) / (n1 - 1)
        v2 = np.maximum(xx2 - n2 * m2 * m2, 0) / (n2 - 1)
        a, b = v1 / n1, v2 / n2
        t = (m1 - m2) / np.sqrt(a + b)
        df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    p = 2 * st.t.sf(np.abs(t), np.where(np.isfinite(df), df, 1.0))
    return np.where(np.isfinite(t) & np.isfinite(df), p, 1.0)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values): reject where q <= alpha controls the
    false discovery rate at alpha across all the tests given."""
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out
