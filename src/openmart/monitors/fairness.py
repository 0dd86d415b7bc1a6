"""Fairness, OpenScale-style, computed with aif360.

Per protected attribute, a monitored group (likely disadvantaged) is compared with a reference
group; groups are category values or numeric ranges (inclusive). PostgreSQL counts records by
(group, favourable prediction[, favourable label]); those counts become a small aif360 dataset
whose instance weights are the counts, so aif360's own metric classes compute on a million
records as fast as on a dozen, with the same results (the tests compare against aif360 on the
records themselves).

Beyond the numbers: monitored-group records are scored again through the binding with the
protected attribute switched to the reference group (and the other way round); the share of
outcomes that flip, and disparate impact on payload plus perturbed records ("balanced data"),
tell whether the bias comes from the model. Those scoring calls go to the user's endpoint and
are counted. A de-biased view fits aif360's equalized-odds post-processing on labelled records
and reports what the outcome rates and accuracy would have been.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from openmart.context import SubscriptionContext
from openmart.errors import MonitorError, ProviderError
from openmart.mart import stats
from openmart.mart import windows as windows_gateway
from openmart.mart.records import as_text
from openmart.mart.stats import Groups, Membership
from openmart.mart.windows import Window
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
from openmart.monitors.config import MonitorConfig, MonitorKind, Threshold, ThresholdType, parse_group
from openmart.schema import ColumnKind, ProblemType

KIND = MonitorKind.FAIRNESS
L, U = ThresholdType.LOWER_LIMIT, ThresholdType.UPPER_LIMIT
DIRECTIONS = {
    "disparate_impact": L,
    "statistical_parity_difference": L,
    "equal_opportunity_difference": L,
    "average_odds_difference": L,
    "false_positive_rate_difference": U,
    "error_rate_difference": U,
    "theil_index": U,
    "balanced_disparate_impact": L,
    "perturbation_flip_rate": U,
}
MONITORED, REFERENCE = 1, 0  # aif360 codes: monitored = "unprivileged", reference = "privileged"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """aif360 logs a warning for every optional extra it lacks (tensorflow, fairlearn) on import."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


# -- configuration ---------------------------------------------------------------------------------


def _group(value: Any) -> list[Any]:
    if isinstance(value, str):
        return parse_group(value)
    items = value if isinstance(value, list | tuple) else [value]
    return [list(v) if isinstance(v, list | tuple) else v for v in items]


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str | list | tuple) and not len(value))


_METRIC_HELP = {
    "disparate_impact": "favourable rate of the monitored group / the reference group's (OpenScale's fairness)",
    "statistical_parity_difference": "favourable rate difference, monitored - reference",
    "equal_opportunity_difference": "true positive rate difference (labelled records)",
    "average_odds_difference": "mean of the TPR and FPR differences (labelled records)",
    "false_positive_rate_difference": "false positive rate difference (labelled records)",
    "error_rate_difference": "error rate difference (labelled records)",
    "theil_index": "generalized entropy index, alpha = 1 (labelled records)",
    "balanced_disparate_impact": "disparate impact on payload plus perturbed records",
    "perturbation_flip_rate": "share of monitored records whose outcome flips with the attribute switched",
}
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "disparate_impact": (0.0, None),
    "balanced_disparate_impact": (0.0, None),
    "statistical_parity_difference": (-1.0, 1.0),
    "equal_opportunity_difference": (-1.0, 1.0),
    "average_odds_difference": (-1.0, 1.0),
    "false_positive_rate_difference": (-1.0, 1.0),
    "error_rate_difference": (-1.0, 1.0),
    "theil_index": (0.0, None),
    "perturbation_flip_rate": (0.0, 1.0),
}


class FairnessMonitor(BaseMonitor):
    """Monitored group against reference group, per protected attribute (OpenScale's fairness)."""

    kind = KIND
    description = "Monitored vs reference group per protected attribute: disparate impact and aif360's metrics."
    options = (
        OptionSpec(
            "attributes",
            list,
            required=True,
            help="[{feature, monitored, reference}]: categories (female,other) or ranges (18-25) per group.",
        ),
        OptionSpec("favourable", object, None, help="Favourable outcomes (default: the last class label)."),
        thresholds_option(),
        min_records_option(100),
        OptionSpec("perturb", bool, True, help="Re-score records with the attribute switched (costs scoring calls)."),
        OptionSpec("max_perturbed", int, 500, low=0, high=100_000, help="Records re-scored per group at most."),
        OptionSpec("debias", bool, True, help="Report aif360 equalized-odds post-processing (passive de-biasing)."),
    )
    metrics = tuple(
        MetricSpec(
            name,
            Direction.HIGHER_IS_BETTER if side is L else Direction.LOWER_IS_BETTER,
            0.8 if name == "disparate_impact" else None,
            low=_RANGES[name][0],
            high=_RANGES[name][1],
            help=_METRIC_HELP[name],
        )
        for name, side in DIRECTIONS.items()
    )

    def check(self, ctx: SubscriptionContext, values: dict[str, Any]) -> dict[str, Any]:
        s = ctx.schema
        attributes = values["attributes"]
        if not attributes:
            raise MonitorError(
                "fairness monitor: option 'attributes' needs at least one protected attribute "
                "with monitored and reference groups"
            )
        parsed_attrs = []
        for i, a in enumerate(attributes):
            where = f"fairness monitor: option 'attributes[{i}]'"
            if not isinstance(a, Mapping):
                raise MonitorError(f"{where} must be a mapping {{feature, monitored, reference}}; got {a!r}")
            unknown = sorted(set(a) - {"feature", "monitored", "reference", "kind"})
            if unknown:
                raise MonitorError(f"{where}: unknown key {unknown[0]!r} (known: feature, monitored, reference)")
            for key in ("feature", "monitored", "reference"):
                if not _given(a.get(key)):
                    raise MonitorError(
                        f"{where}.{key} is missing: give the {key} "
                        + ("column" if key == "feature" else "group's values (female,other) or ranges (18-25)")
                    )
            feature = a["feature"]
            column = s.column(str(feature))  # raises, naming it, when it is not in the schema
            monitored, reference = _group(a["monitored"]), _group(a["reference"])
            for key, g in (("monitored", monitored), ("reference", reference)):
                if any(v is None or (isinstance(v, str) and not v.strip()) for v in g):
                    raise MonitorError(f"{where}.{key}: an empty value in {a[key]!r}")
                ranges = [v for v in g if isinstance(v, list)]
                if ranges and column.kind is ColumnKind.CATEGORICAL:
                    raise MonitorError(f"fairness: {feature!r} is categorical; give category values, not ranges")
                if column.kind is ColumnKind.NUMERIC and any(
                    not isinstance(v, list) and not isinstance(v, int | float) for v in g
                ):
                    raise MonitorError(f"{where}.{key}: {feature!r} is numeric; give numbers or ranges (18-25)")
                for r in ranges:
                    if len(r) != 2 or not all(isinstance(x, int | float) for x in r) or r[0] > r[1]:
                        raise MonitorError(f"{where}.{key}: range {r!r} must be [low, high] with low <= high")
            if column.kind is ColumnKind.CATEGORICAL:  # categories are text in the mart: "2", not 2
                monitored, reference = [as_text(v) for v in monitored], [as_text(v) for v in reference]
            if set(map(str, monitored)) & set(map(str, reference)):
                raise MonitorError(f"fairness: {feature!r} has values in both the monitored and the reference group")
            parsed_attrs.append(
                {"feature": column.name, "monitored": monitored, "reference": reference, "kind": str(column.kind)}
            )
        favourable = values["favourable"]
        if not _given(favourable):
            if s.problem_type is ProblemType.REGRESSION or not s.class_labels:
                raise MonitorError("fairness monitor: give the favourable outcomes (option 'favourable', --favourable)")
            favourable = [s.class_labels[-1]]
        fav = _group(favourable)
        if s.problem_type is not ProblemType.REGRESSION:
            labels = {str(v) for v in (s.class_labels or ())}
            unknown_classes = [v for v in fav if isinstance(v, list) or str(v) not in labels]
            if unknown_classes:
                raise MonitorError(
                    f"fairness: favourable outcome(s) {unknown_classes} are not class labels "
                    f"{list(s.class_labels or ())}"
                )
        return {
            "attributes": parsed_attrs,
            "favourable": fav,
            "perturb": bool(values["perturb"]),
            "max_perturbed": int(values["max_perturbed"]),
            "debias": bool(values["debias"]),
        }

    def thresholds(self, ctx: SubscriptionContext, given: Sequence[Any], parameters: dict[str, Any]) -> list[Threshold]:
        out = super().thresholds(ctx, given, parameters)
        features = [a["feature"] for a in parameters["attributes"]]
        for t in out:
            if t.feature is not None and t.feature not in features:
                raise MonitorError(
                    f"fairness threshold on {t.metric!r} for {t.feature!r}: not a protected attribute "
                    f"(these are: {', '.join(features)})"
                )
        return out

    def run(self, ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
        return run(context_of(ctx), config, window, conn)


# -- metrics from counts (aif360 with instance weights) ---------------------------------------------


def _weighted(data: pd.DataFrame, weights: pd.Series):  # type: ignore[no-untyped-def]
    with _quiet():
        from aif360.datasets import BinaryLabelDataset

    ds = BinaryLabelDataset(
        df=data, label_names=["label"], protected_attribute_names=["group"], favorable_label=1.0, unfavorable_label=0.0
    )
    ds.instance_weights = weights.to_numpy(dtype=float)
    return ds


def metrics_from_counts(counts: pd.DataFrame, with_labels: bool) -> dict[str, float | None]:
    """``counts``: columns group (1 monitored, 0 reference), pred (0/1 favourable), [label], n."""
    with _quiet():
        from aif360.metrics import BinaryLabelDatasetMetric, ClassificationMetric
    groups = dict(unprivileged_groups=[{"group": MONITORED}], privileged_groups=[{"group": REFERENCE}])
    predicted = _weighted(pd.DataFrame({"group": counts["group"], "label": counts["pred"]}).astype(float), counts["n"])
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BinaryLabelDatasetMetric(predicted, **groups)
        out: dict[str, float | None] = {
            "disparate_impact": float(m.disparate_impact()),
            "statistical_parity_difference": float(m.statistical_parity_difference()),
        }
        if with_labels:
            truth = _weighted(
                pd.DataFrame({"group": counts["group"], "label": counts["label"]}).astype(float), counts["n"]
            )
            cm = ClassificationMetric(truth, predicted, **groups)
            out["equal_opportunity_difference"] = float(cm.equal_opportunity_difference())
            out["average_odds_difference"] = float(cm.average_odds_difference())
            out["false_positive_rate_difference"] = float(cm.false_positive_rate_difference())
            out["error_rate_difference"] = float(cm.error_rate_difference())
            # aif360's generalized entropy index ignores instance weights: the same formula, weighted
            b = 1.0 + counts["pred"].to_numpy(float) - counts["label"].to_numpy(float)
            w = counts["n"].to_numpy(float)
            mu = np.average(b, weights=w)
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = np.where(b > 0, (b / mu) * np.log(np.where(b > 0, b / mu, 1.0)), 0.0)
            out["theil_index"] = float(np.average(terms, weights=w))
    return {k: (None if v is None or not np.isfinite(v) else v) for k, v in out.items()}


def rates(counts: pd.DataFrame) -> dict[str, Any]:
    by_group = counts.groupby("group").apply(
        lambda g: pd.Series({"n": g["n"].sum(), "fav": g.loc[g["pred"] == 1, "n"].sum()}), include_groups=False
    )
    out = {}
    for code, name in ((MONITORED, "monitored"), (REFERENCE, "reference")):
        n = int(by_group.loc[code, "n"]) if code in by_group.index else 0
        fav = int(by_group.loc[code, "fav"]) if code in by_group.index else 0
        out[name] = {"records": n, "favourable": fav, "favourable_percent": 100.0 * fav / n if n else None}
    return out


# -- run over the mart ----------------------------------------------------------------------------


def _groups(attr: Mapping[str, Any]) -> Groups:
    numeric = attr["kind"] == "numeric"
    return Groups(
        attr["feature"],
        Membership(tuple(attr["monitored"]), numeric),
        Membership(tuple(attr["reference"]), numeric),
        MONITORED,
        REFERENCE,
    )


def run(ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
    s = ctx.schema
    outcome = MonitorOutcome(str(KIND))
    p = config.parameters
    favourable = Membership(tuple(p["favourable"]), s.outputs_numeric)
    payload = windows_gateway.payload(window, ctx)
    labelled = windows_gateway.labelled(
        window,
        ctx,
        joined=[*(a["feature"] for a in p["attributes"]), s.prediction],
        feedback=[s.label],
        present=[s.prediction],
    )
    reached = 0
    for attr in p["attributes"]:
        feature = attr["feature"]
        groups = _groups(attr)
        if attr["kind"] == "numeric":
            counts = stats.group_outcome_counts(conn, payload, groups, prediction=s.prediction, favourable=favourable)
            by_value = _rates_by_range(conn, payload, attr, s.prediction, favourable)
        else:  # one scan: counts by value, from which the groups follow
            counts, by_value = _categorical_counts(conn, payload, feature, s.prediction, favourable, attr)
        in_groups = counts[counts["group"].notna()].astype({"group": int})
        excluded = int(counts.loc[counts["group"].isna(), "n"].sum())
        n = int(in_groups["n"].sum())
        reached = max(reached, n)
        group_rates = rates(in_groups) if n else {}
        details: dict[str, Any] = {
            "rates": group_rates,
            "excluded_records": excluded,
            "monitored": attr["monitored"],
            "reference": attr["reference"],
            "by_value": by_value,
        }
        missing = [g for g in ("monitored", "reference") if n and not group_rates[g]["records"]]
        reason = (
            f"{n} records in the groups, fewer than {config.min_records}"
            if n < config.min_records
            else f"no records in the {missing[0]} group"
            if missing
            else None
        )
        if reason:  # not a number: say why, with what was counted
            outcome.measurements.append(
                Measurement(str(KIND), "disparate_impact", None, feature=feature, details={**details, "reason": reason})
            )
            continue
        values = metrics_from_counts(in_groups, with_labels=False)
        # labelled records, for the metrics that need the truth
        lcounts = stats.group_outcome_counts(
            conn, labelled, groups, prediction=s.prediction, favourable=favourable, label=s.label
        )
        lcounts = lcounts[lcounts["group"].notna()].astype({"group": int})
        n_labelled = int(lcounts["n"].sum())
        if n_labelled >= config.min_records and lcounts["group"].nunique() == 2:
            values |= {k: v for k, v in metrics_from_counts(lcounts, with_labels=True).items() if k not in values}
        details["labelled_records"] = n_labelled
        if p.get("perturb") and feature in s.feature_names and ctx.binding and ctx.deployment_id:
            try:
                values |= _perturbation(
                    ctx, conn, payload, attr, p["favourable"], details, outcome, int(p.get("max_perturbed", 500))
                )
            except ProviderError as exc:  # the numbers above stand; say why the re-scoring is missing
                details["perturbation"] = {"error": str(exc)}
        if p.get("debias") and n_labelled >= config.min_records:
            details["debiased"] = debias_from_counts(lcounts)
        group_label = ",".join(map(str, attr["monitored"]))
        for metric, value in values.items():
            outcome.measurements.append(
                Measurement.judged(
                    str(KIND),
                    metric,
                    value,
                    config.threshold(metric, feature),
                    feature=feature,
                    group=group_label,
                    details=details if metric == "disparate_impact" else None,
                )
            )
    outcome.records = reached
    if reached < config.min_records and not any(m.value is not None for m in outcome.measurements):
        outcome.status = "not_enough_data"
        outcome.reason = f"{reached} records in the groups, fewer than {config.min_records}"
    return outcome


def _categorical_counts(
    conn: Any, payload: Any, feature: str, prediction: str, favourable: Membership, attr: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Counts by (value, favourable) in one scan; group counts and favourable % per value from it."""
    frame = stats.value_outcome_counts(conn, payload, feature, prediction=prediction, favourable=favourable)
    monitored, reference = set(map(str, attr["monitored"])), set(map(str, attr["reference"]))
    frame["group"] = frame["v"].map(lambda v: MONITORED if v in monitored else REFERENCE if v in reference else None)
    counts = frame.groupby(["group", "pred"], dropna=False, as_index=False)["n"].sum()
    per_value = frame.groupby("v", dropna=False).apply(
        lambda g: pd.Series({"n": g["n"].sum(), "fav": g.loc[g["pred"] == 1, "n"].sum()}), include_groups=False
    )
    per_value = per_value.sort_values("n", ascending=False).head(50)
    by_value = {
        str(v): {"records": int(r["n"]), "favourable_percent": 100.0 * r["fav"] / r["n"] if r["n"] else None}
        for v, r in per_value.iterrows()
    }
    return counts, by_value


def _rates_by_range(
    conn: Any, payload: Any, attr: Mapping[str, Any], prediction: str, favourable: Membership
) -> dict[str, Any]:
    """Favourable % per configured value or range of a numeric attribute."""
    out = {}
    for side in ("monitored", "reference"):
        for v in attr[side]:
            n, fav = stats.membership_outcome_counts(
                conn, payload, attr["feature"], Membership((v,), True), prediction=prediction, favourable=favourable
            )
            label = f"{v[0]:g}-{v[1]:g}" if isinstance(v, list) else str(v)
            out[label] = {"records": n, "favourable_percent": 100.0 * fav / n if n else None}
    return out


def _switch_value(attr: Mapping[str, Any], to: str) -> Any:
    v = attr[to][0]
    return (v[0] + v[1]) / 2 if isinstance(v, list) else v


def _perturbation(
    ctx: SubscriptionContext,
    conn: Any,
    payload: Any,
    attr: Mapping[str, Any],
    favourable: Sequence[Any],
    details: dict[str, Any],
    outcome: MonitorOutcome,
    limit: int,
) -> dict[str, float | None]:
    """Score each group's records again with the attribute switched to the other group."""
    from openmart.scoring.score import score_frame

    s = ctx.schema
    feature = attr["feature"]
    frame = stats.group_sample(
        conn, payload, _groups(attr), columns=s.feature_names, prediction=s.prediction, limit=2 * limit
    )
    if frame.empty:
        return {}
    for c in s.numeric_features:
        frame[c] = pd.to_numeric(frame[c])
    switched = frame.copy()
    switched[feature] = np.where(
        frame["grp_"] == MONITORED, _switch_value(attr, "reference"), _switch_value(attr, "monitored")
    )
    if attr["kind"] == "numeric":
        switched[feature] = pd.to_numeric(switched[feature])
    provider = ctx.provider()
    try:
        scored = score_frame(ctx, switched.loc[:, s.feature_names], provider=provider)
    finally:
        provider.close()
    outcome.scoring_calls += len(switched)

    def is_fav(values: pd.Series) -> np.ndarray:
        vals = values.tolist()
        out = np.zeros(len(vals), dtype=bool)
        for v in favourable:
            if isinstance(v, list):
                out |= np.array([x is not None and v[0] <= float(x) <= v[1] for x in vals])
            else:
                out |= np.array(
                    [
                        str(x) == str(v)
                        or (
                            isinstance(x, float) and str(v) == str(int(x))
                            if isinstance(x, float) and x.is_integer()
                            else False
                        )
                        for x in vals
                    ]
                )
        return out

    before = is_fav(frame["pred_"])
    after = is_fav(scored[s.prediction])
    mon = frame["grp_"].to_numpy() == MONITORED
    flips = before != after
    # balanced data: the sampled payload plus its perturbed twins, each in the group it now belongs to
    groups = np.concatenate([frame["grp_"].to_numpy(), np.where(mon, REFERENCE, MONITORED)])
    favs = np.concatenate([before, after])
    counts = pd.DataFrame({"group": groups, "pred": favs.astype(int)}).value_counts().rename("n").reset_index()
    balanced = metrics_from_counts(counts, with_labels=False)["disparate_impact"] if len(set(groups)) == 2 else None
    details["perturbation"] = {
        "records": int(len(frame)),
        "scoring_calls": int(len(switched)),
        "flips_monitored_to_reference": int(flips[mon].sum()),
        "flips_reference_to_monitored": int(flips[~mon].sum()),
        "monitored_records": int(mon.sum()),
    }
    return {
        "perturbation_flip_rate": float(flips[mon].mean()) if mon.any() else None,
        "balanced_disparate_impact": balanced,
    }


def debias_from_counts(counts: pd.DataFrame, sample: int = 20_000) -> dict[str, Any]:
    """Passive de-biasing: aif360's equalized-odds post-processing fitted on the labelled
    records — rebuilt from their (group, prediction, label) counts, proportionally, up to
    ``sample`` records (all a post-processor of predicted labels can see) — and what the
    favourable rates, disparate impact and accuracy would have been."""
    with _quiet():
        from aif360.algorithms.postprocessing import EqOddsPostprocessing
        from aif360.metrics import BinaryLabelDatasetMetric
    total = int(counts["n"].sum())
    if counts["group"].nunique() < 2 or counts["label"].nunique() < 2:
        return {"reason": "both groups and both outcomes are needed among labelled records"}
    scale = min(1.0, sample / total)
    reps = np.maximum(np.round(counts["n"].to_numpy() * scale).astype(int), 1)
    rows = counts.loc[counts.index.repeat(reps), ["group", "pred", "label"]].reset_index(drop=True)
    groups = dict(unprivileged_groups=[{"group": MONITORED}], privileged_groups=[{"group": REFERENCE}])
    ones = pd.Series(np.ones(len(rows)))
    truth = _weighted(pd.DataFrame({"group": rows["group"], "label": rows["label"]}).astype(float), ones)
    predicted = _weighted(pd.DataFrame({"group": rows["group"], "label": rows["pred"]}).astype(float), ones)
    with _quiet(), np.errstate(all="ignore"):
        post = EqOddsPostprocessing(seed=0, **groups).fit(truth, predicted)
        fixed = post.predict(predicted)
        before = BinaryLabelDatasetMetric(predicted, **groups)
        after = BinaryLabelDatasetMetric(fixed, **groups)
    new = fixed.labels.ravel()
    y = rows["label"].to_numpy(float)
    g = rows["group"].to_numpy()

    def rate(v: np.ndarray, code: int) -> float:
        return float(100 * v[g == code].mean())

    return {
        "method": "aif360 EqOddsPostprocessing",
        "records": len(rows),
        "disparate_impact_before": float(before.disparate_impact()),
        "disparate_impact_after": float(after.disparate_impact()),
        "accuracy_before": float((rows["pred"].to_numpy(float) == y).mean()),
        "accuracy_after": float((new == y).mean()),
        "favourable_percent_after": {"monitored": rate(new, MONITORED), "reference": rate(new, REFERENCE)},
    }
