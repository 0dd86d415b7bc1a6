"""``openmart serve`` started for real: API keys (made by the CLI, stored hashed, scoped,
revocable), tokens, ``--no-auth`` and JSON errors."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

import openmart
from openmart.mart.api_keys import split
from openmart.service.app import create_app
from openmart.service.auth import ADMIN, WRITE, Principal
from tests.service_support import running_service


def test_keys_are_stored_hashed_and_shown_once(cli, mart: openmart.Mart) -> None:  # type: ignore[no-untyped-def]
    made = cli("keys", "create", "scoring-app", "--scope", "write")
    key = made.stdout.strip()
    prefix, secret = split(key) or ("", "")
    assert prefix and secret
    stored = mart.sql("SELECT prefix, scope, secret_hash FROM api_keys")
    assert stored.to_dict("records")[0]["prefix"] == prefix
    assert bytes(stored["secret_hash"][0]) == hashlib.sha256(secret.encode()).digest()
    dumped = mart.sql("SELECT row_to_json(k)::text AS j FROM api_keys k")["j"][0]
    assert secret not in dumped
    listed = cli("keys", "list", "--json")
    assert prefix in listed.stdout and secret not in listed.stdout
    bad = cli("keys", "create", "x", "--scope", "root", ok=False)
    assert bad.exit_code == 2 and "scope 'root'" in bad.stderr


def test_scopes_order_and_tokens(mart: openmart.Mart) -> None:
    """In-process: each scope reaches what it should, tokens carry their key's scope and die with it."""
    router = APIRouter()

    @router.post("/w")
    def write_route(principal: Principal = WRITE) -> dict[str, str]:
        return {"by": principal.name}

    @router.post("/a")
    def admin_route(principal: Principal = ADMIN) -> dict[str, str]:
        return {"by": principal.name}

    app: FastAPI = create_app(mart)
    app.include_router(router)
    keys = {scope: mart.keys.create(f"k-{scope}", scope)[1] for scope in ("read", "write", "admin")}
    with TestClient(app) as client:
        expected = {("read", "/w"): 403, ("read", "/a"): 403, ("write", "/w"): 200, ("write", "/a"): 403}
        expected |= {("admin", "/w"): 200, ("admin", "/a"): 200}
        for (scope, path), status in expected.items():
            answer = client.post(path, headers={"X-API-Key": keys[scope]})
            assert answer.status_code == status, (scope, path, answer.text)
            if status == 403:
                assert answer.json()["error"]["type"] == "Forbidden"
        auth = app.state.auth
        principal = auth.principal(keys["write"])
        token, expires = auth.issue_token(principal)
        assert expires > time.time()
        assert client.post("/w", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.post("/a", headers={"Authorization": f"Bearer {token}"}).status_code == 403
        expired, _ = auth.issue_token(principal, seconds=-10)
        assert client.post("/w", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert client.post("/w", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        mart.keys.revoke("k-write")
        assert client.post("/w", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_served_routes_need_a_key(database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart) -> None:
    _, reader = mart.keys.create("reader", "read")
    with running_service(database_url, schema_name, tmp_path) as svc:
        assert httpx.get(svc.url + "/health").json()["status"] == "ok"
        missing = httpx.get(svc.url + "/api/v1/whoami")
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "Unauthorized"
        wrong = httpx.get(svc.url + "/api/v1/whoami", headers={"Authorization": "Bearer om_000000000000_nope"})
        assert wrong.status_code == 401
        with svc.client(reader) as client:
            assert client.get("/api/v1/whoami").json() == {"name": "reader", "scope": "read", "auth": True}
        spec = httpx.get(svc.url + "/openapi.json").json()
        assert "/api/v1/whoami" in spec["paths"]
        mart.keys.revoke("reader")
        # the service remembers a verified key for a few seconds: wait for the condition, not a fixed time
        end = time.monotonic() + 120
        status = 200
        while time.monotonic() < end and status != 401:
            status = httpx.get(svc.url + "/api/v1/whoami", headers={"X-API-Key": reader}).status_code
            if status != 401:
                time.sleep(0.2)
        assert status == 401


def test_no_auth_warns_and_answers_as_admin(database_url: str, schema_name: str, tmp_path: Path) -> None:
    with running_service(database_url, schema_name, tmp_path, "--no-auth") as svc:
        answer = httpx.get(svc.url + "/api/v1/whoami")
        assert answer.json() == {"name": "no-auth", "scope": "admin", "auth": False}
        assert "--no-auth" in svc.output() and "warning" in svc.output()


@pytest.mark.parametrize("host", ["", " "])
def test_serve_refuses_a_blank_host(cli, host: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("serve", "--host", host, ok=False)
    assert result.exit_code == 2 and "--host" in result.stderr
