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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from openmart.errors import MonitorError, ProviderError
from openmart.evaluation.results import Measurement, MonitorOutcome
from openmart.evaluation.window import Window, fetch_frame
from openmart.mart.identifiers import quote
from openmart.mart.records import as_text
from openmart.monitors.config import (
    MonitorConfig,
    MonitorKind,
    Threshold,
    ThresholdType,
    parse_group,
    parse_threshold,
)
from openmart.schema import ColumnKind, ProblemType

if TYPE_CHECKING:
    from openmart.api import Subscription

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
    return (
        parse_group(value)
        if isinstance(value, str)
        else [list(v) if isinstance(v, list | tuple) else v for v in (value if isinstance(value, list) else [value])]
    )


def configure(
    sub: Subscription,
    *,
    attributes: Sequence[Mapping[str, Any]] = (),
    favourable: Any = None,
    thresholds: Sequence[str | Mapping[str, Any]] = (),
    min_records: int = 100,
    perturb: bool = True,
    max_perturbed: int = 500,
    debias: bool = True,
    **unknown: Any,
) -> MonitorConfig:
    if unknown:
        raise MonitorError(f"fairness monitor: unknown options {sorted(unknown)}")
    s = sub.schema
    if not attributes:
        raise MonitorError(
            "fairness monitor: give at least one protected attribute with monitored and reference groups"
        )
    parsed_attrs = []
    for a in attributes:
        feature = a.get("feature")
        column = s.column(str(feature))  # raises, naming it, when it is not in the schema
        monitored, reference = _group(a.get("monitored")), _group(a.get("reference"))
        for g in (monitored, reference):
            ranges = [v for v in g if isinstance(v, list)]
            if ranges and column.kind is ColumnKind.CATEGORICAL:
                raise MonitorError(f"fairness: {feature!r} is categorical; give category values, not ranges")
        if column.kind is ColumnKind.CATEGORICAL:  # categories are text in the mart: "2", not 2
            monitored, reference = [as_text(v) for v in monitored], [as_text(v) for v in reference]
        if set(map(str, monitored)) & set(map(str, reference)):
            raise MonitorError(f"fairness: {feature!r} has values in both the monitored and the reference group")
        parsed_attrs.append(
            {"feature": column.name, "monitored": monitored, "reference": reference, "kind": str(column.kind)}
        )
    if favourable is None:
        if s.problem_type is ProblemType.REGRESSION or not s.class_labels:
            raise MonitorError("fairness monitor: give the favourable outcomes (--favourable)")
        favourable = [s.class_labels[-1]]
    fav = _group(favourable)
    if s.problem_type is not ProblemType.REGRESSION:
        labels = {str(v) for v in (s.class_labels or ())}
        unknown_classes = [v for v in fav if isinstance(v, list) or str(v) not in labels]
        if unknown_classes:
            raise MonitorError(
                f"fairness: favourable outcome(s) {unknown_classes} are not class labels {list(s.class_labels or ())}"
            )
    parsed = [
        parse_threshold(t, DIRECTIONS) if isinstance(t, str) else Threshold.from_dict(dict(t)) for t in thresholds
    ]
    if not any(t.metric == "disparate_impact" for t in parsed):
        parsed.append(Threshold("disparate_impact", L, 0.8))
    params = {
        "attributes": parsed_attrs,
        "favourable": fav,
        "perturb": bool(perturb),
        "max_perturbed": int(max_perturbed),
        "debias": bool(debias),
    }
    return MonitorConfig(KIND, params, parsed, int(min_records))


# -- SQL pieces -------------------------------------------------------------------------------------


def _membership_sql(expr: str, values: Sequence[Any], numeric: bool, prefix: str, args: dict[str, Any]) -> str:
    parts = []
    cats = [v for v in values if not isinstance(v, list)]
    for i, v in enumerate(v for v in values if isinstance(v, list)):
        args[f"{prefix}lo{i}"], args[f"{prefix}hi{i}"] = float(v[0]), float(v[1])
        parts.append(f"({expr} BETWEEN %({prefix}lo{i})s AND %({prefix}hi{i})s)")
    if cats:
        if numeric:
            args[f"{prefix}num"] = [float(v) for v in cats]
            parts.append(f"{expr} = ANY(%({prefix}num)s::float8[])")
        else:
            args[f"{prefix}cat"] = [str(v) for v in cats]
            parts.append(f"{expr}::text = ANY(%({prefix}cat)s::text[])")
    return "(" + " OR ".join(parts) + ")" if parts else "false"


def _group_sql(expr: str, attr: Mapping[str, Any], args: dict[str, Any], tag: str) -> str:
    numeric = attr["kind"] == "numeric"
    mon = _membership_sql(expr, attr["monitored"], numeric, f"{tag}m", args)
    ref = _membership_sql(expr, attr["reference"], numeric, f"{tag}r", args)
    return f"CASE WHEN {mon} THEN {MONITORED} WHEN {ref} THEN {REFERENCE} END"


def _favourable_sql(expr: str, favourable: Sequence[Any], numeric: bool, args: dict[str, Any], tag: str) -> str:
    return f"coalesce({_membership_sql(expr, favourable, numeric, tag, args)}, false)"


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


def _counts(
    raw: Any, base_sql: str, params: dict[str, Any], group_expr: str, pred_expr: str, label_expr: str | None
) -> pd.DataFrame:
    cols = f"{group_expr} AS group_, {pred_expr}::int AS pred" + (f", {label_expr}::int AS label" if label_expr else "")
    keys = "group_, pred" + (", label" if label_expr else "")
    frame = fetch_frame(
        raw, f"SELECT {keys}, count(*) AS n FROM (SELECT {cols} FROM ({base_sql}) w) q GROUP BY {keys}", params
    )
    frame = frame.rename(columns={"group_": "group"})
    frame["n"] = frame["n"].astype(int)
    return frame


def run(sub: Subscription, config: MonitorConfig, window: Window, raw: Any) -> MonitorOutcome:
    s = sub.schema
    outcome = MonitorOutcome(str(KIND))
    p = config.parameters
    favourable = p["favourable"]
    out_numeric = s.outputs_numeric
    payload_sql, payload_params = window.payload_sql(sub.payload.table)
    labelled_cols = ", ".join(
        [
            f"coalesce(p.{quote(a['feature'])}, f.{quote(a['feature'])}) AS {quote(a['feature'])}"
            for a in p["attributes"]
        ]
        + [
            f"coalesce(p.{quote(s.prediction)}, f.{quote(s.prediction)}) AS {quote(s.prediction)}",
            f"f.{quote(s.label)} AS {quote(s.label)}",
        ]
    )
    labelled_sql, labelled_params = window.labelled_sql(sub.feedback.table, sub.payload.table, labelled_cols)
    reached = 0
    for i, attr in enumerate(p["attributes"]):
        feature = attr["feature"]
        args = dict(payload_params)
        pred = _favourable_sql(f"w.{quote(s.prediction)}", favourable, out_numeric, args, f"f{i}")
        if attr["kind"] == "numeric":
            group = _group_sql(f"w.{quote(feature)}", attr, args, f"g{i}")
            counts = _counts(raw, payload_sql, args, group, pred, None)
            by_value = _rates_by_value(
                raw, payload_sql, payload_params, feature, pred_sql=pred, args=args, numeric=True, attr=attr
            )
        else:  # one scan: counts by value, from which the groups follow
            counts, by_value = _categorical_counts(raw, payload_sql, args, feature, pred, attr)
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
        largs = dict(labelled_params)
        lgroup = _group_sql(f"w.{quote(feature)}", attr, largs, f"lg{i}")
        lpred = _favourable_sql(f"w.{quote(s.prediction)}", favourable, out_numeric, largs, f"lf{i}")
        llabel = _favourable_sql(f"w.{quote(s.label)}", favourable, out_numeric, largs, f"ll{i}")
        lcounts = _counts(
            raw,
            f"SELECT * FROM ({labelled_sql}) l WHERE {quote(s.prediction)} IS NOT NULL",
            largs,
            lgroup,
            lpred,
            llabel,
        )
        lcounts = lcounts[lcounts["group"].notna()].astype({"group": int})
        labelled = int(lcounts["n"].sum())
        if labelled >= config.min_records and lcounts["group"].nunique() == 2:
            values |= {k: v for k, v in metrics_from_counts(lcounts, with_labels=True).items() if k not in values}
        details["labelled_records"] = labelled
        if p.get("perturb") and feature in s.feature_names and sub.binding and sub.deployment_id:
            try:
                values |= _perturbation(
                    sub,
                    raw,
                    payload_sql,
                    payload_params,
                    attr,
                    favourable,
                    details,
                    outcome,
                    int(p.get("max_perturbed", 500)),
                )
            except ProviderError as exc:  # the numbers above stand; say why the re-scoring is missing
                details["perturbation"] = {"error": str(exc)}
        if p.get("debias") and labelled >= config.min_records:
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
    raw: Any, sql: str, args: dict[str, Any], feature: str, pred_sql: str, attr: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Counts by (value, favourable) in one scan; group counts and favourable % per value from it."""
    frame = fetch_frame(
        raw,
        f"SELECT w.{quote(feature)}::text AS v, ({pred_sql})::int AS pred, count(*) AS n FROM ({sql}) w GROUP BY 1, 2",
        args,
    )
    frame["n"] = frame["n"].astype(int)
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


def _rates_by_value(
    raw: Any,
    sql: str,
    params: dict[str, Any],
    feature: str,
    pred_sql: str,
    args: dict[str, Any],
    numeric: bool,
    attr: Mapping[str, Any],
) -> dict[str, Any]:
    """Favourable % per distinct value (categorical) or per configured range (numeric)."""
    if numeric:
        out = {}
        for side in ("monitored", "reference"):
            for v in attr[side]:
                a = dict(args)
                cond = _membership_sql(f"w.{quote(feature)}", [v], True, "bv", a)
                frame = fetch_frame(
                    raw,
                    f"SELECT count(*) FILTER (WHERE {pred_sql}) AS fav, count(*) AS n FROM ({sql}) w WHERE {cond}",
                    a,
                )
                n, fav = int(frame["n"][0]), int(frame["fav"][0] or 0)
                label = f"{v[0]:g}-{v[1]:g}" if isinstance(v, list) else str(v)
                out[label] = {"records": n, "favourable_percent": 100.0 * fav / n if n else None}
        return out
    frame = fetch_frame(
        raw,
        f"SELECT w.{quote(feature)}::text AS v, count(*) FILTER (WHERE {pred_sql}) AS fav, "
        f"count(*) AS n FROM ({sql}) w GROUP BY 1 ORDER BY n DESC LIMIT 50",
        args,
    )
    return {
        str(r.v): {"records": int(r.n), "favourable_percent": 100.0 * int(r.fav) / int(r.n)} for r in frame.itertuples()
    }


def _switch_value(attr: Mapping[str, Any], to: str) -> Any:
    v = attr[to][0]
    return (v[0] + v[1]) / 2 if isinstance(v, list) else v


def _perturbation(
    sub: Subscription,
    raw: Any,
    sql: str,
    params: dict[str, Any],
    attr: Mapping[str, Any],
    favourable: Sequence[Any],
    details: dict[str, Any],
    outcome: MonitorOutcome,
    limit: int,
) -> dict[str, float | None]:
    """Score each group's records again with the attribute switched to the other group."""
    from openmart.scoring.score import score_frame

    s = sub.schema
    feature = attr["feature"]
    cols = ", ".join(f"w.{quote(c)}" for c in s.feature_names)
    a = dict(params)
    group = _group_sql(f"w.{quote(feature)}", attr, a, "pg")
    frame = fetch_frame(
        raw,
        f"SELECT * FROM (SELECT {cols}, {group} AS grp_, w.{quote(s.prediction)} AS pred_ "
        f"FROM ({sql}) w) q WHERE grp_ IS NOT NULL ORDER BY random() LIMIT %(p_lim)s",
        {**a, "p_lim": 2 * limit},
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
    provider = sub.provider()
    try:
        scored = score_frame(sub, switched.loc[:, s.feature_names], provider=provider)
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
