"""SageMaker Model Monitor's data-quality files, read and written: ``constraints.json`` (checked
field by field against a subscription's schema) and ``statistics.json`` (checked for shape), and
the entries of ``constraint_violations.json``. Shapes follow AWS's "Schema for Constraints",
"Schema for Statistics" and "Schema for Violations" pages (docs/data-quality.md cites them).

openmart's one extension, ``num_constraints.openmart_range`` (``min``, ``max``, ``tolerance``),
is kept inside ``num_constraints`` under a name SageMaker does not use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from openmart.errors import MonitorError
from openmart.schema import ColumnKind, SubscriptionSchema

TYPES = ("Integral", "Fractional", "String", "Unknown")
SWITCH = ("Enabled", "Disabled")
#: constraint_check_type values (SageMaker's, and openmart's range check)
COMPLETENESS_CHECK = "completeness_check"
DATA_TYPE_CHECK = "data_type_check"
CATEGORICAL_VALUES_CHECK = "categorical_values_check"
RANGE_CHECK = "openmart_range_check"  # not SageMaker's: its constraints have no range
RANGE = "openmart_range"

_TOP = ("version", "features", "monitoring_config")
_FEATURE = (
    "name",
    "inferred_type",
    "completeness",
    "num_constraints",
    "string_constraints",
    "monitoringConfigOverrides",
)
_NUM = ("is_non_negative", RANGE)
_RANGE = ("min", "max", "tolerance")
_STRING = ("domains",)
_CONFIG = (
    "evaluate_constraints",
    "emit_metrics",
    "datatype_check_threshold",
    "domain_content_threshold",
    "distribution_constraints",
)
_DISTRIBUTION = (
    "perform_comparison",
    "comparison_threshold",
    "comparison_method",
    "categorical_comparison_threshold",
    "categorical_drift_method",
)


def _error(where: str, why: str) -> MonitorError:
    return MonitorError(f"constraints.json: {where}: {why}")


def _mapping(value: Any, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _error(where, f"must be an object, not {type(value).__name__}")
    for key in value:
        if key not in known:
            raise _error(f"{where}.{key}" if where else str(key), f"unknown field (known: {', '.join(known)})")
    return dict(value)


def _share(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _error(where, f"must be a number in [0, 1], not {value!r}")
    return float(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _error(where, f"must be a finite number, not {value!r}")
    return float(value)


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _error(where, f"must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _monitoring_config(value: Any, where: str) -> dict[str, Any]:
    config = _mapping(value, where, _CONFIG)
    for key in ("evaluate_constraints", "emit_metrics"):
        if key in config:
            config[key] = _choice(config[key], f"{where}.{key}", SWITCH)
    for key in ("datatype_check_threshold", "domain_content_threshold"):
        if key in config:
            config[key] = _share(config[key], f"{where}.{key}")
    if "distribution_constraints" in config:
        # kept as given: distributions are the drift monitor's work, not this one's
        config["distribution_constraints"] = _mapping(
            config["distribution_constraints"], f"{where}.distribution_constraints", _DISTRIBUTION
        )
    return config


def _feature(value: Any, where: str, schema: SubscriptionSchema) -> dict[str, Any]:
    feature = _mapping(value, where, _FEATURE)
    name = feature.get("name")
    if not isinstance(name, str):
        raise _error(f"{where}.name", f"must be a column name, not {name!r}")
    columns = {c.name: c for c in schema.input_columns}
    if name not in columns:
        raise _error(
            f"{where}.name", f"{name!r} is not a column of the subscription (its columns: {', '.join(columns)})"
        )
    numeric = columns[name].kind is ColumnKind.NUMERIC
    feature["inferred_type"] = _choice(feature.get("inferred_type"), f"{where}.inferred_type", TYPES)
    if "completeness" in feature:
        feature["completeness"] = _share(feature["completeness"], f"{where}.completeness")
    if "num_constraints" in feature:
        nums = _mapping(feature["num_constraints"], f"{where}.num_constraints", _NUM)
        if not numeric:
            raise _error(f"{where}.num_constraints", f"{name!r} is a categorical (text) column of the subscription")
        if "is_non_negative" in nums and not isinstance(nums["is_non_negative"], bool):
            raise _error(f"{where}.num_constraints.is_non_negative", f"must be true or false, not {nums!r}")
        if RANGE in nums:
            at = f"{where}.num_constraints.{RANGE}"
            bounds = _mapping(nums[RANGE], at, _RANGE)
            for key in ("min", "max"):
                if key in bounds:
                    bounds[key] = _number(bounds[key], f"{at}.{key}")
            if "tolerance" in bounds:
                bounds["tolerance"] = _share(bounds["tolerance"], f"{at}.tolerance")
            if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
                raise _error(at, f"min {bounds['min']:g} is above max {bounds['max']:g}")
            nums[RANGE] = bounds
        feature["num_constraints"] = nums
    if "string_constraints" in feature:
        strings = _mapping(feature["string_constraints"], f"{where}.string_constraints", _STRING)
        if numeric:
            raise _error(f"{where}.string_constraints", f"{name!r} is a numeric column of the subscription")
        domains = strings.get("domains", [])
        if not isinstance(domains, list) or any(
            isinstance(v, bool) or not isinstance(v, str | int | float) for v in domains
        ):
            raise _error(f"{where}.string_constraints.domains", "must be a list of values (text)")
        strings["domains"] = [str(v) for v in domains]  # the mart keeps categories as text
        feature["string_constraints"] = strings
    if "monitoringConfigOverrides" in feature:
        feature["monitoringConfigOverrides"] = _monitoring_config(
            feature["monitoringConfigOverrides"], f"{where}.monitoringConfigOverrides"
        )
    return feature


def validate_constraints(doc: Any, schema: SubscriptionSchema) -> dict[str, Any]:
    """A constraints.json document, checked (each unknown or bad field named by its path, each
    feature a column of the subscription, once) and normalised."""
    top = _mapping(doc, "", _TOP)
    features = top.get("features")
    if not isinstance(features, list):
        raise _error("features", "must be a list of features")
    checked = [_feature(f, f"features[{i}]", schema) for i, f in enumerate(features)]
    seen: set[str] = set()
    for i, f in enumerate(checked):
        if f["name"] in seen:
            raise _error(f"features[{i}].name", f"{f['name']!r} appears twice")
        seen.add(f["name"])
    version = top.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int | float):
        raise _error("version", f"must be a number, not {version!r}")
    return {
        "version": version,
        "features": checked,
        "monitoring_config": _monitoring_config(top.get("monitoring_config", {}), "monitoring_config"),
    }


_STAT_TOP = ("version", "dataset", "features")
_STAT_FEATURE = ("name", "inferred_type", "numerical_statistics", "string_statistics")


def validate_statistics(doc: Any) -> dict[str, Any]:
    """A statistics.json document, checked for shape (its numbers describe a baseline: they are
    kept, not re-derived)."""

    def bad(where: str, why: str) -> MonitorError:
        return MonitorError(f"statistics.json: {where}: {why}")

    if not isinstance(doc, Mapping):
        raise bad("(top)", "must be an object")
    for key in doc:
        if key not in _STAT_TOP:
            raise bad(str(key), f"unknown field (known: {', '.join(_STAT_TOP)})")
    dataset = doc.get("dataset")
    if not isinstance(dataset, Mapping) or not isinstance(dataset.get("item_count"), int | float):
        raise bad("dataset.item_count", "must be a number")
    features = doc.get("features")
    if not isinstance(features, list):
        raise bad("features", "must be a list")
    for i, f in enumerate(features):
        if not isinstance(f, Mapping):
            raise bad(f"features[{i}]", "must be an object")
        for key in f:
            if key not in _STAT_FEATURE:
                raise bad(f"features[{i}].{key}", f"unknown field (known: {', '.join(_STAT_FEATURE)})")
        if not isinstance(f.get("name"), str):
            raise bad(f"features[{i}].name", "must be text")
        if f.get("inferred_type") not in TYPES:
            raise bad(f"features[{i}].inferred_type", f"must be one of {', '.join(TYPES)}")
        stats = f.get("numerical_statistics", f.get("string_statistics"))
        common = stats.get("common") if isinstance(stats, Mapping) else None
        if not isinstance(common, Mapping) or not all(
            isinstance(common.get(k), int | float) for k in ("num_present", "num_missing")
        ):
            raise bad(
                f"features[{i}]", "needs numerical_statistics or string_statistics with common.num_present/num_missing"
            )
    return dict(doc)


def violation(feature: str, check: str, description: str) -> dict[str, str]:
    """One entry of constraint_violations.json."""
    return {"feature_name": feature, "constraint_check_type": check, "description": description}
