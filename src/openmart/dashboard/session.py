"""Browser login: a person pastes an API key once; the dashboard answers with a session cookie
holding a token (:meth:`Authenticator.issue_token`, so it dies with its key) and a CSRF cookie.

- the session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
  it), Secure over https, Path = the dashboard's root (and the API it calls, see
  :func:`openmart.dashboard.view.cookie_path`);
- the CSRF cookie: readable by the page, echoed in ``X-CSRF-Token`` by every state-changing call
  (checked in :meth:`Authenticator.check`), and in a hidden field by the logout form.

The key itself is never stored in the browser."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from openmart.dashboard.html import url
from openmart.service.auth import ANONYMOUS_ADMIN, CSRF_COOKIE, SESSION_COOKIE, Authenticator, Principal

SESSION_SECONDS = 8 * 3600  # a working day; the key's revocation ends it sooner
MAX_FORM_BYTES = 4096


def viewer(request: Request, auth: Authenticator) -> Principal | None:
    """Who is looking: anyone (as admin) without auth, else the session cookie's (or a header's) holder."""
    if not auth.enabled:
        return ANONYMOUS_ADMIN
    return auth.principal(auth.credential(request))


async def form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the login and logout forms; no multipart parser needed)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def safe_next(target: str | None, root: str) -> str:
    """Where to go after login: only a path inside the dashboard (no open redirect)."""
    home = root + "/"
    if not target or not target.startswith(home) or target.startswith("//") or "\\" in target:
        return home
    return target


def start(response: Response, request: Request, token: str, path: str) -> None:
    secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE, token, max_age=SESSION_SECONDS, path=path, httponly=True, samesite="strict", secure=secure
    )
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(32),
        max_age=SESSION_SECONDS,
        path=path,
        httponly=False,
        samesite="strict",
        secure=secure,
    )


def end(response: Response, path: str) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path=path, samesite="strict")


def csrf_matches(request: Request, value: str) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), value.encode())


def to_login(root: str, request: Request) -> RedirectResponse:
    """Send a browser to the login page, back here afterwards."""
    here = request.url.path  # the full path: Starlette keeps the mount prefix in it
    if request.url.query:
        here += "?" + request.url.query
    return RedirectResponse(url(root + "/login", {"next": here}), status_code=303)
