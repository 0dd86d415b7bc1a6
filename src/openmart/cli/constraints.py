"""``openmart constraints``: the data-quality baseline in SageMaker Model Monitor's files —
suggest statistics.json and constraints.json from the reference, load a constraints.json (the
data_quality monitor checks it from then on), and show an evaluation's constraint violations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from openmart.cli.common import emit_json, emit_table, err, fail, out, state
from openmart.errors import MonitorError

app = typer.Typer(
    help="Data-quality constraints in SageMaker Model Monitor's files (docs/data-quality.md).",
    no_args_is_help=True,
)


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")  # a missing file: one line, from the group's handler
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{path}: not JSON ({exc.msg} at line {exc.lineno})", code=2)


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


@app.command()
def suggest(
    ctx: typer.Context,
    subscription: str,
    output: Path = typer.Option(Path("."), "--output", "-o", help="Directory to write both files to."),
) -> None:
    """Write the reference's statistics.json and the constraints.json suggested from it (nothing
    is stored; `openmart constraints load` them, after editing if you like).

    Example: openmart constraints suggest credit -o baseline/
    """
    statistics, constraints = state(ctx).mart.subscriptions.get(subscription).constraints.baseline()
    output.mkdir(parents=True, exist_ok=True)
    _write(output / "statistics.json", statistics)
    _write(output / "constraints.json", constraints)
    out.print(f"{output / 'statistics.json'}\n{output / 'constraints.json'}", highlight=False)


@app.command()
def load(
    ctx: typer.Context,
    subscription: str,
    constraints: Path = typer.Argument(..., help="A constraints.json (SageMaker's shape; openmart_range allowed)."),
    statistics: Path | None = typer.Option(None, "--statistics", help="The baseline's statistics.json, kept with it."),
) -> None:
    """Check a constraints.json against the subscription and enable (or update) the data_quality
    monitor with it. A bad or unknown field, or a feature the subscription does not have, is
    refused by its path (exit 2); nothing is stored then.

    Example: openmart constraints load credit baseline/constraints.json
    """
    doc = _read(constraints)
    stats = _read(statistics) if statistics is not None else None
    sub = state(ctx).mart.subscriptions.get(subscription)
    try:
        config = sub.constraints.load(doc, statistics=stats)
    except MonitorError as exc:
        fail(str(exc), code=2)
    n = len(config.parameters["constraints"]["features"])
    out.print(f"data_quality on {subscription!r}: {n} features constrained by {constraints}", highlight=False)


@app.command()
def violations(
    ctx: typer.Context,
    subscription: str,
    evaluation: int | None = typer.Option(None, "--evaluation", help="This evaluation (default: the latest)."),
    json_: bool = typer.Option(False, "--json", help="constraint_violations.json as SageMaker writes it."),
) -> None:
    """The constraint violations of an evaluation (default: the latest that measured data quality)."""
    sub = state(ctx).mart.subscriptions.get(subscription)
    chosen = evaluation if evaluation is not None else sub.constraints.latest_evaluation()
    doc = sub.constraints.violations(chosen)
    if json_:
        emit_json(doc)
        return
    err.print(f"evaluation {chosen} of {subscription}: {len(doc['violations'])} violations", highlight=False)
    if doc["violations"]:
        emit_table(doc["violations"], ["feature_name", "constraint_check_type", "description"])
