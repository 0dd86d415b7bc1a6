"""Multivariate drift: drift in the features' joint distribution (issue #18; docs/multivariate-drift.md).

Two methods of NannyML 0.13 (``openmart.multivariate``), both against THE reference:

- ``reconstruction``: the window's mean PCA reconstruction error (a PCA fitted on the reference's
  standardised features); its sampling error and band; thresholds learned from the reference's
  chunks of ``chunk_size`` records (mean ± 3 std; default: ten chunks, as NannyML's default chunker);
- ``domain_classifier``: the cross-validated AUROC of a LightGBM classifier told to separate the
  window's records from the reference's; thresholds NannyML's constants 0.45 and 0.65.

One window, one value per method: a chunked evaluation (docs/chunks.md) hands each chunk to ``run``
as its own window. Unless the user sets a threshold, a value is judged against the method's band on
both sides, as NannyML alerts.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pandas as pd

from openmart.context import SubscriptionContext
from openmart.errors import MonitorError
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
    thresholds_option,
)
from openmart.monitors.config import MonitorConfig, MonitorKind, Threshold, ThresholdType
from openmart.multivariate import DomainClassifier, Reconstruction
from openmart.multivariate.common import DriftValue
from openmart.multivariate.reconstruction import N_COMPONENTS, THRESHOLD_STDS

KIND = MonitorKind.MULTIVARIATE_DRIFT
METHODS = ("reconstruction", "domain_classifier")
METRIC = {"reconstruction": "reconstruction_error", "domain_classifier": "domain_classifier_auroc"}
_CACHE_SIZE = 4


class _Fitted(OrderedDict[str, Any]):
    """A few fitted models keyed by the reference's content and the options: a chunked evaluation
    runs the monitor once per chunk, and fitting (and the reference chunks' thresholds) once is enough."""

    def get_or_fit(self, key: str, fit: Callable[[], Any]) -> Any:
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


def _features(ctx: SubscriptionContext, parameters: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The features measured and which of them are categorical (the schema says)."""
    features = list(parameters.get("features") or ctx.schema.feature_names)
    categorical = [c for c in ctx.schema.categorical_features if c in features]
    return features, categorical


def fit(
    ctx: SubscriptionContext, conn: Any, method: str, parameters: dict[str, Any]
) -> Reconstruction | DomainClassifier:
    """The method fitted on THE reference (rows in stored order, as NannyML's chunks see them)."""
    features, categorical = _features(ctx, parameters)
    reference = windows.reference_rows(conn, ctx, features)
    if reference.empty:
        raise MonitorError(f"{KIND} monitor: THE reference has no records")
    chunk_size = parameters.get("chunk_size")
    if method == "reconstruction":
        n_components = float(parameters.get("n_components") or N_COMPONENTS)
        key = _fingerprint(reference, ctx.reference_table, method, chunk_size, n_components, tuple(categorical))
        return _fitted.get_or_fit(
            key,
            lambda: Reconstruction.fit(
                reference, features, chunk_size=chunk_size, categorical=categorical, n_components=n_components
            ),
        )
    folds = int(parameters.get("cv_folds") or 5)
    key = _fingerprint(reference, ctx.reference_table, method, chunk_size, folds, tuple(categorical))
    return _fitted.get_or_fit(
        key,
        lambda: DomainClassifier.fit(reference, features, chunk_size=chunk_size, categorical=categorical, folds=folds),
    )


def _band(metric: str, v: DriftValue, source: str) -> Threshold | None:
    """The method's band as a two-sided threshold (NannyML's alert); its value is the upper limit:
    more drift is a larger value for both methods."""
    if v.upper_threshold is None and v.lower_threshold is None:
        return None
    value = v.upper_threshold if v.upper_threshold is not None else float("nan")
    learned: dict[str, Any] = {"lower": v.lower_threshold, "upper": v.upper_threshold, "source": source}
    if source == "reference chunks":
        learned["k"] = THRESHOLD_STDS
    return Threshold(metric, ThresholdType.UPPER_LIMIT, float(value), learned=learned)


class MultivariateDriftMonitor(BaseMonitor):
    """Drift in the joint distribution of features: PCA reconstruction error and a domain classifier."""

    kind = KIND
    description = (
        "Drift in the features' joint distribution (NannyML's methods): PCA reconstruction error fitted on "
        "the reference, and a LightGBM domain classifier's cross-validated AUROC (reference vs window)."
    )
    options = (
        OptionSpec(
            "methods",
            list,
            METHODS,
            help="reconstruction, domain_classifier or both (default both).",
        ),
        OptionSpec("features", list, None, help="The features to measure together (default: all the subscription's)."),
        OptionSpec(
            "chunk_size",
            int,
            None,
            low=2,
            help="Records per reference chunk for the reconstruction's thresholds (default: ten chunks).",
        ),
        OptionSpec(
            "n_components",
            float,
            N_COMPONENTS,
            low=0.0,
            low_open=True,
            help="PCA components: a share of variance to explain (< 1) or a count (NannyML's default 0.65).",
        ),
        OptionSpec("cv_folds", int, 5, low=2, help="Cross-validation folds of the domain classifier."),
        thresholds_option(),
        min_records_option(100),
    )
    metrics = (
        MetricSpec(
            "reconstruction_error",
            Direction.LOWER_IS_BETTER,
            None,
            low=0.0,
            help="mean PCA reconstruction error of the window's records (default band: reference chunks ± 3 std)",
        ),
        MetricSpec(
            "domain_classifier_auroc",
            Direction.LOWER_IS_BETTER,
            None,
            low=0.0,
            high=1.0,
            help="cross-validated AUROC of reference-vs-window LightGBM (0.5: no drift; default band 0.45-0.65)",
        ),
    )

    def check(self, ctx: SubscriptionContext, values: dict[str, Any]) -> dict[str, Any]:
        methods = list(dict.fromkeys(values.get("methods") or METHODS))
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise MonitorError(f"{KIND} monitor: option 'methods': {unknown} (choose from {', '.join(METHODS)})")
        known = ctx.schema.feature_names
        features = list(values.get("features") or known)
        missing = [f for f in features if f not in known]
        if missing:
            raise MonitorError(f"{KIND} monitor: option 'features': {missing} not features of the subscription")
        if not features:
            raise MonitorError(f"{KIND} monitor: the subscription has no features to measure")
        n_components = float(values.get("n_components") or N_COMPONENTS)
        if n_components >= 1 and not n_components.is_integer():
            raise MonitorError(f"{KIND} monitor: option 'n_components': a share below 1 or a whole count")
        return {
            "methods": methods,
            "features": values.get("features"),
            "chunk_size": values.get("chunk_size"),
            "n_components": n_components if n_components < 1 else int(n_components),
            "cv_folds": int(values.get("cv_folds") or 5),
        }

    def run(self, ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
        ctx = context_of(ctx)
        outcome = MonitorOutcome(KIND)
        parameters = config.parameters
        features, _ = _features(ctx, parameters)
        # in stored order (scoring time): the domain classifier's folds are consecutive rows, as NannyML's
        rows = windows.set_rows(conn, window, ctx, features)
        outcome.records = n = len(rows)
        methods = list(parameters.get("methods") or METHODS)
        # stratified folds need at least one window record per fold
        needed = max(config.min_records, int(parameters.get("cv_folds") or 5) if "domain_classifier" in methods else 1)
        if n < needed:
            outcome.status = "not_enough_data"
            outcome.reason = f"{n} records, fewer than {needed}"
            return outcome
        for method in methods:
            model = fit(ctx, conn, method, parameters)
            v = model.measure(rows)
            metric = METRIC[method]
            details = {**v.to_dict(), "features": features, "chunk_size": model.chunk_size}
            if isinstance(model, Reconstruction):
                details["components"] = model.components
                details["reference_values"] = model.reference_values
                source = "reference chunks"
            else:
                details["folds"] = model.folds
                details["reference_records"] = len(model.reference)
                source = "constant (NannyML's default)"
            details.pop("value")
            threshold = config.threshold(metric) or _band(metric, v, source)
            outcome.measurements.append(Measurement.judged(KIND, metric, v.value, threshold, details=details))
        return outcome
