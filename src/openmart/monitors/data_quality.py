"""Data quality: a window's records against constraints in SageMaker Model Monitor's
``constraints.json`` shape — completeness, data type, openmart's range extension, and unseen
categories — one measurement per (check, feature) and a dataset-level ``violations`` count.

The constraints are suggested from the reference when the monitor is enabled (or brought as a
SageMaker file) and **stored in the monitor's parameters**: replacing the reference later does not
move the baseline under an alert history; enabling the monitor again re-suggests it. Every count
is made in PostgreSQL (openmart.mart.data_quality); only a few offending values come out, as
examples in the details.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openmart.context import SubscriptionContext
from openmart.mart import data_quality as dq
from openmart.mart import windows
from openmart.mart.windows import Window
from openmart.monitors import dq_baseline
from openmart.monitors.base import (
    BaseMonitor,
    Direction,
    Measurement,
    MetricSpec,
    MonitorOutcome,
    OptionSpec,
    context_of,
    min_records_option,
    thresholds_option,
)
from openmart.monitors.config import MonitorConfig, MonitorKind, Threshold, ThresholdType
from openmart.monitors.dq_formats import (
    CATEGORICAL_VALUES_CHECK,
    COMPLETENESS_CHECK,
    DATA_TYPE_CHECK,
    RANGE,
    RANGE_CHECK,
    validate_constraints,
    validate_statistics,
)
from openmart.schema import ColumnKind

KIND = MonitorKind.DATA_QUALITY
L, U = ThresholdType.LOWER_LIMIT, ThresholdType.UPPER_LIMIT
CHECKS = {
    "completeness": COMPLETENESS_CHECK,
    "type_conformance": DATA_TYPE_CHECK,
    "out_of_range": RANGE_CHECK,
    "unseen_categories": CATEGORICAL_VALUES_CHECK,
}


def _share(n: int, of: int) -> float | None:
    return n / of if of else None


def _limit(config: MonitorConfig, metric: str, feature: str, side: ThresholdType, value: float) -> Threshold:
    """A threshold the user set for this metric (and feature) wins over the constraint's."""
    return config.threshold(metric, feature) or Threshold(metric, side, value, feature)


def _examples(found: dq.ColumnCounts, key: str) -> list[dict[str, Any]]:
    return found.examples.get(key, [])


def _shown(examples: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['value']!r} x{e['count']}" for e in examples) or "none"


def _measure(
    config: MonitorConfig, feature: dict[str, Any], numeric: bool, found: dq.ColumnCounts
) -> list[Measurement]:
    """The measurements of one feature, from its counts and its constraints."""
    name, typ = feature["name"], feature["inferred_type"]
    overrides = feature.get("monitoringConfigOverrides") or {}
    general = config.parameters["constraints"].get("monitoring_config", {})
    base = {"rows": found.rows, "present": found.present, "missing": found.missing}
    out: list[Measurement] = []

    def add(metric: str, value: float | None, limit: Threshold, details: dict[str, Any], description: str) -> None:
        m = Measurement.judged(KIND, metric, value, limit, feature=name, details=base | details)
        assert m.details is not None
        m.details |= {"check": CHECKS[metric], "description": description}
        out.append(m)

    if "completeness" in feature:
        value = _share(found.present, found.rows)
        limit = _limit(config, "completeness", name, L, feature["completeness"])
        add(
            "completeness",
            value,
            limit,
            {"constraint": limit.value},
            f"{found.missing} of {found.rows} values missing: completeness {value or 0:.2%}, "
            f"the constraint {limit.value:.2%}",
        )
    if typ in ("Integral", "Fractional") and (typ == "Integral" or not numeric):
        threshold = overrides.get("datatype_check_threshold", general.get("datatype_check_threshold", 1.0))
        value = 1 - _share(found.wrong_type, found.present) if found.present else None
        limit = _limit(config, "type_conformance", name, L, threshold)
        examples = _examples(found, "wrong_type")
        add(
            "type_conformance",
            value,
            limit,
            {"expected_type": typ, "nonconforming": found.wrong_type, "examples": examples},
            f"{found.wrong_type} of {found.present} values are not {typ} (e.g. {_shown(examples)}): "
            f"{value or 0:.2%} conform, datatype_check_threshold {limit.value:g}",
        )
    nums = feature.get("num_constraints") or {}
    bounds = _bounds(nums)
    if numeric and bounds is not None:
        low, high, tolerance = bounds
        value = _share(found.out_of_range, found.present)
        limit = _limit(config, "out_of_range", name, U, tolerance)
        examples = _examples(found, "out_of_range")
        add(
            "out_of_range",
            value,
            limit,
            {"min": low, "max": high, "outside": found.out_of_range, "examples": examples},
            f"{found.out_of_range} of {found.present} values outside [{_bound(low, '-inf')}, {_bound(high, 'inf')}] "
            f"(e.g. {_shown(examples)}): {value or 0:.2%}, tolerated {limit.value:.2%}",
        )
    domains = (feature.get("string_constraints") or {}).get("domains")
    if not numeric and domains is not None:
        threshold = overrides.get("domain_content_threshold", general.get("domain_content_threshold", 1.0))
        value = _share(found.unseen, found.present)
        # SageMaker's threshold is the share of values that must lie in the domain (as for the data
        # type): the unseen share may be at most 1 - threshold
        limit = _limit(config, "unseen_categories", name, U, round(1 - threshold, 12))
        examples = _examples(found, "unseen")
        add(
            "unseen_categories",
            value,
            limit,
            {"unseen": found.unseen, "domain_size": len(domains), "examples": examples},
            f"{found.unseen} of {found.present} values are not in the baseline's domain "
            f"(e.g. {_shown(examples)}): {value or 0:.2%}, domain_content_threshold {threshold:g}",
        )
    return out


def _bound(value: float | None, unbounded: str) -> str:
    return unbounded if value is None else f"{value:g}"


def _bounds(nums: dict[str, Any]) -> tuple[float | None, float | None, float] | None:
    """(low, high, tolerance) from openmart's range and SageMaker's is_non_negative; None: no
    range to check. is_non_negative alone tolerates nothing: it is a rule, not a sample's extreme."""
    rng = nums.get(RANGE)
    low = rng.get("min") if rng else None
    high = rng.get("max") if rng else None
    if nums.get("is_non_negative"):
        low = 0.0 if low is None else max(low, 0.0)
    if low is None and high is None:
        return None
    tolerance = rng.get("tolerance", dq_baseline.RANGE_TOLERANCE) if rng else 0.0
    return low, high, float(tolerance)


def checks_for(feature: dict[str, Any], numeric: bool) -> dq.Checks:
    typ = feature["inferred_type"]
    bounds = _bounds(feature.get("num_constraints") or {}) if numeric else None
    domains = (feature.get("string_constraints") or {}).get("domains") if not numeric else None
    return dq.Checks(
        low=bounds[0] if bounds else None,
        high=bounds[1] if bounds else None,
        domain=domains,
        integral=typ == "Integral",
        number=typ == "Fractional" and not numeric,
    )


class DataQualityMonitor(BaseMonitor):
    """Constraint violations per evaluation, against a SageMaker-shaped constraints.json."""

    kind = KIND
    description = "Constraints in Model Monitor's constraints.json: completeness, data type, range, unseen categories."
    options: Sequence[OptionSpec] = (
        OptionSpec(
            "constraints",
            dict,
            None,
            help="A constraints.json document (default: suggested from the reference now, and kept).",
        ),
        OptionSpec("statistics", dict, None, help="The baseline's statistics.json, kept with the constraints."),
        OptionSpec(
            "completeness_threshold", float, None, low=0.0, high=1.0, help="Every feature's completeness constraint."
        ),
        OptionSpec("datatype_check_threshold", float, None, low=0.0, high=1.0, help="Share that must have the type."),
        OptionSpec("domain_content_threshold", float, None, low=0.0, high=1.0, help="Share in the domain."),
        OptionSpec(
            "out_of_range_threshold",
            float,
            None,
            low=0.0,
            high=1.0,
            help=f"Share allowed outside openmart_range (suggested: {dq_baseline.RANGE_TOLERANCE:g}).",
        ),
        thresholds_option(),
        min_records_option(1),
    )
    metrics: Sequence[MetricSpec] = (
        MetricSpec("completeness", Direction.HIGHER_IS_BETTER, None, 0.0, 1.0, "share of values present"),
        MetricSpec("type_conformance", Direction.HIGHER_IS_BETTER, None, 0.0, 1.0, "share of the declared type"),
        MetricSpec("out_of_range", Direction.LOWER_IS_BETTER, None, 0.0, 1.0, "share outside openmart_range"),
        MetricSpec("unseen_categories", Direction.LOWER_IS_BETTER, None, 0.0, 1.0, "share outside the domain"),
        MetricSpec("violations", Direction.LOWER_IS_BETTER, None, 0.0, None, "constraints violated (count)"),
    )

    def check(self, ctx: SubscriptionContext, values: dict[str, Any]) -> dict[str, Any]:
        if values["constraints"] is None:
            with ctx.engine.connect() as conn:
                constraints = dq_baseline.suggest(*dq_baseline.profile(ctx, conn))
        else:
            constraints = validate_constraints(values["constraints"], ctx.schema)
        config = constraints.setdefault("monitoring_config", {})
        for key in ("datatype_check_threshold", "domain_content_threshold"):
            if values[key] is not None:
                config[key] = values[key]
        for feature in constraints["features"]:
            if values["completeness_threshold"] is not None:
                feature["completeness"] = values["completeness_threshold"]
            rng = (feature.get("num_constraints") or {}).get(RANGE)
            if rng is not None and values["out_of_range_threshold"] is not None:
                rng["tolerance"] = values["out_of_range_threshold"]
        parameters: dict[str, Any] = {"constraints": constraints}
        if values["statistics"] is not None:
            parameters["statistics"] = validate_statistics(values["statistics"])
        return parameters

    def run(self, ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
        ctx = context_of(ctx)
        constraints = config.parameters["constraints"]
        outcome = MonitorOutcome(self.kind)
        if constraints.get("monitoring_config", {}).get("evaluate_constraints", "Enabled") == "Disabled":
            outcome.status, outcome.reason = "skipped", "evaluate_constraints is Disabled in the constraints"
            return outcome
        relation = windows.payload(window, ctx)
        kinds = {c.name: c.kind for c in ctx.schema.input_columns}
        for feature in constraints["features"]:
            if feature["name"] not in kinds:  # the schema cannot lose a column; checked when stored
                continue
            numeric = kinds[feature["name"]] is ColumnKind.NUMERIC
            found = dq.column_counts(
                conn, relation, feature["name"], numeric=numeric, checks=checks_for(feature, numeric)
            )
            outcome.records = found.rows
            if found.rows < config.min_records:
                outcome.status = "not_enough_data"
                outcome.reason = f"{found.rows} records in the window, fewer than min_records {config.min_records}"
                outcome.measurements.clear()
                return outcome
            outcome.measurements.extend(_measure(config, feature, numeric, found))
        breached = [m for m in outcome.measurements if m.breached]
        outcome.measurements.append(
            Measurement.judged(
                KIND,
                "violations",
                float(len(breached)),
                config.threshold("violations"),
                details={"checks": [f"{m.details['check']}:{m.feature}" for m in breached if m.details]},
            )
        )
        outcome.info["violations"] = len(breached)
        if breached:  # `openmart evaluate` prints it beside the monitor's status
            outcome.reason = f"{len(breached)} constraints violated: openmart constraints violations {ctx.name}"
        return outcome
