"""openmart's live dashboard: server-rendered pages with charts drawn as SVG in Python, a small
script that polls for changes, no CDN (docs/dashboard.md).

``openmart serve`` mounts it at ``/dashboard``; a model's own FastAPI app can mount it too::

    model_app.mount("/monitoring", openmart.dashboard.app(mart))

Importing this package costs nothing: the app's modules load when :func:`app` is called."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from openmart.api import Mart
    from openmart.service.auth import Authenticator


def app(
    mart: Mart, *, auth: bool = True, api_prefix: str | None = None, authenticator: Authenticator | None = None
) -> FastAPI:
    """The dashboard over ``mart`` as an ASGI app with its routes at ``/``, to mount anywhere.

    ``auth``: viewers log in with an API key (read scope suffices; acknowledging an alert needs
    write); False lets everyone in as admin (local use only). ``api_prefix``: the path of a REST
    API (``/api/v1`` of ``openmart serve``) the alert buttons call; None: the app serves the
    alert routes itself under its own ``api/v1``. ``authenticator``: share a service's (its key
    cache) instead of making one."""
    from openmart.dashboard.routes import create

    return create(mart, auth=auth, api_prefix=api_prefix, authenticator=authenticator)
