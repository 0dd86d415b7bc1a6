"""Who is calling: an API key (``Authorization: Bearer om_...`` or ``X-API-Key``) or a token
exchanged for one at ``/v1/preauth/validateAuth`` (a JWT signed with HS256, with ``exp``).

Every route depends on :func:`require` with the scope it needs (read < write < admin). With
``--no-auth`` every caller is an admin: for local use only, and ``openmart serve`` says so.
A verified key is remembered for :data:`CACHE_SECONDS`, so a burst of single-record posts does not
cost a database round trip each; a revoked key therefore stops working within that time (its
tokens at once on their next verification after the cache, since they are signed with a secret
derived from the key's stored hash).

Browsers (the dashboard) cannot send an ``Authorization`` header when they navigate, so a token
may also come in the :data:`SESSION_COOKIE` the dashboard's login sets (HttpOnly, SameSite=Strict).
A request authenticated by that cookie that may change something (any method but GET, HEAD,
OPTIONS) must also carry the :data:`CSRF_COOKIE`'s value in the :data:`CSRF_HEADER` (double
submit): another site can make a browser send the cookies, but cannot read them to echo one.
A header credential always wins over the cookie, and needs no CSRF token.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Depends, HTTPException, Request

from openmart.api import Mart
from openmart.mart.api_keys import KEY_PREFIX, Scope

CACHE_SECONDS = 5.0
TOKEN_SECONDS = 3600
ISSUER = "openmart"
#: the dashboard's session (a token from :meth:`Authenticator.issue_token`) and its CSRF pair
SESSION_COOKIE = "openmart_session"
CSRF_COOKIE = "openmart_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """The caller: the key's name and id (None with --no-auth) and its scope."""

    name: str
    scope: Scope
    key_id: int | None = None


ANONYMOUS_ADMIN = Principal("no-auth", Scope.ADMIN)


class Authenticator:
    def __init__(self, mart: Mart, *, enabled: bool = True) -> None:
        self.mart = mart
        self.enabled = enabled
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    # -- keys ---------------------------------------------------------------------------------
    def _from_key(self, key: str) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        record = self.mart.keys.verify(key)
        if record is None:
            with self._lock:
                self._cache.pop(key, None)
            return None
        principal = Principal(record.name, record.scope, record.id)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, principal)
        return principal

    # -- tokens -------------------------------------------------------------------------------
    def issue_token(self, principal: Principal, seconds: int = TOKEN_SECONDS) -> tuple[str, int]:
        """A signed token for this key's holder and its expiry (seconds since the epoch)."""
        if principal.key_id is None:
            raise HTTPException(400, "tokens are exchanged for API keys; this service runs without keys (--no-auth)")
        secret = self.mart.keys.signing_secret(principal.key_id)
        if secret is None:
            raise HTTPException(401, "the API key was revoked")
        expires = int(time.time()) + seconds
        claims = {
            "iss": ISSUER,
            "sub": principal.name,
            "scope": str(principal.scope),
            "iat": int(time.time()),
            "exp": expires,
        }
        token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": str(principal.key_id)})
        return token, expires

    def _from_token(self, token: str) -> Principal | None:
        try:
            key_id = int(jwt.get_unverified_header(token).get("kid", ""))
        except (jwt.PyJWTError, ValueError):
            return None
        secret = self.mart.keys.signing_secret(key_id)
        if secret is None:
            return None
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=ISSUER, options={"require": ["exp"]})
        except jwt.PyJWTError:
            return None
        return Principal(str(claims.get("sub", "")), Scope.parse(str(claims.get("scope", "read"))), key_id)

    # -- requests -----------------------------------------------------------------------------
    def header_credential(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("bearer", "apikey", "zenapikey") and value.strip():
            return value.strip()
        return request.headers.get("x-api-key") or None

    def credential(self, request: Request) -> str | None:
        """The key or token a request carries: a header's, else the dashboard's session cookie."""
        return self.header_credential(request) or request.cookies.get(SESSION_COOKIE) or None

    @staticmethod
    def check_csrf(request: Request) -> None:
        """403 unless the CSRF header equals the CSRF cookie (both present; constant-time)."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        header = request.headers.get(CSRF_HEADER, "")
        if not cookie or not header or not hmac.compare_digest(cookie.encode(), header.encode()):
            raise HTTPException(
                403, f"a request authenticated by the session cookie must send the {CSRF_HEADER} header (CSRF)"
            )

    def principal(self, credential: str | None) -> Principal | None:
        if not credential:
            return None
        if credential.startswith(KEY_PREFIX):
            return self._from_key(credential)
        return self._from_token(credential)

    def check(self, request: Request, needed: Scope) -> Principal:
        if not self.enabled:
            return ANONYMOUS_ADMIN
        credential = self.credential(request)
        principal = self.principal(credential)
        if principal is not None and request.method not in SAFE_METHODS and not self.header_credential(request):
            self.check_csrf(request)  # the cookie authenticated this request: see the module's docstring
        if principal is None:
            why = "missing" if not credential else "not valid (unknown, revoked, malformed or expired)"
            raise HTTPException(401, f"API key or token {why}", headers={"WWW-Authenticate": "Bearer"})
        if principal.scope < needed:
            raise HTTPException(403, f"this route needs scope {needed}; key {principal.name!r} has {principal.scope}")
        return principal


def authenticator(request: Request) -> Authenticator:
    auth = request.app.state.auth
    assert isinstance(auth, Authenticator)
    return auth


def require(scope: Scope | str) -> Callable[..., Any]:
    """A FastAPI dependency: the caller's :class:`Principal`, or 401/403."""
    needed = Scope.parse(scope)

    def dependency(request: Request, auth: Authenticator = Depends(authenticator)) -> Principal:
        return auth.check(request, needed)

    dependency.__name__ = f"require_{needed}"
    return dependency


def mart_of(request: Request) -> Mart:
    mart = request.app.state.mart
    assert isinstance(mart, Mart)
    return mart


READ = Depends(require(Scope.READ))
WRITE = Depends(require(Scope.WRITE))
ADMIN = Depends(require(Scope.ADMIN))
MART = Depends(mart_of)
