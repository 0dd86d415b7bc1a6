"""The custom and algorithmia adapters against real servers on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.deployments.launch import free_port, start_algorithmia, start_fastapi
from openmart.errors import (
    NotFound,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
    SecretError,
    ValidationError,
)
from openmart.providers import registry
from tests.http_fixtures import Script, ScriptedServer
from tests.models import train_credit

FEATURES = ["sex", "income", "debt"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    return train_credit(tmp_path_factory.mktemp("model") / "credit.joblib")


@pytest.fixture(scope="module")
def fastapi_deployment(model):
    with start_fastapi(model[0]) as running:
        yield running


@pytest.fixture(scope="module")
def algorithmia_deployment(model):
    with start_algorithmia({"demo/credit/1.0.0": model[0], "demo/credit/1.1.0": model[0]}, key="s3cret") as running:
        yield running


def _custom(url: str, **settings: str):
    return registry.create("custom", {"url": url, **settings})


def test_custom_single_mode_against_fastapi(model, fastapi_deployment) -> None:
    _, estimator, data = model
    provider = _custom(f"{fastapi_deployment.url}/predict")
    records = data.loc[:40, FEATURES]
    result = provider.score("/predict", records)
    assert result.requests == len(records)  # one request per record, sent concurrently
    assert result.predictions == estimator.predict(records).tolist()
    assert np.allclose(result.probabilities, estimator.predict_proba(records)[:, 1])
    assert [d.id for d in provider.list_deployments()] == ["/predict"]
    with pytest.raises(NotFound):
        provider.describe("/elsewhere")


def test_algorithmia_batch_auth_versions_and_pandas_json(model, algorithmia_deployment, monkeypatch) -> None:
    _, estimator, data = model
    records = data.loc[:99, FEATURES]
    monkeypatch.setenv("ALGO_KEY", "s3cret")
    provider = registry.create(
        "algorithmia", {"base_url": algorithmia_deployment.url, "key_env": "ALGO_KEY", "algorithms": "demo/credit"}
    )
    result = provider.score("demo/credit/1.0.0", records)
    assert result.requests == 1
    assert result.predictions == estimator.predict(records).tolist()
    assert sorted(d.id for d in provider.list_deployments()) == ["demo/credit/1.0.0", "demo/credit/1.1.0"]
    with pytest.raises(NotFound, match="no version 9.9.9"):
        provider.describe("demo/credit/9.9.9")
    classic = registry.create(
        "algorithmia", {"base_url": algorithmia_deployment.url, "key_env": "ALGO_KEY", "input": "pandas_json"}
    )
    assert classic.score("demo/credit/1.0.0", records).predictions == estimator.predict(records).tolist()
    monkeypatch.setenv("ALGO_KEY", "wrong")
    with pytest.raises(ProviderHTTPError, match="authorization required") as info:
        provider.score("demo/credit/1.0.0", records)
    assert info.value.status == 401
    monkeypatch.delenv("ALGO_KEY")
    with pytest.raises(SecretError, match="ALGO_KEY"):
        provider.score("demo/credit/1.0.0", records)


def test_algorithm_error_carries_server_message(algorithmia_deployment, monkeypatch) -> None:
    monkeypatch.setenv("ALGO_KEY", "s3cret")
    provider = registry.create(
        "algorithmia", {"base_url": algorithmia_deployment.url, "key_env": "ALGO_KEY", "retries": "0"}
    )
    with pytest.raises(ProviderHTTPError, match=r"missing feature\(s\) \['debt'\]") as info:
        provider.score("demo/credit/1.0.0", pd.DataFrame({"sex": ["male"], "income": [1.0]}))
    assert info.value.status == 400


def test_connection_refused_and_timeout() -> None:
    dead = _custom(f"http://127.0.0.1:{free_port()}/predict", retries="1")
    with pytest.raises(ProviderConnectionError, match="cannot connect"):
        dead.score("/predict", pd.DataFrame({"x": [1.0]}))
    slow = ScriptedServer(Script(lambda s: (200, {"prediction": 1}), delay=1.0))
    try:
        provider = _custom(f"{slow.url}/predict", timeout="0.2", retries="1")
        with pytest.raises(ProviderTimeout):
            provider.score("/predict", pd.DataFrame({"x": [1.0]}))
        assert len(slow.script.seen) == 1  # a read timeout is not retried: the deployment has the request
    finally:
        slow.close()


def test_retries_transient_but_not_client_errors() -> None:
    flaky = ScriptedServer(Script(lambda s: (200, {"predictions": [1, 0]}), fail_first=2))
    try:
        provider = _custom(f"{flaky.url}/score", mode="records", retries="3")
        assert provider.score("/score", pd.DataFrame({"x": [1.0, 2.0]})).predictions == [1, 0]
        assert len(flaky.script.seen) == 3
    finally:
        flaky.close()
    bad = ScriptedServer(Script(lambda s: (422, {"detail": "field x: not a number"})))
    try:
        provider = _custom(f"{bad.url}/score", mode="records")
        with pytest.raises(ProviderHTTPError, match="HTTP 422: field x: not a number"):
            provider.score("/score", pd.DataFrame({"x": [1.0]}))
        assert len(bad.script.seen) == 1
    finally:
        bad.close()


def test_request_shapes_paths_label_maps_and_auth(monkeypatch) -> None:
    monkeypatch.setenv("TOKEN", "tok-123")
    server = ScriptedServer(
        Script(
            lambda s: (
                200,
                {
                    "fields": ["x", "probability", "prediction"],
                    "values": [[r[0], [0.3, 0.7], "Churn"] for r in s.body["values"]],
                },
            )
        )
    )
    try:
        provider = _custom(
            f"{server.url}/v1/score",
            mode="fields_values",
            auth="bearer",
            token_env="TOKEN",
            label_map=json.dumps({"Churn": 1, "Stay": 0}),
        )
        result = provider.score("/v1/score", pd.DataFrame({"x": [1.5, 2.5]}))
        assert result.predictions == [1, 1] and result.probabilities == [[0.3, 0.7], [0.3, 0.7]]
        seen = server.script.seen[-1]
        assert seen.body == {"fields": ["x"], "values": [[1.5], [2.5]]}
        assert seen.headers["Authorization"] == "Bearer tok-123"
    finally:
        server.close()
    monkeypatch.setenv("KEY", "k-9")
    server = ScriptedServer(Script(lambda s: (200, {"out": {"label": [0 for _ in s.body["rows"]]}})))
    try:
        provider = _custom(
            f"{server.url}/p",
            mode="records",
            records_field="rows",
            prediction="$.out.label[*]",
            auth="header",
            header="X-Api-Key",
            key_env="KEY",
        )
        assert provider.score("/p", pd.DataFrame({"x": [1.0, 2.0, 3.0]})).predictions == [0, 0, 0]
        assert server.script.seen[-1].headers["X-Api-Key"] == "k-9"
        assert server.script.seen[-1].body == {"rows": [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}]}
        missing = _custom(f"{server.url}/p", mode="records", records_field="rows", prediction="$.out.score[*]")
        with pytest.raises(ProviderResponseError, match=r"no field \$\.out\.score"):
            missing.score("/p", pd.DataFrame({"x": [1.0]}))
    finally:
        server.close()


def test_bindings_keep_secrets_out(mart: openmart.Mart, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="'token' looks like a secret"):
        mart.bindings.add("web", "custom", {"url": "http://127.0.0.1:1/p", "auth": "bearer", "token": "abc"})
    with pytest.raises(ValidationError, match="unknown setting"):
        mart.bindings.add("web", "custom", {"url": "http://127.0.0.1:1/p", "colour": "red"})
    b = mart.bindings.add("web", "custom", {"url": "http://127.0.0.1:1/p", "auth": "bearer", "token_env": "TOK"})
    assert b.settings["token_env"] == "TOK"
    from cryptography.fernet import Fernet

    from openmart.config import Settings

    key = Fernet.generate_key().decode()
    secure = openmart.connect(mart.location.url, schema=mart.location.schema, settings=Settings(None, tmp_path, key))
    stored = secure.bindings.add(
        "web2", "custom", {"url": "http://127.0.0.1:1/p", "auth": "bearer", "token": "very-secret"}
    )
    assert stored.settings["token"] == "***"
    raw = secure.sql("SELECT settings::text AS s FROM bindings WHERE name = 'web2'")["s"][0]
    assert "very-secret" not in raw and "enc:" in raw
    assert secure.bindings.get("web2").connect().settings["token"] == "very-secret"
    with pytest.raises(openmart.errors.ProviderNotInstalled, match="installed kinds: .*custom"):
        mart.bindings.add("x", "nope", {})
    assert [x.name for x in mart.bindings.list()] == ["web", "web2"]
    mart.bindings.remove("web2")
    assert [x.name for x in mart.bindings.list()] == ["web"]


def test_subscription_scores_and_logs(mart: openmart.Mart, model, fastapi_deployment) -> None:
    _, estimator, data = model
    mart.bindings.add("api", "custom", {"url": f"{fastapi_deployment.url}/predict"})
    sub = mart.subscriptions.add(
        "credit", reference=data, label="label", problem_type="binary", binding="api", deployment="/predict"
    )
    scored = sub.score(data.loc[:29, FEATURES], wait=True)
    assert list(scored.columns[:1]) == ["scoring_id"]
    assert scored["prediction"].tolist() == estimator.predict(data.loc[:29, FEATURES]).tolist()
    stored = sub.payload.read().set_index("scoring_id").loc[scored["scoring_id"]]
    assert stored["prediction"].tolist() == scored["prediction"].tolist()
    assert np.allclose(stored["probability"], scored["probability"])
    with pytest.raises(NotFound):
        mart.subscriptions.add(
            "bad", reference=data, label="label", problem_type="binary", binding="api", deployment="/other"
        )
