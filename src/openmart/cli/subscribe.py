"""`openmart subscribe`: deployments under monitoring."""

from __future__ import annotations

from pathlib import Path

import typer

from openmart.cli.common import (
    ENCODING_HELP,
    SHORT_HELP,
    OpenmartGroup,
    emit_json,
    emit_table,
    err,
    open_input,
    out,
    split_list,
    state,
)
from openmart.mart.identifiers import validate_name
from openmart.monitors.config import number_or_text
from openmart.schema import ProblemType

app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="""Subscriptions: deployments under monitoring.

Example:

  openmart subscribe add churn --binding web --deployment /predict --reference train.csv \\
      --label churn --problem binary --categorical contract,payment
""",
)


@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for the subscription."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Reference (training) data: CSV, Parquet, JSONL."),
    label: str = typer.Option(..., "--label", help="The label column."),
    problem: ProblemType = typer.Option(..., "--problem", help="binary, multiclass or regression."),
    binding: str | None = typer.Option(None, "--binding", "-b", help="The binding that scores it."),
    deployment: str | None = typer.Option(None, "--deployment", "-d", help="The deployment on that binding."),
    categorical: str | None = typer.Option(None, "--categorical", help="Comma-separated categorical features."),
    numeric: str | None = typer.Option(None, "--numeric", help="Comma-separated numeric features (override)."),
    meta: str | None = typer.Option(
        None,
        "--meta",
        help="Comma-separated non-feature columns to keep (e.g. a protected attribute the model does not see).",
    ),
    prediction: str = typer.Option("prediction", "--prediction", help="The prediction column."),
    probability: str = typer.Option("probability", "--probability", help="The probability column."),
    class_labels: str | None = typer.Option(None, "--class-labels", help="Comma-separated class labels, in order."),
    asset_revision: str | None = typer.Option(None, "--revision", help="The model version."),
    encoding: str | None = typer.Option(None, "--encoding", help=ENCODING_HELP),
    allow_short_rows: bool = typer.Option(False, "--allow-short-rows", help=SHORT_HELP),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Subscribe a deployment; its schema is inferred from the reference data."""
    validate_name(name, "subscription")  # before the file: an error about the file names the file
    source = open_input(reference, encoding, allow_short_rows=allow_short_rows)
    with source.located():
        frame = source.read()
    labels = None
    if class_labels:
        labels = [number_or_text(v) for v in split_list(class_labels)]
    with source.located(whole_file=True):  # its columns, or a refused reference record by its line
        sub = state(ctx).mart.subscriptions.add(
            name,
            reference=frame,
            label=label,
            problem_type=problem,
            binding=binding,
            deployment=deployment,
            categorical=split_list(categorical),
            numeric=split_list(numeric),
            meta=split_list(meta),
            prediction=prediction,
            probability=probability,
            class_labels=labels,
            asset_revision=asset_revision,
        )
    if json_:
        emit_json(sub.to_dict())
    else:
        out.print(
            f"subscription {sub.name!r} added: {len(sub.schema.features)} features, "
            f"{len(frame)} reference records; tables {sub.payload.table}, {sub.feedback.table}, "
            f"{sub.reference.table}"
        )


@app.command("list")
def list_(ctx: typer.Context, json_: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List subscriptions."""
    rows = [s.to_dict() for s in state(ctx).mart.subscriptions.list()]
    if json_:
        emit_json(rows)
    else:
        emit_table(
            [{**r, "problem": r["schema"]["problem_type"], "features": len(r["schema"]["features"])} for r in rows],
            ["name", "binding", "deployment", "problem", "features", "created_at"],
        )


@app.command()
def show(
    ctx: typer.Context, name: str, json_: bool = typer.Option(False, "--json", help="Machine-readable output.")
) -> None:
    """Show a subscription and its schema."""
    sub = state(ctx).mart.subscriptions.get(name)
    data = sub.to_dict()
    if json_:
        emit_json(data)
        return
    s = sub.schema
    out.print(
        f"name       : {sub.name}\nbinding    : {sub.binding}\ndeployment : {sub.deployment_id}\n"
        f"problem    : {s.problem_type}\nlabel      : {s.label}\nprediction : {s.prediction}\n"
        f"probability: {s.probability}\nclasses    : {list(s.class_labels or [])}\n"
        f"tables     : {data['tables']}",
        highlight=False,
    )
    emit_table(
        [{"feature": c.name, "kind": str(c.kind)} for c in s.features]
        + [{"feature": c.name, "kind": f"{c.kind} (meta)"} for c in s.meta],
        ["feature", "kind"],
    )


@app.command("add-classes")
def add_classes(
    ctx: typer.Context,
    name: str,
    labels: str = typer.Argument(..., help="Comma-separated classes the model now answers."),
) -> None:
    """Add classes a multiclass model now answers (then `openmart capture replay NAME`).

    Example: openmart subscribe add-classes triage urgent,deferred
    """
    sub = state(ctx).mart.subscriptions.add_classes(name, split_list(labels))
    err.print(f"{name!r} classes: {list(sub.schema.class_labels or ())}", highlight=False)


@app.command()
def remove(ctx: typer.Context, name: str) -> None:
    """Remove a subscription and its record tables."""
    state(ctx).mart.subscriptions.remove(name)
    out.print(f"subscription {name!r} removed")
