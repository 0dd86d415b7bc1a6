"""``openmart slices SUB`` (quality by slice, the slices that cost the most) and ``openmart
root-cause SUB`` (the features whose drift best explains a metric's change). docs/slices.md."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from openmart import secrets
from openmart.cli.common import emit_json, err, out, state

WINDOW = {
    "since": typer.Option(None, "--since", help="Records from this time (ISO 8601; naive is UTC)."),
    "until": typer.Option(None, "--until", help="Records before this time."),
    "last": typer.Option(None, "--last", help="Only the newest N labelled records."),
}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    # the slice column wraps instead of being cut: a slice's text is the answer
    table = Table(title=title)
    longest = max((len(str(r.get(columns[0]))) for r in rows), default=10)
    for c in columns:
        # the first column (a slice, a feature) keeps its width, up to half a narrow terminal
        width = min(longest, max(36, out.width // 2)) if c == columns[0] else None
        table.add_column(c, overflow="fold", min_width=width)
    for r in rows:
        table.add_row(*(secrets.scrub_known(_fmt(r.get(c))) for c in columns))
    out.print(table)


def _status(message: str) -> Any:
    return err.status(message) if err.is_terminal else _Quiet()


class _Quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def slices(
    ctx: typer.Context,
    subscription: str,
    metric: str | None = typer.Option(
        None, "--metric", help="accuracy (default), error_rate, precision, recall, f1; mae (default), mse, rmse."
    ),
    min_support: float = typer.Option(
        0.01, "--min-support", help="The smallest share of the records a slice may hold."
    ),
    min_records: int = typer.Option(30, "--min-records", help="The fewest records a slice may hold."),
    top: int = typer.Option(10, "--top", help="How many slices to show."),
    alpha: float = typer.Option(0.05, "--alpha", help="False discovery rate (Benjamini-Hochberg)."),
    bins: int = typer.Option(10, "--bins", help="Bins per numeric feature (the reference's quantiles)."),
    where: list[str] = typer.Option([], "--where", help="A slice of your own, e.g. \"age > 50 and sex == 'F'\"."),
    pairs: bool = typer.Option(False, "--pairs", help="Also search two-feature conjunctions."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="'reference': slices whose metric dropped from the reference's."
    ),
    since: str | None = WINDOW["since"],
    until: str | None = WINDOW["until"],
    last: int | None = WINDOW["last"],
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Quality by slice (categories, numeric bins, --where expressions) and the slices that cost the
    most: ranked by impact (share x shortfall against the rest), significant after the
    Benjamini-Hochberg correction."""
    sub = state(ctx).mart.subscriptions.get(subscription)
    with _status("searching slices"):
        result = sub.slices(
            metric=metric,
            since=since,
            until=until,
            last=last,
            min_support=min_support,
            min_records=min_records,
            top=top,
            alpha=alpha,
            bins=bins,
            expressions=where,
            pairs=pairs,
            baseline=baseline,
        )
    data = result.to_dict()
    if json_:
        emit_json(data)
        return
    against = result.against
    head = f"{subscription}: {result.metric} {_fmt(result.overall)} over {result.records:,} labelled records"
    if result.baseline_overall is not None:
        head += f" (baseline {_fmt(result.baseline_overall)})"
    out.print(head + f"; {data['tested']:,} slices tested", highlight=False)
    cols = ["slice", "records", "value", against, "impact", "q_value"]
    if data["slices"]:
        _table(data["slices"], cols, title=f"slices worse than the {against}, by impact")
    else:
        out.print("no slice is significantly worse", highlight=False)
    if data["expressions"]:
        _table(data["expressions"], ["slice", "records", "value", against, "p_value"])


def root_cause(
    ctx: typer.Context,
    subscription: str,
    metric: str | None = typer.Option(None, "--metric", help="As for 'openmart slices'."),
    baseline_since: str | None = typer.Option(
        None, "--baseline-since", help="A labelled baseline window instead of the reference."
    ),
    baseline_until: str | None = typer.Option(None, "--baseline-until", help="The baseline window's end."),
    bins: int = typer.Option(10, "--bins", help="Bins per numeric feature (the reference's quantiles)."),
    since: str | None = WINDOW["since"],
    until: str | None = WINDOW["until"],
    last: int | None = WINDOW["last"],
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The features whose drift best explains the metric's change from the baseline (the
    reference, when it holds predictions): the metric expected if only that feature had shifted."""
    sub = state(ctx).mart.subscriptions.get(subscription)
    with _status("attributing"):
        found = sub.root_cause(
            metric=metric,
            since=since,
            until=until,
            last=last,
            baseline_since=baseline_since,
            baseline_until=baseline_until,
            bins=bins,
        )
    data = found.to_dict()
    if json_:
        emit_json(data)
        return
    out.print(
        f"{subscription}: {found.metric} {_fmt(found.baseline_value)} in the {found.baseline} "
        f"({found.baseline_records:,} records) -> {_fmt(found.current_value)} ({found.records:,} records)",
        highlight=False,
    )
    _table(data["features"], ["feature", "explained", "explained_share", "psi", "most_grown"])
