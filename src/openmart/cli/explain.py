"""`openmart explain`: per-transaction explanations through the binding."""

from __future__ import annotations

import typer

from openmart import arguments
from openmart.cli.common import emit_json, emit_table, err, fail, out, progress_bar, state


def explain(
    ctx: typer.Context,
    subscription: str,
    scoring_id: str | None = typer.Argument(None, help="The payload record to explain."),
    method: str = typer.Option("shap", "--method", "-m", help="shap (Kernel SHAP) or lime."),
    last: int | None = typer.Option(None, "--last", help="Explain the newest N payload records instead."),
    refresh: bool = typer.Option(False, "--refresh", help="Compute again even when stored."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
    link: str = typer.Option(
        "identity", "--link", help="SHAP's space: identity (the probability or output) or logit (log-odds)."
    ),
    tolerance: float | None = typer.Option(
        None, "--tolerance", help="SHAP's error target: largest standard error / largest attribution (0.05)."
    ),
    background_size: int | None = typer.Option(
        None, "--background-size", help="Reference rows drawn at random as SHAP's background (100)."
    ),
) -> None:
    """Explain payload records: feature attributions (ranked) and the contrastive answer — the
    smallest change that flips the prediction, and what must stay as it is.

    Examples: openmart explain credit 6f1c...-9a2e --method shap; openmart explain credit --last 20;
    openmart explain credit --last 5 --link logit --tolerance 0.02
    """
    from functools import partial

    from openmart.explain.service import BACKGROUND_ROWS, LINKS, background, reference_stats
    from openmart.explain.service import explain as explain_one
    from openmart.explain.shapley import DEFAULT_TOLERANCE

    method = arguments.choice(method, "--method", ("shap", "lime"))
    link = arguments.choice(link, "--link", LINKS)
    tolerance = (
        DEFAULT_TOLERANCE
        if tolerance is None
        else arguments.number(tolerance, "--tolerance", minimum=0, maximum=0.5, exclusive_minimum=True)
    )
    background_size = (
        BACKGROUND_ROWS
        if background_size is None
        else arguments.integer(background_size, "--background-size", minimum=1, maximum=100_000)
    )
    run = partial(explain_one, link=link, tolerance=tolerance, background_size=background_size)
    last = arguments.optional_integer(last, "--last", minimum=1)
    if (scoring_id is None) == (last is None):
        fail("give a SCORING_ID or --last N", code=2)
    sub = state(ctx).mart.subscriptions.get(subscription)
    if scoring_id is not None:
        result = run(sub, scoring_id, method=method, refresh=refresh)
        if json_:
            emit_json(result.to_dict())
            return
        _print(result)
        return
    ids = sub.payload.read(limit=last, newest_first=True, columns=["scoring_id"])["scoring_id"].tolist()
    provider = sub.provider()
    results = []
    try:
        stats, bg = reference_stats(sub), background(sub, background_size)
        with progress_bar("explaining", len(ids)) as bar:
            task = bar.add_task("explaining", total=len(ids))
            for sid in ids:
                results.append(run(sub, sid, method=method, refresh=refresh, provider=provider, stats=stats, bg=bg))
                bar.advance(task)
    finally:
        provider.close()
    if json_:
        emit_json([r.to_dict() for r in results])
    else:
        emit_table(
            [
                {
                    "scoring_id": r.scoring_id,
                    "prediction": r.prediction,
                    "top features": ", ".join(f"{f} {w:+.3f}" for f, w in r.ranked()[:3]),
                    "flip": _flip(r.contrastive),
                }
                for r in results
            ],
            ["scoring_id", "prediction", "top features", "flip"],
        )
    err.print(f"{len(results)} records explained ({method})")


def _flip(contrastive: dict | None) -> str:
    if not contrastive:
        return ""
    if not contrastive["found"]:
        return "no flip found within the budget"
    return "; ".join(f"{f}: {c['from']} -> {c['to']}" for f, c in contrastive["changes"].items())


def _print(result) -> None:  # type: ignore[no-untyped-def]
    out.print(
        f"scoring_id {result.scoring_id}: prediction {result.prediction} "
        f"(base value {result.base_value:.4f}{', stored' if result.cached else ''})",
        highlight=False,
    )
    est = result.estimate
    if est:
        out.print(
            f"in {est['link']} space, {est['estimator']}: largest standard error {est['max_std_error']:.2g} "
            f"({'met' if est['converged'] else 'NOT met'}: target {est['tolerance']:g} x the largest attribution), "
            f"{est['rows']} rows scored, background {est['background_rows']} reference rows",
            highlight=False,
        )
    emit_table([{"feature": f, "attribution": f"{w:+.4f}"} for f, w in result.ranked()], ["feature", "attribution"])
    c = result.contrastive
    if c:
        out.print(f"to flip it: {_flip(c)}" + (f" (output {c['new_output']:.3f})" if c["found"] else ""))
        if c["keep"]:
            out.print(f"must stay as they are to keep it: {', '.join(c['keep'])}")
