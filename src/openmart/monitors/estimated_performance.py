"""Estimated performance: a model's metrics before its labels arrive (issue #18; docs/estimation.md).

Classifiers: CBPE (``openmart.estimation.cbpe``) from the window's predictions and probabilities;
regressors: DLE (``openmart.estimation.dle``) from its features and predictions. Both are fitted on
THE reference (its labels, predictions, probabilities, features) and follow NannyML 0.13.

One window, one estimate per metric: a chunked evaluation (docs/chunks.md) hands each chunk to
``run`` as its own window. Each measurement's value is the estimate; its details hold the sampling
error, the confidence band (± 3 sampling errors), the thresholds learned from the reference's chunks
of ``chunk_size`` records (mean ± 3 std of the realized metric, NannyML's), NannyML's ``alert``, and
— once feedback has labelled some of the window's records — the ``realized`` metric beside it.

Unless the user sets a threshold, a metric is judged against that learned band, on both sides, as
NannyML alerts.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from openmart.context import SubscriptionContext
from openmart.errors import MonitorError
from openmart.estimation import CBPE, DLE, Estimate
from openmart.estimation import cbpe as cbpe_module
from openmart.estimation import dle as dle_module
from openmart.evaluation.results import Measurement, MonitorOutcome
from openmart.mart import windows
from openmart.mart.windows import Window
from openmart.monitors.base import (
    BaseMonitor,
    Direction,
    MetricSpec,
    OptionSpec,
    context_of,
    min_records_option,
    parse_thresholds,
    thresholds_option,
)
from openmart.monitors.config import MonitorConfig, MonitorKind, Threshold, ThresholdType
from openmart.schema import ProblemType

KIND = MonitorKind.ESTIMATED_PERFORMANCE
CLASSIFICATION = cbpe_module.METRICS
REGRESSION = dle_module.METRICS
#: records per reference chunk when none is given: NannyML's examples use 5,000
DEFAULT_CHUNK_SIZE = 5000
_CACHE_SIZE = 4

_HELP = {
    "roc_auc": "estimated area under the ROC curve (CBPE)",
    "accuracy": "estimated share of correct predictions (CBPE)",
    "precision": "estimated precision (CBPE; multiclass: macro average)",
    "recall": "estimated recall (CBPE; multiclass: macro average)",
    "f1": "estimated F1 (CBPE; multiclass: macro average)",
    "mae": "estimated mean absolute error (DLE)",
    "mse": "estimated mean squared error (DLE)",
}


def _spec(metric: str) -> MetricSpec:
    if metric in REGRESSION:
        return MetricSpec(metric, Direction.LOWER_IS_BETTER, None, low=0.0, help=_HELP[metric])
    return MetricSpec(metric, Direction.HIGHER_IS_BETTER, None, low=0.0, high=1.0, help=_HELP[metric])


def applicable(problem: ProblemType) -> tuple[str, ...]:
    return REGRESSION if problem is ProblemType.REGRESSION else CLASSIFICATION


# -- reading the mart -----------------------------------------------------------------------------


def _columns(ctx: SubscriptionContext) -> list[str]:
    s = ctx.schema
    if s.problem_type is ProblemType.REGRESSION:
        return [*s.feature_names, s.prediction]
    assert s.probability is not None
    return [s.prediction, s.probability]


def _types(ctx: SubscriptionContext, names: Sequence[str]) -> dict[str, pa.DataType]:
    """Each column's Arrow type, for reading a large window through COPY (a multiclass
    probability array as its text, parsed by :func:`_proba`)."""
    s = ctx.schema
    numeric = set(s.feature_names) - set(s.categorical_features)
    outputs = {s.prediction, s.label}
    types: dict[str, pa.DataType] = {}
    for c in names:
        if c in outputs:
            types[c] = pa.float64() if s.outputs_numeric else pa.string()
        elif c == s.probability:
            types[c] = pa.string() if s.problem_type is ProblemType.MULTICLASS else pa.float64()
        else:
            types[c] = pa.float64() if c in numeric else pa.string()
    return types


def _proba(column: pd.Series, multiclass: bool) -> np.ndarray:
    if not multiclass:
        return column.to_numpy(dtype=float)
    # double precision[] arrives as Python lists (or "{...}" text from a CSV path)
    rows = [v if not isinstance(v, str) else [float(x) for x in v.strip("{}").split(",")] for v in column]
    return np.asarray(rows, dtype=float)


def _classes(ctx: SubscriptionContext, y_true: np.ndarray, y_pred: np.ndarray) -> list[Any]:
    s = ctx.schema
    if s.class_labels is not None:
        classes = list(s.class_labels)
        return classes if s.outputs_numeric else [str(c) for c in classes]
    return sorted(set(y_true.tolist()) | set(y_pred.tolist()))


class _Fitted(OrderedDict[str, Any]):
    """A few fitted estimators, keyed by the reference's content and the options: a chunked
    evaluation runs the monitor once per chunk, and fitting (DLE's LightGBM above all) once is enough."""

    def get_or_fit(self, key: str, fit: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = fit()
        while len(self) > _CACHE_SIZE:
            self.popitem(last=False)
        return value


_fitted = _Fitted()


def _fingerprint(frame: pd.DataFrame, *extra: Any) -> str:
    digest = hashlib.sha256(repr(extra).encode())
    digest.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def fit(ctx: SubscriptionContext, conn: Any, chunk_size: int, metrics: Sequence[str]) -> CBPE | DLE:
    """The estimator fitted on THE reference (rows in stored order, as NannyML's chunks see them)."""
    s = ctx.schema
    reference = windows.reference_rows(conn, ctx, [s.label, *_columns(ctx)])
    reference = reference.dropna(subset=[s.label, s.prediction]).reset_index(drop=True)
    if reference.empty:
        raise MonitorError(f"{KIND} monitor: THE reference has no labelled records with predictions")
    key = _fingerprint(reference, ctx.reference_table, chunk_size, tuple(metrics), str(s.problem_type))

    def build() -> CBPE | DLE:
        if s.problem_type is ProblemType.REGRESSION:
            return DLE.fit(
                reference[s.feature_names],
                reference[s.prediction].to_numpy(dtype=float),
                reference[s.label].to_numpy(dtype=float),
                chunk_size=chunk_size,
                categorical=s.categorical_features,
                metrics=metrics,
            )
        assert s.probability is not None
        if reference[s.probability].isna().any():
            raise MonitorError(f"{KIND} monitor: THE reference has records without {s.probability!r}")
        multiclass = s.problem_type is ProblemType.MULTICLASS
        y_true, y_pred = reference[s.label].to_numpy(), reference[s.prediction].to_numpy()
        proba = _proba(reference[s.probability], multiclass)
        classes = _classes(ctx, y_true, y_pred)
        if multiclass:
            return CBPE.fit(y_true, y_pred, proba, chunk_size=chunk_size, classes=classes, metrics=metrics)
        positive = classes[1]
        return CBPE.fit(
            (y_true == positive).astype(int),
            (y_pred == positive).astype(int),
            proba,
            chunk_size=chunk_size,
            metrics=metrics,
        )

    return _fitted.get_or_fit(key, build)


def estimate(
    ctx: SubscriptionContext, estimator: CBPE | DLE, window_rows: pd.DataFrame, labelled: pd.DataFrame | None
) -> dict[str, Estimate]:
    """The window's estimates, with the realized metrics over its labelled records when any."""
    s = ctx.schema
    if isinstance(estimator, DLE):
        out = estimator.estimate(window_rows[s.feature_names], window_rows[s.prediction].to_numpy(dtype=float))
        if labelled is not None and len(labelled):
            realized = estimator.realized(labelled[s.label].to_numpy(), labelled[s.prediction].to_numpy(dtype=float))
            out = {m: _with_realized(e, realized.get(m)) for m, e in out.items()}
        return out
    assert s.probability is not None
    multiclass = estimator.multiclass
    y_pred = window_rows[s.prediction].to_numpy()
    proba = _proba(window_rows[s.probability], multiclass)
    if not multiclass:
        positive = _positive(ctx, estimator)
        y_pred = (y_pred == positive).astype(int)
    out = estimator.estimate(y_pred, proba)
    if labelled is not None and len(labelled):
        yt, yp = labelled[s.label].to_numpy(), labelled[s.prediction].to_numpy()
        if not multiclass:
            positive = _positive(ctx, estimator)
            yt, yp = (yt == positive).astype(int), (yp == positive).astype(int)
        realized = estimator.realized(yt, yp, _proba(labelled[s.probability], multiclass))
        out = {m: _with_realized(e, realized.get(m)) for m, e in out.items()}
    return out


def _positive(ctx: SubscriptionContext, estimator: CBPE) -> Any:
    s = ctx.schema
    if s.class_labels is not None:
        positive = s.class_labels[1]
        return positive if s.outputs_numeric else str(positive)
    return 1


def _with_realized(e: Estimate, realized: float | None) -> Estimate:
    return replace(e, realized=realized)


# -- the monitor ----------------------------------------------------------------------------------


class EstimatedPerformanceMonitor(BaseMonitor):
    """Performance without labels: CBPE for classifiers, DLE for regressors (NannyML's methods)."""

    kind = KIND
    description = (
        "A model's metrics estimated without labels: CBPE from calibrated probabilities (classification), "
        "direct loss estimation (regression); realized values beside them once feedback arrives."
    )
    options = (
        OptionSpec(
            "chunk_size",
            int,
            DEFAULT_CHUNK_SIZE,
            low=10,
            help="Records per reference chunk: the thresholds are mean ± 3 std of the metric over them.",
        ),
        OptionSpec("metrics", list, None, help="The metrics to estimate (default: all of the problem type's)."),
        thresholds_option(),
        min_records_option(100),
    )
    metrics = tuple(_spec(m) for m in (*CLASSIFICATION, *REGRESSION))

    def applicable_metrics(self, ctx: SubscriptionContext) -> Sequence[MetricSpec]:
        names = set(applicable(ctx.schema.problem_type))
        return [m for m in self.metrics if m.name in names]

    def check(self, ctx: SubscriptionContext, values: dict[str, Any]) -> dict[str, Any]:
        s = ctx.schema
        allowed = applicable(s.problem_type)
        chosen = list(values.get("metrics") or allowed)
        unknown = [m for m in chosen if m not in allowed]
        if unknown:
            raise MonitorError(
                f"{KIND} monitor: option 'metrics': {unknown} not {s.problem_type} metrics "
                f"(choose from {', '.join(allowed)})"
            )
        if s.problem_type is not ProblemType.REGRESSION and not s.probability:
            raise MonitorError(f"{KIND} monitor: CBPE needs the model's probabilities; the schema has none")
        return {"chunk_size": int(values.get("chunk_size") or DEFAULT_CHUNK_SIZE), "metrics": chosen}

    def thresholds(self, ctx: SubscriptionContext, given: Sequence[Any], parameters: dict[str, Any]) -> list[Threshold]:
        parsed = parse_thresholds(self.kind, self.metrics, given)
        allowed = applicable(ctx.schema.problem_type)
        for t in parsed:
            if t.metric not in allowed:
                raise MonitorError(f"{KIND} threshold on {t.metric!r}: choose from {', '.join(allowed)}")
        return parsed

    def run(self, ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
        ctx = context_of(ctx)
        s = ctx.schema
        outcome = MonitorOutcome(KIND)
        rows = windows.columns(conn, windows.payload(window, ctx), _columns(ctx), _types(ctx, _columns(ctx)))
        rows = rows.dropna(subset=[s.prediction] + ([s.probability] if s.probability else []))
        outcome.records = n = len(rows)
        if n < config.min_records:
            outcome.status = "not_enough_data"
            outcome.reason = f"{n} records with outputs, fewer than {config.min_records}"
            return outcome
        metrics = list(config.parameters.get("metrics") or applicable(s.problem_type))
        estimator = fit(ctx, conn, int(config.parameters.get("chunk_size") or DEFAULT_CHUNK_SIZE), metrics)
        # the window's records that feedback has labelled: the realized metric beside the estimate
        labelled = windows.columns(
            conn,
            windows.labelled(window, ctx, joined=_columns(ctx), feedback=[s.label], present=[s.label]),
            [*_columns(ctx), s.label],
            _types(ctx, [*_columns(ctx), s.label]),
        )
        labelled = labelled.dropna(subset=[s.prediction, *([s.probability] if s.probability else [])])
        estimates = estimate(ctx, estimator, rows.reset_index(drop=True), labelled.reset_index(drop=True))
        for metric in metrics:
            e = estimates[metric]
            details = {
                **e.to_dict(),
                "method": "dle" if isinstance(estimator, DLE) else "cbpe",
                "records": n,
                "labelled_records": int(len(labelled)),
                "chunk_size": estimator.chunk_size,
            }
            if isinstance(estimator, CBPE):
                details["calibrated"] = any(estimator.calibrated)
            details.pop("metric")
            details.pop("value")
            threshold = config.threshold(metric) or _learned(metric, e)
            outcome.measurements.append(Measurement.judged(KIND, metric, e.value, threshold, details=details))
        return outcome


def _learned(metric: str, e: Estimate) -> Threshold | None:
    """The reference chunks' band as a two-sided threshold (NannyML's alert); its value is the limit
    on the metric's own side."""
    if e.lower_threshold is None and e.upper_threshold is None:
        return None
    if metric in REGRESSION:
        ttype, value = ThresholdType.UPPER_LIMIT, e.upper_threshold
    else:
        ttype, value = ThresholdType.LOWER_LIMIT, e.lower_threshold
    band = {"lower": e.lower_threshold, "upper": e.upper_threshold, "k": 3.0, "source": "reference chunks"}
    return Threshold(metric, ttype, float(value if value is not None else np.nan), learned=band)
