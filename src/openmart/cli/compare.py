"""``openmart compare SUB --target production:2 [--baseline validation:2]``: two record sets
compared (drift between them, quality and fairness on each). docs/evaluation-store.md."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from openmart import secrets
from openmart.cli.common import emit_json, err, out, state


def _num(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and v != v) else f"{v:.4g}"


def _metric(row: dict[str, Any]) -> str:
    """The metric's name, with how to read its value: a drift test's p-value is labelled so."""
    kind = row["value_kind"]
    if kind in ("p-value", "distance"):
        return f"{row['metric']} {kind}"
    return str(row["metric"])


def _breached(r: dict[str, Any]) -> str:
    marks = ["BREACHED" if r["breached"] else "", "baseline BREACHED" if r["baseline_breached"] else ""]
    return " ".join(m for m in marks if m)


def _drift_table(rows: list[dict[str, Any]], target: str, baseline: str) -> Table:
    """Drift is one value between the two sets per column: a p-value or a distance, named so."""
    table = Table(title=f"drift: {target} against {baseline}")
    table.add_column("feature", no_wrap=True)
    table.add_column("test", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("drifted")
    for r in rows:
        table.add_row(
            secrets.scrub_known(r["feature"] or "(dataset)"),
            _metric(r),
            _num(r["target"]),
            _num(r["threshold"]),
            _breached(r),
        )
    return table


def _set_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """Quality and fairness were measured on each set: baseline, target, delta (target - baseline)."""
    table = Table(title=title)
    table.add_column("metric", no_wrap=True)
    for c in ("baseline", "target", "delta"):
        table.add_column(c, justify="right", no_wrap=True)
    table.add_column("breached", no_wrap=True)
    for r in rows:
        table.add_row(r["metric"], _num(r["baseline"]), _num(r["target"]), _num(r["delta"]), _breached(r))
    return table


def _tables(monitor: str, rows: list[dict[str, Any]], target: str, baseline: str) -> list[Table]:
    if monitor == "drift":
        return [_drift_table(rows, target, baseline)]
    # fairness: one table per protected attribute and monitored group
    groups = dict.fromkeys((r["feature"], r["group"]) for r in rows)
    tables = []
    for f, g in groups:
        where = f": {secrets.scrub_known(f'{f} (monitored: {g})')}" if f else ""
        tables.append(
            _set_table(f"{monitor}{where}, on each set", [r for r in rows if (r["feature"], r["group"]) == (f, g)])
        )
    return tables


def compare(
    ctx: typer.Context,
    subscription: str,
    target: str = typer.Option(
        ..., "--target", "-t", help="The record set measured: production:2, validation:2, production:1@SINCE..UNTIL."
    ),
    baseline: str | None = typer.Option(
        None, "--baseline", "-b", help="The record set compared with (default: the reference, training of its version)."
    ),
    monitor: list[str] = typer.Option(
        [], "--monitor", "-m", help="drift, quality, fairness (repeat; default: those enabled)."
    ),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Compare two record sets: drift of the target against the baseline, quality and fairness
    measured on both (baseline, target, delta). Stored as a comparison; opens no alert.

    Example: openmart compare loans --target production:2 --baseline production:1
    """
    sub = state(ctx).mart.subscriptions.get(subscription)

    def step(what: str) -> None:
        err.print(what if " " in what else f"comparing: {what}", highlight=False)

    result = sub.compare(target, baseline, monitors=monitor or None, progress=None if json_ else step)
    data = result.to_dict()
    if json_:
        emit_json(data)
        return
    t, b = data["target"], data["baseline"]
    out.print(
        f"{subscription}: target {t['set']} ({t['records']} records) against baseline {b['set']} "
        f"({b['records']} records); evaluations {', '.join(map(str, result.evaluation_ids))}",
        highlight=False,
    )
    for monitor in dict.fromkeys(r["monitor"] for r in data["rows"]):
        rows = [r for r in data["rows"] if r["monitor"] == monitor]
        for table in _tables(monitor, rows, t["set"], b["set"]):
            out.print(table)
        for r in rows:
            if r["note"]:
                where = f"[{r['feature']}]" if r["feature"] else ""
                out.print(f"  {monitor}.{r['metric']}{where}: {r['note']}", highlight=False)
    for n in data["notes"]:
        out.print(f"{n['side']} {n['monitor']}: {n['status'].replace('_', ' ')} ({n['reason']})", highlight=False)
