"""`openmart db`: the mart's schema and where it lives."""

from __future__ import annotations

import typer

from openmart.cli.common import OpenmartGroup, emit_json, out, state

app = typer.Typer(
    cls=OpenmartGroup, help="The data mart: migrations, status, the embedded server.", no_args_is_help=True
)


@app.command()
def upgrade(ctx: typer.Context) -> None:
    """Bring the mart's tables up to the newest migration (also done on every connect)."""
    mart = state(ctx).mart
    mart.upgrade()
    out.print(f"mart at {mart.location.describe()} is at revision {mart.status()['revision']}")


@app.command()
def status(ctx: typer.Context, json_: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Where the mart is, and whether its schema is up to date."""
    info = state(ctx).mart.status()
    if json_:
        emit_json(info)
    else:
        for k, v in info.items():
            out.print(f"{k:11}: {v}")


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the embedded PostgreSQL server (it starts again on the next command)."""
    from openmart.config import Settings
    from openmart.mart.embedded import stop as stop_server

    settings = Settings.from_env()
    stopped = stop_server(settings.embedded_pgdata)
    out.print("stopped" if stopped else f"the embedded server in {settings.embedded_pgdata} was not running")
