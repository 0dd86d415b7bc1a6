"""Token exchange, as the client's ``_create_token`` does it for a service that is not IBM Cloud:
``POST /v1/preauth/validateAuth`` with a form ``grant_type, apikey``; the answer's
``access_token`` is a JWT whose ``exp`` the client reads to refresh it in time."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request

from openmart.service.auth import authenticator

router = APIRouter(tags=["openscale"])


async def _apikey(request: Request) -> str | None:
    body = (await request.body()).decode("utf-8", "replace")
    kind = request.headers.get("content-type", "")
    if "json" in kind:
        try:
            data = json.loads(body or "{}")
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        value = data.get("apikey") if isinstance(data, dict) else None
    else:
        value = (parse_qs(body).get("apikey") or [None])[0]
    return str(value) if value else None


@router.post("/v1/preauth/validateAuth", summary="Exchange an openmart API key (apikey=om_...) for a signed token")
async def validate_auth(request: Request) -> dict[str, Any]:
    auth = authenticator(request)
    key = await _apikey(request)
    if not key:
        raise HTTPException(400, "give apikey (an openmart API key, om_...) as a form or JSON field")
    principal = auth.principal(key) if key.startswith("om_") else None
    if principal is None:
        raise HTTPException(401, "apikey is not a valid openmart API key (unknown, revoked or malformed)")
    token, expires = auth.issue_token(principal)
    return {
        "access_token": token,
        "accessToken": token,
        "token_type": "Bearer",
        "expires_in": max(0, expires - int(time.time())),
        "expiration": expires,
    }
