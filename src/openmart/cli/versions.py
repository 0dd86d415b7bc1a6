"""``openmart versions``: a subscription's model versions, and starting a new one."""

from __future__ import annotations

import typer

from openmart.cli.common import OpenmartGroup, emit_json, emit_table, err, state

app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="Model versions: records carry one; records written without one belong to the current version."
    "\n\nExample: openmart versions start churn 2 --note 'retrained on November'",
)

COLUMNS = ["version", "source", "started", "current", "payload", "feedback", "training", "validation"]


@app.command("list")
def list_versions(
    ctx: typer.Context,
    subscription: str,
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Every version, oldest first: where it came from (subscribe, migration, user, records),
    when it started, which is current, and its records (payload, feedback, labelled sets)."""
    rows = state(ctx).mart.subscriptions.get(subscription).versions.summary()
    if json_:
        emit_json(rows)
        return
    shown = [
        {**r, "current": "*" if r["current"] else "", "started": (r["started_at"] or "")[:16].replace("T", " ")}
        for r in rows
    ]
    emit_table(shown, COLUMNS, title=f"model versions of {subscription}")


@app.command("start")
def start(
    ctx: typer.Context,
    subscription: str,
    version: str = typer.Argument(..., help="The new current version (e.g. the model's asset revision)."),
    note: str | None = typer.Option(None, "--note", help="Why: what changed in this version."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Make VERSION the current version: records captured, scored or logged from now on without a
    version of their own belong to it (a running proxy applies it to its next batch)."""
    new = state(ctx).mart.subscriptions.get(subscription).versions.start(version, note=note)
    if json_:
        emit_json({"subscription": subscription, "version": version, "current": True, "new": new})
    else:
        what = "started" if new else "is current again"
        err.print(f"version {version!r} of {subscription!r} {what}", highlight=False)
