"""`openmart quickstart` and `openmart report`."""

from __future__ import annotations

from pathlib import Path

import typer

from openmart import arguments
from openmart.cli.common import emit_json, emit_table, out, progress_bar, state


def quickstart(
    ctx: typer.Context,
    records: int = typer.Option(2000, "--records", "-n", help="How many requests to send through the proxy."),
    report: Path = typer.Option(Path("openmart-report.html"), "--report", help="Where to write the HTML report."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Run the whole story on the embedded mart: train, deploy, bind, subscribe, send traffic
    through the capture proxy (drift and a group bias appear halfway), log feedback, monitor,
    evaluate, and write an HTML report. Safe to run again.

    Example: openmart quickstart --records 2000
    """
    from openmart import quickstart as story

    records = arguments.integer(records, "--records", minimum=100, maximum=1_000_000)
    mart = state(ctx).mart
    with progress_bar("quickstart", None) as bar:
        task = bar.add_task("starting", total=None)

        def step(text: str, done: int, total: int) -> None:
            bar.update(task, description=text, completed=done, total=total or None)

        result = story.run(
            mart, records=records, report=report, workdir=mart.settings.data_dir / "quickstart", step=step
        )
    sub = mart.subscriptions.get(result.subscription)
    rows = story.summary_rows(sub, result.final)
    if json_:
        emit_json(
            {
                "subscription": result.subscription,
                "sent": result.sent,
                "stored": result.stored,
                "feedback": result.feedback,
                "report": str(result.report),
                "evaluations": [e.to_dict() for e in result.evaluations],
            }
        )
        return
    out.print(
        f"sent {result.sent} requests through the capture proxy; {result.stored} payload records and "
        f"{result.feedback} feedback records stored in subscription {result.subscription!r}"
    )
    emit_table(
        rows,
        ["monitor", "metric", "feature", "value", "limit", "why"],
        title="what breached in the last evaluation, and why",
    )
    out.print(f"report: {result.report.resolve() if result.report else '-'}")
    out.print(
        f"next: openmart evaluate {result.subscription} --json | openmart alerts | "
        f"openmart report {result.subscription}",
        highlight=False,
    )


def report(
    ctx: typer.Context,
    subscription: str,
    out_file: Path | None = typer.Option(None, "--out", "-o", help="The HTML file to write."),
) -> None:
    """Write a self-contained HTML report (charts drawn inline; opens without a network).

    Example: openmart report credit --out credit.html
    """
    from openmart.report import write_report

    sub = state(ctx).mart.subscriptions.get(subscription)
    path = write_report(sub, out_file)
    out.print(f"report written to {path.resolve()}")
