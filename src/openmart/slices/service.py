"""The entry points: quality by slice with the search, and root cause, over a subscription's
labelled records in a window — one read per relation on the caller's connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openmart.context import SubscriptionContext, context_of
from openmart.errors import ValidationError
from openmart.mart import alerts
from openmart.mart.windows import Window
from openmart.schema import ColumnKind
from openmart.slices import data
from openmart.slices.expressions import Expression, parse
from openmart.slices.metrics import METRICS, metric_for
from openmart.slices.rootcause import RootCause, attribute
from openmart.slices.search import SliceResult, search

#: a baseline: the reference (when it holds labels and predictions) or an earlier window
Baseline = str | Window


def _expressions(ctx: SubscriptionContext, texts: Sequence[str]) -> tuple[list[Expression], list[str]]:
    parsed = [parse(t, ctx.schema) for t in texts]
    names = [f for e in parsed for f in e.features]
    numeric = [f for f in dict.fromkeys(names) if ctx.schema.column(f).kind is ColumnKind.NUMERIC]
    return parsed, numeric


def _load(
    conn: Any,
    ctx: SubscriptionContext,
    window: Window,
    baseline: Baseline | None,
    features: list[str],
    bins: int,
    raw: list[str],
) -> tuple[data.Coded, data.Coded | None, data.Binning]:
    """Expression features are fetched raw as well as binned; categorical ones are always fetched."""
    columns = list(dict.fromkeys([*features, *raw]))
    relation = data.labelled(ctx, window, columns)
    binning = data.binning(conn, ctx, features, bins, relation)
    # features named only by an expression still need their categories (or raw numbers)
    extra_cat = [f for f in raw if f not in features and ctx.schema.column(f).kind is ColumnKind.CATEGORICAL]
    binning = data.Binning(binning.edges, [*binning.categorical, *extra_cat], binning.source)
    tables = [data.fetch(conn, ctx, relation, binning, raw)]
    if baseline is not None:
        base_rel = data.reference(ctx) if baseline == "reference" else data.labelled(ctx, baseline, columns)  # type: ignore[arg-type]
        tables.append(data.fetch(conn, ctx, base_rel, binning, raw))
    coded = data.encode(tables, binning, raw)
    # features added only for an expression are not sliced by
    for c in coded:
        c.features = [f for f in c.features if f.name in features]
    return coded[0], (coded[1] if baseline is not None else None), binning


def slices(
    ctx: SubscriptionContext | Any,
    conn: Any,
    window: Window,
    *,
    metric: str | None = None,
    min_share: float = 0.01,
    min_records: int = 30,
    top: int = 10,
    alpha: float = 0.05,
    bins: int = data.DEFAULT_BINS,
    expressions: Sequence[str] = (),
    pairs: bool = False,
    features: Sequence[str] | None = None,
    baseline: Baseline | None = None,
) -> SliceResult:
    """Quality by slice over the window's labelled records, the slices ranked by impact; with a
    ``baseline``, the slices whose metric dropped from the baseline instead of those worse than
    the rest."""
    ctx = context_of(ctx)
    spec = metric_for(ctx.schema.problem_type, metric)
    names = data.feature_names(ctx.schema, features)
    parsed, raw = _expressions(ctx, expressions)
    coded, base, binning = _load(conn, ctx, window, baseline, names, bins, raw)
    result = search(
        coded,
        spec,
        positive=data.positive_class(ctx.schema, coded if coded.n else (base or coded)),
        min_share=min_share,
        min_records=min_records,
        top=top,
        alpha=alpha,
        pairs=pairs,
        expressions=parsed,
        baseline=base,
    )
    result.settings.update({"bins": bins, "edges_from": binning.source, "window": window.to_dict()})
    if baseline is not None:
        result.settings["baseline"] = baseline if isinstance(baseline, str) else baseline.to_dict()
    return result


def root_cause(
    ctx: SubscriptionContext | Any,
    conn: Any,
    window: Window,
    *,
    baseline: Baseline,
    metric: str | None = None,
    bins: int = data.DEFAULT_BINS,
    features: Sequence[str] | None = None,
) -> RootCause:
    """Rank the features by how much of the metric's change from ``baseline`` their drift explains.
    ``metric`` None: the quality metric of the subscription's newest unresolved quality alert (the
    breached metric, when the slice metrics have it), else accuracy or MAE."""
    ctx = context_of(ctx)
    alert_id = None
    if metric is None:
        metric, alert_id = breached_metric(conn, ctx)
    spec = metric_for(ctx.schema.problem_type, metric)
    names = data.feature_names(ctx.schema, features)
    coded, base, binning = _load(conn, ctx, window, baseline, names, bins, [])
    assert base is not None
    if base.n == 0:
        where = (
            "the reference holds no record with both a label and a prediction"
            if baseline == "reference"
            else ("the baseline window holds no labelled record with a prediction")
        )
        raise ValidationError(f"root cause needs a labelled baseline: {where} (give an earlier window as the baseline)")
    if coded.n == 0:
        raise ValidationError("root cause: the window holds no labelled record with a prediction")
    found = attribute(
        coded,
        base,
        spec,
        positive=data.positive_class(ctx.schema, base),
        baseline_name=baseline if isinstance(baseline, str) else "window",
    )
    found.settings.update({"bins": bins, "edges_from": binning.source, "window": window.to_dict()})
    found.settings["baseline"] = baseline if isinstance(baseline, str) else baseline.to_dict()
    if alert_id is not None:
        found.settings["metric_from_alert"] = alert_id
    return found


def breached_metric(conn: Any, ctx: SubscriptionContext) -> tuple[str | None, int | None]:
    """The metric of the newest unresolved quality alert that the slice metrics can measure, and
    the alert's id; (None, None) when there is none."""
    usable = {name for name, m in METRICS.items() if ctx.schema.problem_type in m.problems}
    found = [
        a
        for a in alerts.list_alerts(conn, status="all", subscription=ctx.name)
        if a.monitor == "quality" and str(a.status) != "resolved" and a.metric in usable
    ]
    if not found:
        return None, None
    newest = max(found, key=lambda a: a.id)
    return newest.metric, newest.id
