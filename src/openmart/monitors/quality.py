"""Quality: how right the model is, over labelled records (feedback linked to payload by
``scoring_id``). Feedback records with no payload twin and no prediction are scored through
the binding by the evaluation runner before the monitors run (in the evaluation's transaction).

Only the three columns a metric needs (label, prediction, probability) leave the database,
through ``COPY ... TO STDOUT``; metrics are scikit-learn's own functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from openmart.context import SubscriptionContext
from openmart.errors import MonitorError
from openmart.mart import stats, windows
from openmart.mart.windows import Window
from openmart.monitors.base import (
    BaseMonitor,
    Direction,
    Measurement,
    MetricSpec,
    MonitorOutcome,
    context_of,
    min_records_option,
    parse_thresholds,
    thresholds_option,
)
from openmart.monitors.config import MonitorConfig, MonitorKind, Threshold, ThresholdType
from openmart.schema import ProblemType

KIND = MonitorKind.QUALITY
L, U = ThresholdType.LOWER_LIMIT, ThresholdType.UPPER_LIMIT
DIRECTIONS: dict[str, ThresholdType] = {
    "accuracy": L,
    "precision": L,
    "recall": L,
    "f1": L,
    "roc_auc": L,
    "average_precision": L,
    "log_loss": U,
    "true_positive_rate": L,
    "false_positive_rate": U,
    "precision_weighted": L,
    "recall_weighted": L,
    "f1_weighted": L,
    "precision_macro": L,
    "recall_macro": L,
    "f1_macro": L,
    "mae": U,
    "mse": U,
    "rmse": U,
    "r2": L,
    "explained_variance": L,
    "mape": U,
}
METRICS: dict[ProblemType, tuple[str, ...]] = {
    ProblemType.BINARY: (
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "average_precision",
        "log_loss",
        "true_positive_rate",
        "false_positive_rate",
    ),
    ProblemType.MULTICLASS: (
        "accuracy",
        "precision_weighted",
        "recall_weighted",
        "f1_weighted",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "log_loss",
    ),
    ProblemType.REGRESSION: ("mae", "mse", "rmse", "r2", "explained_variance", "mape"),
}
#: OpenScale's defaults: area under ROC >= 0.8 (binary); accuracy >= 0.8 (multiclass)
DEFAULT_THRESHOLDS = {
    ProblemType.BINARY: [Threshold("roc_auc", L, 0.8)],
    ProblemType.MULTICLASS: [Threshold("accuracy", L, 0.8)],
    ProblemType.REGRESSION: [],
}


# -- metrics (pure) -------------------------------------------------------------------------------


def compute(
    problem: ProblemType,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any] | None,
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Metric values (None when undefined, with the reason in the details) and details (the
    confusion matrix for classification)."""
    values: dict[str, float | None] = {}
    details: dict[str, Any] = {"undefined": {}}
    if problem is ProblemType.REGRESSION:
        err = y_true - y_pred
        values["mae"] = float(np.mean(np.abs(err)))
        values["mse"] = float(np.mean(err**2))
        values["rmse"] = float(np.sqrt(values["mse"]))
        if np.unique(y_true).size > 1:
            values["r2"] = float(skm.r2_score(y_true, y_pred))
            values["explained_variance"] = float(skm.explained_variance_score(y_true, y_pred))
        else:
            values["r2"] = values["explained_variance"] = None
            details["undefined"]["r2"] = details["undefined"]["explained_variance"] = "constant label"
        values["mape"] = float(skm.mean_absolute_percentage_error(y_true, y_pred))
        return values, details
    labels = list(classes or sorted(set(y_true) | set(y_pred)))
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    details["confusion_matrix"] = {"labels": [str(c) for c in labels], "matrix": cm.tolist()}
    values["accuracy"] = float(skm.accuracy_score(y_true, y_pred))
    single_class = np.unique(y_true).size < 2
    if problem is ProblemType.BINARY:
        pos = labels[1]
        tn, fp, fn, tp = cm.ravel()
        values["precision"] = float(tp / (tp + fp)) if tp + fp else None
        values["recall"] = values["true_positive_rate"] = float(tp / (tp + fn)) if tp + fn else None
        values["false_positive_rate"] = float(fp / (fp + tn)) if fp + tn else None
        values["f1"] = float(skm.f1_score(y_true, y_pred, pos_label=pos, zero_division=0))
        for name, why in (
            ("precision", "no positive predictions"),
            ("recall", "no positive labels"),
            ("true_positive_rate", "no positive labels"),
            ("false_positive_rate", "no negative labels"),
        ):
            if values[name] is None:
                details["undefined"][name] = why
        if proba is None:
            for name in ("roc_auc", "average_precision", "log_loss"):
                values[name] = None
                details["undefined"][name] = "no probabilities logged"
        elif single_class:
            for name in ("roc_auc", "average_precision", "log_loss"):
                values[name] = None
                details["undefined"][name] = "a single class in the labels"
        else:
            truth = (y_true == pos).astype(int)
            values["roc_auc"] = float(skm.roc_auc_score(truth, proba))
            values["average_precision"] = float(skm.average_precision_score(truth, proba))
            values["log_loss"] = float(skm.log_loss(truth, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1]))
        return values, details
    for avg in ("weighted", "macro"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        values[f"precision_{avg}"], values[f"recall_{avg}"], values[f"f1_{avg}"] = float(p), float(r), float(f)
    if proba is None:
        values["log_loss"] = None
        details["undefined"]["log_loss"] = "no probabilities logged"
    else:
        values["log_loss"] = float(skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=labels))
    return values, details


# -- the monitor ----------------------------------------------------------------------------------

_HELP = {
    "accuracy": "share of correct predictions",
    "roc_auc": "area under the ROC curve",
    "average_precision": "area under the precision-recall curve",
    "log_loss": "logarithmic loss of the probabilities",
    "r2": "coefficient of determination",
    "mape": "mean absolute percentage error",
}
_ALL_METRICS = tuple(dict.fromkeys(m for ms in METRICS.values() for m in ms))


def _spec(metric: str) -> MetricSpec:
    higher = DIRECTIONS[metric] is L
    bounded = metric not in ("log_loss", "mae", "mse", "rmse", "mape", "r2", "explained_variance")
    return MetricSpec(
        metric,
        Direction.HIGHER_IS_BETTER if higher else Direction.LOWER_IS_BETTER,
        None,
        low=None if metric in ("r2", "explained_variance") else 0.0,
        high=1.0 if bounded else None,
        help=_HELP.get(metric, metric.replace("_", " ")),
    )


class QualityMonitor(BaseMonitor):
    """How right the model is, over labelled records (OpenScale's quality monitor)."""

    kind = KIND
    description = "How right the model is, over labelled records (feedback linked to payload by scoring_id)."
    options = (thresholds_option(), min_records_option(100))
    metrics = tuple(_spec(m) for m in _ALL_METRICS)

    def applicable_metrics(self, ctx: SubscriptionContext) -> Sequence[MetricSpec]:
        names = set(METRICS[ctx.schema.problem_type])
        return [m for m in self.metrics if m.name in names]

    def thresholds(self, ctx: SubscriptionContext, given: Sequence[Any], parameters: dict[str, Any]) -> list[Threshold]:
        problem = ctx.schema.problem_type
        parsed = parse_thresholds(self.kind, self.metrics, given)
        for t in parsed:
            if t.metric not in METRICS[problem]:
                raise MonitorError(
                    f"quality threshold on {t.metric!r}: not a {problem} metric "
                    f"(choose from {', '.join(METRICS[problem])})"
                )
        named = {t.metric for t in parsed}
        return parsed + [t for t in DEFAULT_THRESHOLDS[problem] if t.metric not in named]

    def run(self, ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
        ctx = context_of(ctx)
        s = ctx.schema
        outcome = MonitorOutcome(str(KIND))
        # feedback without a prediction was scored by the evaluation runner before this runs
        relation = windows.labelled(
            window,
            ctx,
            joined=[s.prediction, *([s.probability] if s.probability else [])],
            feedback=[s.label],
        )
        numeric = s.outputs_numeric
        table = stats.labelled_outputs(
            conn,
            relation,
            label=s.label,
            prediction=s.prediction,
            probability=s.probability,
            numeric=numeric,
            multiclass=s.problem_type is ProblemType.MULTICLASS,
        )
        n = table.num_rows
        outcome.records = n
        if n < config.min_records:
            outcome.status, outcome.reason = "not_enough_data", f"{n} labelled records, fewer than {config.min_records}"
            return outcome
        y_true = table.column("y_true").to_numpy(zero_copy_only=False)
        y_pred = table.column("y_pred").to_numpy(zero_copy_only=False)
        proba = None
        if s.probability:
            col = table.column("proba")
            if s.problem_type is ProblemType.MULTICLASS:
                texts = col.to_pylist()
                if all(t is not None for t in texts):
                    proba = np.array([[float(x) for x in t.strip("{}").split(",")] for t in texts])
            elif col.null_count == 0:
                proba = col.to_numpy(zero_copy_only=False)
        classes = list(s.class_labels) if s.class_labels is not None else None
        if classes is not None and not numeric:
            classes = [str(c) for c in classes]
        values, details = compute(s.problem_type, y_true, y_pred, proba, classes)
        for metric in METRICS[s.problem_type]:
            extra: dict[str, Any] = {"records": n}
            if metric in details["undefined"]:
                extra["reason"] = details["undefined"][metric]
            if metric == "accuracy" and "confusion_matrix" in details:
                extra["confusion_matrix"] = details["confusion_matrix"]
            outcome.measurements.append(
                Measurement.judged(str(KIND), metric, values.get(metric), config.threshold(metric), details=extra)
            )
        if "confusion_matrix" in details:
            outcome.info["confusion_matrix"] = details["confusion_matrix"]
        return outcome
