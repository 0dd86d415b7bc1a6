"""Explainability: the global view over a window — mean absolute attribution per feature — and
feature-attribution drift against the reference, as SageMaker Clarify measures it: the NDCG of
the window's feature ranking against the reference's (alert below 0.9).

The reference ranking is computed once (explaining a sample of reference records through the
binding) and kept in the monitor's parameters; window records already explained are read back
from the ``explanations`` table, not recomputed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from openmart.context import SubscriptionContext
from openmart.errors import MonitorError
from openmart.mart import monitor_configs, windows
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
from openmart.monitors.config import MonitorConfig, MonitorKind

KIND = MonitorKind.EXPLAINABILITY


class ExplainabilityMonitor(BaseMonitor):
    """Feature-attribution drift: does the model still lean on the features it leaned on?"""

    kind = KIND
    description = "Feature-attribution drift: NDCG of the window's feature ranking against the reference's."
    options = (
        OptionSpec("method", str, "shap", choices=("shap", "lime"), help="How records are explained."),
        OptionSpec("sample", int, 10, low=1, high=10_000, help="Records explained per evaluation (newest first)."),
        OptionSpec(
            "link", str, "identity", choices=("identity", "logit"), help="SHAP's space: the probability or log-odds."
        ),
        thresholds_option(),
        min_records_option(5),
    )
    metrics = (
        MetricSpec(
            "attribution_ndcg",
            Direction.HIGHER_IS_BETTER,
            0.9,
            low=0.0,
            high=1.0,
            help="NDCG of the window's feature ranking against the reference's",
        ),
    )

    def configure(self, ctx: SubscriptionContext, **options: Any) -> MonitorConfig:
        ctx = context_of(ctx)
        config = super().configure(ctx, **options)  # the options and thresholds first
        if not ctx.binding or not ctx.deployment_id:
            raise MonitorError(f"subscription {ctx.name!r} has no binding to score through: explanations need one")
        return config

    def check(self, ctx: SubscriptionContext, values: dict[str, Any]) -> dict[str, Any]:
        return {"method": values["method"], "sample": values["sample"], "link": values["link"]}

    def run(self, ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
        from openmart.explain.engine import global_importance, ndcg
        from openmart.explain.service import background, explain, reference_stats

        ctx = context_of(ctx)
        outcome = MonitorOutcome(str(KIND))
        sample = int(config.parameters.get("sample", 10))
        ids = windows.newest_scoring_ids(conn, window, ctx, sample)
        outcome.records = len(ids)
        if len(ids) < config.min_records:
            outcome.status, outcome.reason = "not_enough_data", f"{len(ids)} records, fewer than {config.min_records}"
            return outcome
        method = str(config.parameters.get("method", "shap"))
        link = str(config.parameters.get("link", "identity"))
        provider = ctx.provider()
        try:
            stats, bg = reference_stats(ctx), background(ctx)
            explained = [
                explain(ctx, sid, method=method, provider=provider, stats=stats, bg=bg, link=link) for sid in ids
            ]
            outcome.scoring_calls = sum(e.scoring_calls or 0 for e in explained if not e.cached)
            reference = _reference_importance(ctx, config, provider, bg, conn)
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


def _reference_importance(
    ctx: SubscriptionContext, config: MonitorConfig, provider: Any, bg: Any, conn: Any
) -> dict[str, float]:
    cached = config.parameters.get("reference_importance")
    if cached:
        return dict(cached)
    from openmart.explain.engine import explain_lime, explain_shap, global_importance
    from openmart.explain.service import output_function

    s = ctx.schema
    ref = windows.reference_rows(conn, ctx, s.feature_names, int(config.parameters.get("sample", 10)))
    for f in s.numeric_features:
        ref[f] = pd.to_numeric(ref[f])
    predictions = provider.score(ctx.deployment_id, ref).predictions  # one batch for all of them
    found = []
    for (_, record), predicted in zip(ref.iterrows(), predictions, strict=True):
        fn = output_function(ctx, provider, predicted)
        explainer = explain_shap if config.parameters.get("method") == "shap" else explain_lime
        kwargs = {"link": config.parameters.get("link", "identity")} if explainer is explain_shap else {}
        found.append(
            explainer(
                record, bg, fn, features=s.feature_names, categorical=s.categorical_features, **kwargs
            ).attributions
        )
    importance = global_importance(found)
    with ctx.engine.begin() as keep:  # computed once, kept with the monitor
        monitor_configs.update_parameters(
            keep, ctx.id, str(KIND), {**config.parameters, "reference_importance": importance}
        )
    return importance


def _top(importance: Mapping[str, float], k: int = 20) -> dict[str, float]:
    return dict(sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:k])
