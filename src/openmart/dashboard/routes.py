"""The dashboard's ASGI app: its pages, the login, ``/changes`` for live updates, its static
files, and (when it runs without a service around it) the REST alert routes its buttons call.

Pages answer HTML; a page request without a session goes to the login page, while a fragment or
``/changes`` request (the script's) gets 401. Every link is built from the request's
``root_path``, so the app works wherever it is mounted."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from openmart.api import Mart
from openmart.dashboard import layout, pages, session, timerange
from openmart.dashboard.view import View, api_of, cookie_path, root_of
from openmart.service import errors
from openmart.service.auth import Authenticator, Principal

STATIC = Path(__file__).with_name("static")
#: pages change with every evaluation and are per user: never cached, never framed elsewhere
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def _is_script(request: Request) -> bool:
    return request.query_params.get("fragment") == "1"


def create(mart: Mart, *, auth: bool, api_prefix: str | None, authenticator: Authenticator | None) -> FastAPI:
    app = FastAPI(title="openmart dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.mart = mart
    app.state.auth = authenticator if authenticator is not None else Authenticator(mart, enabled=auth)
    app.state.api_prefix = api_prefix
    errors.install(app)
    checker: Authenticator = app.state.auth

    def view_of(request: Request, principal: Principal) -> View:
        q = request.query_params
        rng = timerange.parse(q.get("range"), q.get("start"), q.get("end"))
        return View.of(request, principal, rng, api_prefix)

    def unauthenticated(request: Request) -> Response:
        if _is_script(request):
            return JSONResponse({"error": {"type": "Unauthorized", "message": "log in again"}}, status_code=401)
        return session.to_login(root_of(request), request)

    def respond(request: Request, view: View, rendered: pages.Rendered, changes_url: str, back: str | None) -> Response:
        headers = {**HEADERS, "X-Change-Token": rendered.change_token}
        if _is_script(request):
            return HTMLResponse(rendered.main, headers=headers)
        body = layout.page(
            view, rendered.title, rendered.main, change_token=rendered.change_token, changes_url=changes_url, back=back
        )
        return HTMLResponse(body, headers=headers)

    @app.get("/", include_in_schema=False, name="overview")
    def overview(request: Request) -> Response:
        principal = session.viewer(request, checker)
        if principal is None:
            return unauthenticated(request)
        view = view_of(request, principal)
        with mart.engine.connect() as conn:
            rendered = pages.overview(view, conn)
        return respond(request, view, rendered, f"{view.root}/changes", None)

    @app.get("/subscriptions/{name}", include_in_schema=False, name="subscription")
    def subscription(request: Request, name: str, tab: str | None = None, feature: str | None = None) -> Response:
        principal = session.viewer(request, checker)
        if principal is None:
            return unauthenticated(request)
        view = view_of(request, principal)
        with mart.engine.connect() as conn:
            sub = pages.find(conn, name)
            if sub is None:
                return HTMLResponse(
                    layout.not_found(view, f"no subscription named {name!r}"), status_code=404, headers=HEADERS
                )
            rendered = pages.subscription(view, conn, sub, tab, feature)
        changes = f"{view.root}/changes?subscription={sub.name}"  # names are slugs: nothing to quote
        return respond(request, view, rendered, changes, sub.name)

    @app.get("/changes", include_in_schema=False)
    def changes(request: Request, subscription: str | None = None) -> Response:
        """The change token the script polls: when it differs from the page's, the page refetches."""
        if session.viewer(request, checker) is None:
            return JSONResponse({"error": {"type": "Unauthorized", "message": "log in again"}}, status_code=401)
        from openmart.errors import NotFound
        from openmart.mart import dashboard as reads
        from openmart.mart import subscriptions

        with mart.engine.connect() as conn:  # two indexed queries: this runs every few seconds per open page
            try:
                sub_id = None if subscription is None else subscriptions.get(conn, subscription).id
            except NotFound as exc:
                return JSONResponse({"error": {"type": "NotFound", "message": str(exc)}}, status_code=404)
            token = reads.change_token(conn, sub_id)
        return JSONResponse({"token": token}, headers={"Cache-Control": "no-store"})

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the parameter's name in URLs
        root = root_of(request)
        if not checker.enabled:
            return RedirectResponse(root + "/", status_code=303)
        return HTMLResponse(layout.login(root, session.safe_next(next, root)), headers=HEADERS)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        root = root_of(request)
        fields = await session.form(request)
        target = session.safe_next(fields.get("next"), root)
        if not checker.enabled:
            return RedirectResponse(target, status_code=303)
        key = fields.get("key", "").strip()
        principal = checker.principal(key) if key else None
        if principal is None or principal.key_id is None:
            page = layout.login(root, target, "That key is not valid: unknown, revoked or mistyped.")
            return HTMLResponse(page, status_code=401, headers=HEADERS)
        token, _ = checker.issue_token(principal, session.SESSION_SECONDS)
        response = RedirectResponse(target, status_code=303)
        session.start(response, request, token, cookie_path(root, api_of(request, api_prefix)))
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        root = root_of(request)
        fields = await session.form(request)
        if checker.enabled and not session.csrf_matches(request, fields.get("csrf", "")):
            return JSONResponse({"error": {"type": "Forbidden", "message": "CSRF token missing"}}, status_code=403)
        response = RedirectResponse(root + "/login", status_code=303)
        session.end(response, cookie_path(root, api_of(request, api_prefix)))
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if api_prefix is None:  # alone (mounted in a model's app): the buttons call these
        from openmart.service.rest import alerts

        app.include_router(alerts.router, prefix="/api/v1")
    return app
