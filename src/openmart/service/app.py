"""The service's ASGI app: :func:`create_app` over an open mart; :func:`app_from_env` is the
factory ``openmart serve`` hands uvicorn (each worker process builds its own from the
``OPENMART_*`` environment)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

from openmart import __version__
from openmart.api import Mart, connect
from openmart.service import delivery, errors, performance, rest, schedules, scheduling
from openmart.service.auth import READ, Authenticator, Principal
from openmart.service.openscale import router as openscale_router

log = logging.getLogger(__name__)

#: environment ``openmart serve`` sets for its workers (uvicorn starts them with an import string)
ENV_AUTH = "OPENMART_SERVE_AUTH"
ENV_SCHEDULER = "OPENMART_SERVE_SCHEDULER"
ENV_SCHEDULER_INTERVAL = "OPENMART_SERVE_SCHEDULER_INTERVAL"
ENV_DELIVER = "OPENMART_SERVE_DELIVER"
ENV_DELIVER_INTERVAL = "OPENMART_SERVE_DELIVER_INTERVAL"

DESCRIPTION = """openmart's monitoring service: bindings, subscriptions, payload and feedback
logging, evaluations, measurements, alerts, explanations and performance (`/api/v1`), and
OpenScale's V1 routes for the `ibm-ai-openscale` client (`/v1`).

Every route but `/health` needs an API key (`openmart keys create --scope read|write|admin`),
sent as `Authorization: Bearer om_...` or `X-API-Key: om_...`. Errors are JSON:
`{"error": {"type", "message", "record", "field"}}`."""


def create_app(
    mart: Mart,
    *,
    auth: bool = True,
    scheduler: bool = False,
    scheduler_interval: float = 30.0,
    deliver: bool = False,
    deliver_interval: float = 5.0,
    own_mart: bool = False,
) -> FastAPI:
    """The service over ``mart``. ``auth=False`` lets every caller in as admin (local use only);
    ``scheduler=True`` runs due monitors in the background; ``deliver=True`` sends due alert
    messages in the background; ``own_mart``: close it on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = scheduling.start(mart, interval=scheduler_interval) if scheduler else None
        stop_sending = delivery.start(mart, interval=deliver_interval) if deliver else None
        try:
            yield
        finally:
            if stop_sending is not None:
                stop_sending()
            if stop is not None:
                stop()
            if own_mart:
                mart.close()

    app = FastAPI(title="openmart", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.mart = mart
    app.state.auth = Authenticator(mart, enabled=auth)
    errors.install(app)

    @app.get("/health", tags=["service"], summary="Liveness and the mart's migration state (no key needed)")
    def health() -> dict[str, Any]:
        status = mart.status()
        return {"status": "ok", "version": __version__, "mart": {k: status[k] for k in ("revision", "up_to_date")}}

    @app.get("/api/v1/whoami", tags=["service"], summary="The key this request was made with and its scope")
    def whoami(request: Request, principal: Principal = READ) -> dict[str, Any]:
        return {"name": principal.name, "scope": str(principal.scope), "auth": app.state.auth.enabled}

    app.include_router(rest.router)
    app.include_router(schedules.router)
    app.include_router(performance.router)
    app.include_router(openscale_router)

    # the dashboard: same keys (it shares this authenticator), its buttons call this /api/v1
    from openmart import dashboard

    app.mount("/dashboard", dashboard.app(mart, api_prefix="/api/v1", authenticator=app.state.auth))

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.scope.get("root_path", "")) + "/dashboard/")

    return app


def app_from_env() -> FastAPI:
    """The app a uvicorn worker builds (``openmart serve``): the mart from ``OPENMART_DATABASE_URL``
    and ``OPENMART_SCHEMA`` (or the embedded default), options from ``OPENMART_SERVE_*``."""
    mart = connect()
    return create_app(
        mart,
        auth=os.environ.get(ENV_AUTH, "1") != "0",
        scheduler=os.environ.get(ENV_SCHEDULER, "1") != "0",
        scheduler_interval=float(os.environ.get(ENV_SCHEDULER_INTERVAL, "30")),
        deliver=os.environ.get(ENV_DELIVER, "1") != "0",
        deliver_interval=float(os.environ.get(ENV_DELIVER_INTERVAL, "5")),
        own_mart=True,
    )
