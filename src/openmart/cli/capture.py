"""`openmart capture`: records set aside and their replay; traffic and ground truth a serving
platform captured itself, into the mart (through a provider that can read them)."""

from __future__ import annotations

import typer

from openmart.cli.common import OpenmartGroup, emit_json, emit_table, err, out, state

app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="""Captured traffic: records set aside, replay, and ingest of what the platform captured.

Ingest needs a binding whose provider can read its platform's capture (others are refused, in
one line saying what the provider supports).

Examples:

  openmart capture rejected churn --json

  openmart capture replay churn

  openmart capture ingest churn --since 2026-11-22T10:00

  openmart capture ground-truth churn s3://my-bucket/ground-truth/churn/
""",
)


def _print(report, what: str, json_: bool) -> None:  # type: ignore[no-untyped-def]
    if json_:
        emit_json(report.to_dict())
        return
    out.print(
        f"{report.ingested} {what} ingested from {report.files} files ({report.events} events); "
        f"{report.skipped_duplicates} already stored; {len(report.errors)} malformed",
        highlight=False,
    )
    for file, line, reason in report.errors:
        err.print(f"  {file}:{line}: {reason}", highlight=False, markup=False)


@app.command()
def ingest(
    ctx: typer.Context,
    subscription: str,
    since: str | None = typer.Option(None, "--since", help="Only events from this time (ISO; naive is UTC)."),
    until: str | None = typer.Option(None, "--until", help="Only events up to this time (ISO; naive is UTC)."),
    source: str | None = typer.Option(
        None,
        "--source",
        "--s3-uri",
        help="Where the capture files are, e.g. an S3 URI (default: where the deployment's capture config says).",
    ),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Read the deployment's captured traffic into the payload table (again: adds nothing); a
    line that cannot be read is named with its file and line, the rest goes in."""
    from openmart.api import parse_time
    from openmart.capture import ingest_capture

    sub = state(ctx).mart.subscriptions.get(subscription)
    report = ingest_capture(sub, source=source, since=parse_time(since), until=parse_time(until))
    _print(report, "payload records", json_)


@app.command("ground-truth")
def ground_truth(
    ctx: typer.Context,
    subscription: str,
    source: str | None = typer.Argument(None, help="Where the ground truth is, e.g. an S3 URI."),
    since: str | None = typer.Option(None, "--since", help="Only files from this time (ISO; naive is UTC)."),
    until: str | None = typer.Option(None, "--until", help="Only files up to this time (ISO; naive is UTC)."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Read ground truth kept on the platform into the feedback table, linked to payload records
    by scoring id (again: adds nothing)."""
    from openmart.api import parse_time
    from openmart.capture import ingest_ground_truth

    sub = state(ctx).mart.subscriptions.get(subscription)
    report = ingest_ground_truth(sub, source, since=parse_time(since), until=parse_time(until))
    _print(report, "feedback records", json_)


@app.command()
def rejected(
    ctx: typer.Context,
    subscription: str,
    limit: int = typer.Option(50, "--limit", min=1, help="Show at most this many (oldest first)."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List captured records set aside (did not fit the schema, or could not be decoded), with
    the reason, and what still waits in the spool or was dropped."""
    from openmart.mart.capture_store import count_set_aside, read_events, read_set_aside
    from openmart.scoring.spool import spool_of

    sub = state(ctx).mart.subscriptions.get(subscription)
    engine = sub.mart.engine
    entries = read_set_aside(engine, sub.id, limit=limit)
    spool = spool_of(sub).stats()
    report = {
        "subscription": subscription,
        "set_aside": count_set_aside(engine, sub.id),
        "spool": {"batches": spool.files, "records": spool.records, "set_aside": spool.set_aside},
        "events": read_events(engine, sub.id),
        "records": [e.to_dict() for e in entries],
    }
    if json_:
        emit_json(report)
        return
    emit_table(
        [{k: r[k] for k in ("id", "scoring_id", "source", "set_aside_at", "reason")} for r in report["records"]],
        ["id", "scoring_id", "source", "set_aside_at", "reason"],
    )
    err.print(
        f"{report['set_aside']} set aside for {subscription!r}; spool: {spool.records} records in {spool.files} "
        f"batches, {spool.set_aside} set aside on disk; {sum(e['counts'].get('dropped', 0) for e in report['events'])} "
        "dropped (see capture_events)",
        highlight=False,
    )


@app.command()
def replay(
    ctx: typer.Context,
    subscription: str,
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Store set-aside records that fit now (after the schema or binding was fixed), exactly once;
    also drains the spool. Exits 1 when some still do not fit."""
    from openmart.scoring.replay import replay as run

    report = run(state(ctx).mart.subscriptions.get(subscription))
    if json_:
        emit_json(report.to_dict())
    else:
        out.print(
            f"{report.replayed} of {report.examined} set-aside entries stored ({report.stored} records); "
            f"{report.still_refused} still refused; {report.spooled_stored} spooled records stored",
            highlight=False,
        )
    if report.still_refused:
        raise typer.Exit(1)
