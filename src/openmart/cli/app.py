"""The ``openmart`` command: one Typer sub-app per group, a thin layer over the Python API."""

from __future__ import annotations

import typer

from openmart.cli import (
    alerting,
    archive,
    bind,
    capture,
    compare,
    constraints,
    db,
    explain,
    keys,
    monitor,
    performance,
    records,
    scoring,
    secrets,
    serve,
    slices,
    story,
    subscribe,
    versions,
)
from openmart.cli.common import CliContext, OpenmartGroup

app = typer.Typer(
    cls=OpenmartGroup,
    name="openmart",
    help="openmart: monitor deployed machine-learning models (quality, fairness, drift, explanations).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        envvar="OPENMART_DATABASE_URL",
        help="PostgreSQL URL; unset: the embedded mart.",
        show_envvar=True,
    ),
    schema: str = typer.Option(
        "openmart", "--schema", envvar="OPENMART_SCHEMA", help="PostgreSQL schema holding the mart.", show_envvar=True
    ),
) -> None:
    ctx.obj = CliContext(database_url=database_url, schema=schema)
    ctx.call_on_close(ctx.obj.close)


app.add_typer(db.app, name="db")
app.add_typer(bind.app, name="bind")
app.add_typer(secrets.app, name="secrets")
app.add_typer(subscribe.app, name="subscribe")
app.add_typer(records.payload_app, name="payload")
app.add_typer(records.feedback_app, name="feedback")
app.add_typer(records.reference_app, name="reference")
app.command("records")(records.records)
app.command("deployments")(scoring.deployments)
app.command("score")(scoring.score)
app.command("proxy")(scoring.proxy)
app.add_typer(monitor.app, name="monitor")
app.command("evaluate")(monitor.evaluate)
app.command("measurements")(monitor.measurements)
app.command("evaluations")(monitor.evaluations)
monitor.alerts_app.add_typer(alerting.channel_app, name="channel")
monitor.alerts_app.command("deliveries")(alerting.deliveries)
monitor.alerts_app.command("retry")(alerting.retry)
monitor.alerts_app.command("deliver")(alerting.deliver)
app.add_typer(monitor.alerts_app, name="alerts")
app.command("quickstart")(story.quickstart)
app.command("report")(story.report)
app.command("explain")(explain.explain)
app.add_typer(capture.app, name="capture")
app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")
app.command("performance")(performance.performance)
app.command("slices")(slices.slices)
app.command("root-cause")(slices.root_cause)
app.add_typer(constraints.app, name="constraints")
app.command("compare")(compare.compare)
app.add_typer(versions.app, name="versions")
app.add_typer(archive.app, name="archive")


def main() -> None:
    app(prog_name="openmart")


if __name__ == "__main__":
    main()
