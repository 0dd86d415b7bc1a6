"""Quality: how right the model is, over labelled records (feedback linked to payload by
``scoring_id``). Feedback records with no payload twin and no prediction are scored through
the binding first, and that scoring is stored in the feedback table.

Only the three columns a metric needs (label, prediction, probability) leave the database,
through ``COPY ... TO STDOUT``; metrics are scikit-learn's own functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from openmart.errors import MonitorError
from openmart.evaluation.results import Measurement, MonitorOutcome
from openmart.evaluation.window import Window, fetch_arrow, fetch_frame
from openmart.mart.identifiers import quote
from openmart.monitors.config import MonitorConfig, MonitorKind, Threshold, ThresholdType, parse_threshold
from openmart.schema import ProblemType

if TYPE_CHECKING:
    from openmart.api import Subscription

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


def configure(
    sub: Subscription, *, thresholds: Sequence[str | Mapping[str, Any]] = (), min_records: int = 100, **unknown: Any
) -> MonitorConfig:
    if unknown:
        raise MonitorError(f"quality monitor: unknown options {sorted(unknown)}")
    problem = sub.schema.problem_type
    parsed = [
        parse_threshold(t, DIRECTIONS) if isinstance(t, str) else Threshold.from_dict(dict(t)) for t in thresholds
    ]
    for t in parsed:
        if t.metric not in METRICS[problem]:
            raise MonitorError(
                f"quality threshold on {t.metric!r}: not a {problem} metric (choose from {', '.join(METRICS[problem])})"
            )
    given = {t.metric for t in parsed}
    parsed += [t for t in DEFAULT_THRESHOLDS[problem] if t.metric not in given]
    if min_records < 1:
        raise MonitorError("min_records must be at least 1")
    return MonitorConfig(KIND, {}, parsed, int(min_records))


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


# -- run over the mart ----------------------------------------------------------------------------


def _score_unscored_feedback(sub: Subscription, raw: Any) -> int:
    """Feedback with neither a payload twin nor a prediction: score it now, store the scoring."""
    s = sub.schema
    if not sub.binding or not sub.deployment_id:
        return 0
    cols = ", ".join(f"f.{quote(c)}" for c in s.feature_names)
    frame = fetch_frame(
        raw,
        f"SELECT f.record_id, {cols} FROM {quote(sub.feedback.table)} f "
        f"LEFT JOIN {quote(sub.payload.table)} p ON p.scoring_id = f.scoring_id "
        f"WHERE p.scoring_id IS NULL AND f.{quote(s.prediction)} IS NULL",
        {},
    )
    if frame.empty:
        return 0
    from openmart.scoring.score import score_frame

    for c in s.numeric_features:
        frame[c] = pd.to_numeric(frame[c])
    scored = score_frame(sub, frame)
    prob = s.probability if s.probability and s.probability in scored.columns else None
    with raw.cursor() as cur:
        rows = [
            (
                r[s.prediction],
                (list(r[prob]) if isinstance(r[prob], list | np.ndarray) else r[prob]) if prob else None,
                int(rid),
            )
            for rid, (_, r) in zip(frame["record_id"], scored.iterrows(), strict=True)
        ]
        target = f"{quote(s.prediction)} = %s" + (f", {quote(s.probability)} = %s" if prob else "")
        for pred, p, rid in rows:
            cur.execute(
                f"UPDATE {quote(sub.feedback.table)} SET {target} WHERE record_id = %s",
                (pred, p, rid) if prob else (pred, rid),
            )
    raw.commit()
    return len(frame)


def run(sub: Subscription, config: MonitorConfig, window: Window, raw: Any) -> MonitorOutcome:
    s = sub.schema
    outcome = MonitorOutcome(str(KIND))
    outcome.scoring_calls = _score_unscored_feedback(sub, raw)
    prob_expr = f"coalesce(p.{quote(s.probability)}, f.{quote(s.probability)})" if s.probability else "NULL"
    columns = (
        f"f.{quote(s.label)} AS y_true, coalesce(p.{quote(s.prediction)}, f.{quote(s.prediction)}) AS y_pred, "
        f"{prob_expr} AS proba"
    )
    sql, params = window.labelled_sql(sub.feedback.table, sub.payload.table, columns)
    sql = f"SELECT * FROM ({sql}) q WHERE y_true IS NOT NULL AND y_pred IS NOT NULL"
    import pyarrow as pa

    numeric = s.outputs_numeric
    types = {"y_true": pa.float64() if numeric else pa.string(), "y_pred": pa.float64() if numeric else pa.string()}
    if s.problem_type is not ProblemType.MULTICLASS:
        types["proba"] = pa.float64()
    table = fetch_arrow(raw, sql, params, types)
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
        extra = {"records": n}
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
