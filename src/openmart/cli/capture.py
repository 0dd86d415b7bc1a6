"""`openmart capture`: traffic a platform captured itself (SageMaker Data Capture), into the mart."""

from __future__ import annotations

import typer

from openmart.cli.common import OpenmartGroup, emit_json, err, out, state

app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="""Ingest SageMaker Data Capture and ground truth.

Examples:

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
    since: str | None = typer.Option(None, "--since", help="Only events from this time (ISO)."),
    s3_uri: str | None = typer.Option(
        None, "--s3-uri", help="Where the capture files are (default: the endpoint's DataCaptureConfig)."
    ),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Read the endpoint's capture files from S3 into the payload table (again: adds nothing)."""
    from openmart.api import parse_time
    from openmart.capture.sagemaker import ingest_capture

    sub = state(ctx).mart.subscriptions.get(subscription)
    _print(ingest_capture(sub, s3_uri=s3_uri, since=parse_time(since)), "payload records", json_)


@app.command("ground-truth")
def ground_truth(
    ctx: typer.Context,
    subscription: str,
    s3_uri: str,
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Read ground truth in SageMaker's merge format into the feedback table, linked by id."""
    from openmart.capture.sagemaker import ingest_ground_truth

    sub = state(ctx).mart.subscriptions.get(subscription)
    _print(ingest_ground_truth(sub, s3_uri), "feedback records", json_)
