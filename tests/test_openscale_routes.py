"""OpenScale's V1 routes without the IBM client (in-process app over a real mart, no cloud): token
exchange, scope refusals, bad bodies refused with a clear 4xx and nothing stored, the data mart
id checked, SageMaker keys sealed and never shown."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

import openmart
from openmart.config import Settings
from openmart.service.app import create_app


@pytest.fixture
def sealed_mart(database_url: str, schema_name: str, tmp_path: Path) -> Iterator[openmart.Mart]:
    settings = Settings(database_url=None, data_dir=tmp_path / "data", secret_key=Fernet.generate_key().decode())
    m = openmart.connect(database_url, schema=schema_name, settings=settings)
    yield m
    m.close()


def _counts(mart: openmart.Mart) -> dict[str, int]:
    tables = ("bindings", "subscriptions", "openscale_bindings", "openscale_subscriptions")
    return {t: int(mart.sql(f"SELECT count(*) AS n FROM {t}")["n"][0]) for t in tables}


def test_routes_refuse_what_they_should(sealed_mart: openmart.Mart) -> None:
    mart = sealed_mart
    dm = mart.location.schema
    keys = {scope: mart.keys.create(f"os-{scope}", scope)[1] for scope in ("read", "write", "admin")}
    with TestClient(create_app(mart)) as client:

        def h(scope: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {keys[scope]}"}

        # token exchange: the client's form; a JWT with exp that works as a Bearer token
        assert client.post("/v1/preauth/validateAuth", data={"grant_type": "x"}).status_code == 400
        assert client.post("/v1/preauth/validateAuth", data={"apikey": "om_nope_nope"}).status_code == 401
        answer = client.post("/v1/preauth/validateAuth", data={"apikey": keys["read"]})
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["exp"] > time.time() + 600 and claims["scope"] == "read"
        assert client.get(f"/v1/data_marts/{dm}", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get(f"/v1/data_marts/{dm}").status_code == 401
        assert client.get("/v1/data_marts/other", headers=h("read")).status_code == 404
        assert client.put(f"/v1/data_marts/{dm}", json={}, headers=h("write")).status_code == 403

        before = _counts(mart)
        binding = {
            "name": "My SageMaker engine",
            "service_type": "amazon_sagemaker",
            "instance_id": "x",
            "credentials": {"access_key_id": "AKIAROUTESTEST", "secret_access_key": "s3cr3t-route-test", "region": "r"},
        }
        url = f"/v1/data_marts/{dm}/service_bindings"
        for scope in ("read", "write"):  # binding an engine is the admin's
            assert client.post(url, json=binding, headers=h(scope)).status_code == 403
        bad = [
            ({**binding, "service_type": "azure_machine_learning"}, 400, "not supported"),
            ({**binding, "credentials": {"access_key_id": "a", "region": "r"}}, 422, "secret_access_key"),
            ({**binding, "credentials": {**binding["credentials"], "token": "t"}}, 422, "token"),
            ({**binding, "name": ""}, 422, "name"),
        ]
        for body, status, word in bad:
            answer = client.post(url, json=body, headers=h("admin"))
            assert answer.status_code == status and word in answer.json()["error"]["message"], answer.text
        assert _counts(mart) == before  # nothing stored by a refused request

        made = client.post(url, json=binding, headers=h("admin"))
        assert made.status_code == 201, made.text
        uid = made.json()["metadata"]["guid"]
        shown = client.get(f"{url}/{uid}", headers=h("read")).json()["entity"]["credentials"]
        assert shown == {"access_key_id": "***", "secret_access_key": "***", "region": "r"}
        stored = mart.sql("SELECT settings::text AS s FROM bindings")["s"][0]
        assert "AKIAROUTESTEST" not in stored and "s3cr3t-route-test" not in stored and "enc:" in stored

        sub_url = f"{url}/{uid}/subscriptions/{uuid.uuid4()}"
        good = {
            "asset": {"asset_id": "m1", "name": "m1"},
            "asset_properties": {"problem_type": "binary", "label_column": "y", "prediction_field": "p"},
            "deployments": [{"deployment_id": "ep1", "name": "ep1"}],
        }
        before = _counts(mart)
        for body, word in [
            ({**good, "asset": {}}, "asset_id"),
            ({**good, "deployments": []}, "one deployment"),
            ({**good, "asset_properties": {**good["asset_properties"], "problem_type": "ranking"}}, "problem_type"),
        ]:
            answer = client.put(sub_url, json=body, headers=h("write"))
            assert answer.status_code == 422 and word in answer.json()["error"]["message"], answer.text
        assert client.put(sub_url, json=good, headers=h("read")).status_code == 403
        assert _counts(mart) == before
        assert client.put(sub_url, json=good, headers=h("write")).status_code == 201
        again = client.put(f"{url}/{uid}/subscriptions/{uuid.uuid4()}", json=good, headers=h("write"))
        assert again.status_code == 409  # the asset is subscribed already
        sub_uid = sub_url.rsplit("/", 1)[1]

        # quality before any payload: refused (its schema comes from the payload), nothing stored
        quality = {"enabled": True, "parameters": {"evaluation_definition": {"threshold": 0.7}}}
        answer = client.put(f"{sub_url}/configurations/quality_monitoring", json=quality, headers=h("write"))
        assert answer.status_code == 400 and "payload" in answer.json()["error"]["message"]
        assert (
            client.put(f"{sub_url}/configurations/drift", json={"enabled": True}, headers=h("write")).status_code == 400
        )
        answer = client.put(f"{sub_url}/configurations/payload_logging", json={"enabled": True}, headers=h("write"))
        assert answer.status_code == 200 and answer.json()["enabled"] is True
        details = client.get(sub_url, headers=h("read")).json()["entity"]
        assert [c["type"] for c in details["configurations"]] == ["payload_logging"]
        assert "quality_monitoring" not in json.dumps(details["configurations"])

        # records: scope, shape and an unknown subscription refused; nothing reaches the mart
        payloads = f"/v1/data_marts/{dm}/scoring_payloads"
        record = {"subscription_id": sub_uid, "request": {"fields": ["a"], "values": [[1.0]]}, "response": {}}
        assert client.post(payloads, json=[record], headers=h("read")).status_code == 403
        assert client.post(payloads, json=[], headers=h("write")).status_code == 422
        assert (
            client.post(payloads, json=[{**record, "subscription_id": "nope"}], headers=h("write")).status_code == 404
        )
        assert client.post(payloads, json=[{"request": {}}], headers=h("write")).status_code == 422
        feedback = {"subscription_id": sub_uid, "fields": ["a", "y"], "values": [[1.0, 1]]}
        answer = client.post(f"/v1/data_marts/{dm}/feedback_payloads", json=feedback, headers=h("write"))
        assert answer.status_code == 400 and "first scoring payload" in answer.json()["error"]["message"]
        counted = client.get(
            f"/v1/data_marts/{dm}/scoring_transactions",
            params={"subscription_id": sub_uid, "limit": 1, "include_total_count": "true"},
            headers=h("read"),
        )
        assert counted.status_code == 200 and counted.json()["total_count"] == 0
        assert mart.subscriptions.list() == []
