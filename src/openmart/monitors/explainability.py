"""Explainability: the global view over a window — mean absolute attribution per feature — and
feature-attribution drift against the reference, as SageMaker Clarify measures it: the NDCG of
the window's feature ranking against the reference's (alert below 0.9).

The reference ranking is computed once (explaining a sample of reference records through the
binding) and kept in the monitor's parameters; window records already explained are read back
from the ``explanations`` table, not recomputed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from openmart.errors import MonitorError
from openmart.evaluation.results import Measurement, MonitorOutcome
from openmart.evaluation.window import Window, fetch_frame
from openmart.mart import models
from openmart.monitors.config import MonitorConfig, MonitorKind, Threshold, ThresholdType

if TYPE_CHECKING:
    from openmart.api import Subscription

KIND = MonitorKind.EXPLAINABILITY


def configure(
    sub: Subscription,
    *,
    method: str = "shap",
    sample: int = 10,
    thresholds: Sequence[Any] = (),
    min_records: int = 5,
    **unknown: Any,
) -> MonitorConfig:
    if unknown:
        raise MonitorError(f"explainability monitor: unknown options {sorted(unknown)}")
    if method not in ("shap", "lime"):
        raise MonitorError(f"explainability method {method!r}: choose shap or lime")
    if not sub.binding or not sub.deployment_id:
        raise MonitorError(f"subscription {sub.name!r} has no binding to score through: explanations need one")
    value = 0.9
    for t in thresholds:
        text = t if isinstance(t, str) else f"{t['metric']}={t['value']}"
        name, _, number = text.partition("=")
        if name.strip() not in ("attribution_ndcg", "ndcg"):
            raise MonitorError(f"explainability threshold {text!r}: only attribution_ndcg=VALUE")
        value = float(number)
    return MonitorConfig(
        KIND,
        {"method": method, "sample": int(sample)},
        [Threshold("attribution_ndcg", ThresholdType.LOWER_LIMIT, value)],
        int(min_records),
    )


def _reference_importance(
    sub: Subscription, config: MonitorConfig, provider: Any, stats: Any, bg: Any
) -> dict[str, float]:
    cached = config.parameters.get("reference_importance")
    if cached:
        return dict(cached)
    from openmart.explain.engine import explain_lime, explain_shap, global_importance
    from openmart.explain.service import _typed, output_function

    ref = _typed(sub, sub.reference.read(limit=int(config.parameters.get("sample", 10))))
    predictions = provider.score(sub.deployment_id, ref).predictions  # one batch for all of them
    found = []
    for (_, record), predicted in zip(ref.iterrows(), predictions, strict=True):
        fn = output_function(sub, provider, predicted)
        explainer = explain_shap if config.parameters.get("method") == "shap" else explain_lime
        kwargs = {"nsamples": 2 * len(sub.schema.feature_names) + 512} if explainer is explain_shap else {}
        found.append(
            explainer(
                record, bg, fn, features=sub.schema.feature_names, categorical=sub.schema.categorical_features, **kwargs
            ).attributions
        )
    importance = global_importance(found)
    with sub.mart.engine.begin() as conn:  # computed once, kept with the monitor
        conn.execute(
            sa.update(models.Monitor)
            .where(models.Monitor.subscription_id == sub.id, models.Monitor.kind == str(KIND))
            .values(parameters={**config.parameters, "reference_importance": importance})
        )
    return importance


def run(sub: Subscription, config: MonitorConfig, window: Window, raw: Any) -> MonitorOutcome:
    from openmart.explain.engine import global_importance, ndcg
    from openmart.explain.service import background, explain, reference_stats

    outcome = MonitorOutcome(str(KIND))
    sample = int(config.parameters.get("sample", 10))
    sql, params = window.payload_sql(sub.payload.table, "scoring_id, scoring_timestamp")
    ids = fetch_frame(
        raw,
        f"SELECT scoring_id FROM ({sql}) w ORDER BY scoring_timestamp DESC LIMIT %(e_n)s",
        {**params, "e_n": sample},
    )["scoring_id"].tolist()
    outcome.records = len(ids)
    if len(ids) < config.min_records:
        outcome.status, outcome.reason = "not_enough_data", f"{len(ids)} records, fewer than {config.min_records}"
        return outcome
    method = str(config.parameters.get("method", "shap"))
    provider = sub.provider()
    try:
        stats, bg = reference_stats(sub), background(sub)
        explained = [explain(sub, sid, method=method, provider=provider, stats=stats, bg=bg) for sid in ids]
        outcome.scoring_calls = sum(e.scoring_calls or 0 for e in explained if not e.cached)
        reference = _reference_importance(sub, config, provider, stats, bg)
    finally:
        provider.close()
    current = global_importance([e.attributions for e in explained])
    score = ndcg(reference, current)
    outcome.measurements.append(
        Measurement.judged(
            str(KIND),
            "attribution_ndcg",
            score,
            config.threshold("attribution_ndcg"),
            details={
                "reference_importance": _top(reference),
                "current_importance": _top(current),
                "explained": len(ids),
            },
        )
    )
    return outcome


def _top(importance: Mapping[str, float], k: int = 20) -> dict[str, float]:
    return dict(sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:k])
