"""``openmart archive``: move closed days of payload and feedback to Parquet, the policy, the manifest."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from openmart.cli.common import OpenmartGroup, emit_json, emit_table, err, progress_bar, state

app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="The archive: whole UTC days of payload and feedback moved to Parquet files, each record in one place."
    "\n\nExample: openmart archive policy credit --after 30 && openmart archive run credit",
)

COLUMNS = ["kind", "day", "rows", "bytes", "status", "location"]


@app.command("run")
def run(
    ctx: typer.Context,
    subscription: str,
    older_than: int | None = typer.Option(
        None, "--older-than", help="Archive whole UTC days older than this many days (default: the policy)."
    ),
    to: Path | None = typer.Option(None, "--to", help="The archive's directory (default: DATA_DIR/archive)."),
    kind: list[str] = typer.Option(["payload", "feedback"], "--kind", help="payload, feedback (repeatable)."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Archive closed days: each day's rows are written to a Parquet file, then deleted from the
    table in the transaction that records the file. Interrupted, it leaves every record in one
    place; run it again to finish."""
    sub = state(ctx).mart.subscriptions.get(subscription)
    with progress_bar("archiving", None) as bar:
        task = bar.add_task("looking for closed days", total=None)

        def on_day(what: str, day: datetime, i: int, total: int) -> None:
            bar.update(task, description=f"archiving {what} {day:%Y-%m-%d}", completed=i, total=total)

        report = sub.archive(older_than_days=older_than, to=to, kinds=kind, on_day=on_day)
        bar.update(task, description="archived", completed=len(report.archived) + report.skipped_days)
    if json_:
        emit_json({"archived": [s.to_dict() for s in report.archived], "rows": report.rows})
        return
    err.print(f"{len(report.archived)} day(s) archived, {report.rows} record(s) moved to Parquet", highlight=False)


@app.command("list")
def list_segments(
    ctx: typer.Context,
    subscription: str,
    all_: bool = typer.Option(False, "--all", help="Include days being written (a run that was interrupted)."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The manifest: one row per archived day and kind, with its file, rows and bytes."""
    segments = state(ctx).mart.subscriptions.get(subscription).archive_segments(complete=not all_)
    if json_:
        emit_json([s.to_dict() for s in segments])
        return
    rows = [{**s.to_dict(), "day": f"{s.period_start:%Y-%m-%d}"} for s in segments]
    emit_table(rows, COLUMNS, title=f"archive of {subscription}")


@app.command("policy")
def policy(
    ctx: typer.Context,
    subscription: str,
    after: int | None = typer.Option(None, "--after", help="Archive whole UTC days older than this many days."),
    off: bool = typer.Option(False, "--off", help="Keep every record hot (no policy)."),
) -> None:
    """Show or set the retention policy: how many days records stay in the hot tables."""
    sub = state(ctx).mart.subscriptions.get(subscription)
    if off or after is not None:
        sub.set_archive_policy(None if off else after)
    days = sub.archive_policy
    err.print(
        f"{subscription}: " + (f"days older than {days} are archived" if days else "every record stays hot"),
        highlight=False,
    )
