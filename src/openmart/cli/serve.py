"""``openmart serve``: the monitoring service (REST API, OpenScale's routes, the scheduler, the
alert sender)."""

from __future__ import annotations

import os

import typer

from openmart import arguments
from openmart.cli.common import err, state
from openmart.errors import ValidationError


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", "-p", help="Port to listen on (1-65535)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes (each with its own connections)."),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Answer every route without a key, as admin. For local use only."
    ),
    scheduler: bool = typer.Option(
        True, "--scheduler/--no-scheduler", help="Run monitors when their schedule says they are due."
    ),
    scheduler_interval: float = typer.Option(
        30.0, "--scheduler-interval", help="Seconds between the scheduler's looks for due monitors."
    ),
    deliver: bool = typer.Option(
        True, "--deliver/--no-deliver", help="Send alert messages (webhook, email) as they come due."
    ),
    deliver_interval: float = typer.Option(
        5.0, "--deliver-interval", help="Seconds between the alert sender's looks for due messages."
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level: debug, info, warning, error."),
) -> None:
    """Serve openmart's REST API (/api/v1, documented at /docs) and OpenScale's V1 routes.

    Every route needs an API key (openmart keys create --scope read|write|admin) unless
    --no-auth is given. Monitors run on their schedules (openmart monitor schedule), and alert
    messages are sent as they come due (docs/alerts.md); several serve processes on one mart never
    run the same evaluation, nor send the same message, twice.

    Example: openmart serve --port 8000 --workers 2
    """
    import uvicorn

    from openmart.service import app as service_app

    port = arguments.port(port, "--port")
    workers = arguments.integer(workers, "--workers", minimum=1)
    interval = arguments.number(scheduler_interval, "--scheduler-interval", minimum=0, exclusive_minimum=True)
    send_interval = arguments.number(deliver_interval, "--deliver-interval", minimum=0, exclusive_minimum=True)
    if not host.strip():
        raise ValidationError(f"--host must be an address to listen on, e.g. 127.0.0.1 (got {host!r})")
    cli = state(ctx)
    mart = cli.mart  # opened (and migrated) once here, before the workers start
    if no_auth:
        err.print(
            "[bold yellow]warning:[/bold yellow] --no-auth: every route answers without a key, as admin. "
            "Anyone who can reach this port can read and change the mart.",
            highlight=False,
        )
    elif not mart.keys.list():
        err.print("no API key yet: make one with `openmart keys create NAME --scope admin`", highlight=False)
    if cli.database_url:
        os.environ["OPENMART_DATABASE_URL"] = cli.database_url
    os.environ["OPENMART_SCHEMA"] = cli.schema
    os.environ[service_app.ENV_AUTH] = "0" if no_auth else "1"
    os.environ[service_app.ENV_SCHEDULER] = "1" if scheduler else "0"
    os.environ[service_app.ENV_SCHEDULER_INTERVAL] = str(interval)
    os.environ[service_app.ENV_DELIVER] = "1" if deliver else "0"
    os.environ[service_app.ENV_DELIVER_INTERVAL] = str(send_interval)
    err.print(
        f"openmart serving {mart.location.describe()} on http://{host}:{port} "
        "(dashboard: /dashboard/, API docs: /docs)",
        highlight=False,
    )
    uvicorn.run(
        "openmart.service.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy_headers=False,
    )
