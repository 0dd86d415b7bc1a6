"""The capture proxy end to end: real deployment, real proxy server, real mart."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import openmart
from openmart.deployments.launch import start_algorithmia, start_fastapi
from openmart.scoring.proxy import SCORING_ID_HEADER, CaptureProxy
from tests.models import train_credit

FEATURES = ["sex", "income", "debt"]


class _Proxy:
    def __init__(self, app: CaptureProxy) -> None:
        self.app = app
        self.url = app.start_in_thread()

    def stop(self) -> None:
        self.app.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    return train_credit(tmp_path_factory.mktemp("m") / "credit.joblib")


def test_proxy_single_record_fastapi(mart: openmart.Mart, model) -> None:
    path, estimator, data = model
    with start_fastapi(path) as deployment:
        mart.bindings.add("api", "custom", {"url": f"{deployment.url}/predict"})
        sub = mart.subscriptions.add(
            "credit", reference=data, label="label", problem_type="binary", binding="api", deployment="/predict"
        )
        app = CaptureProxy(sub)
        proxy = _Proxy(app)
        try:
            record = {"sex": "female", "income": 42.5, "debt": 30.0}
            direct = httpx.post(f"{deployment.url}/predict", json=record)
            through = httpx.post(f"{proxy.url}/predict", json=record)
            assert through.status_code == 200 and through.content == direct.content  # answer unchanged
            sid = through.headers[SCORING_ID_HEADER]
            health = httpx.get(f"{proxy.url}/health")  # other routes pass through, not captured
            assert health.status_code == 200 and SCORING_ID_HEADER not in health.headers
            assert app.capture.flush(10)
            rows = sub.payload.read().set_index("scoring_id")
            assert list(rows.index) == [sid]
            row = rows.loc[sid]
            assert row["sex"] == "female" and row["income"] == pytest.approx(42.5)
            assert row["prediction"] == direct.json()["prediction"]
            assert row["probability"] == pytest.approx(direct.json()["probability"])
            assert row["response_time"] > 0
        finally:
            proxy.stop()


def test_proxy_batch_algorithmia(mart: openmart.Mart, model) -> None:
    path, estimator, data = model
    with start_algorithmia({"demo/credit/1.0.0": path}) as deployment:
        mart.bindings.add("host", "algorithmia", {"base_url": deployment.url})
        sub = mart.subscriptions.add(
            "credit",
            reference=data,
            label="label",
            problem_type="binary",
            binding="host",
            deployment="demo/credit/1.0.0",
        )
        app = CaptureProxy(sub)
        proxy = _Proxy(app)
        try:
            records = data.loc[:9, FEATURES].to_dict(orient="records")
            answer = httpx.post(f"{proxy.url}/v1/algo/demo/credit/1.0.0", json=records)
            assert answer.status_code == 200
            sid = answer.headers[SCORING_ID_HEADER]
            assert app.capture.flush(10)
            rows = sub.payload.read().set_index("scoring_id")
            assert sorted(rows.index) == sorted(f"{sid}-{k}" for k in range(1, 11))  # OpenScale's <id>-n
            ordered = rows.loc[[f"{sid}-{k}" for k in range(1, 11)]]
            assert ordered["prediction"].tolist() == estimator.predict(data.loc[:9, FEATURES]).tolist()
            assert np.allclose(ordered["income"], data.loc[:9, "income"])
            bad = httpx.post(f"{proxy.url}/v1/algo/demo/credit/1.0.0", json=[{"sex": "male"}])
            assert bad.status_code == 400 and SCORING_ID_HEADER not in bad.headers  # failures are not logged
            assert app.capture.flush(10) and sub.payload.count() == 10
        finally:
            proxy.stop()


def test_fairness_perturbation_through_the_binding(mart: openmart.Mart, model) -> None:
    path, estimator, data = model
    with start_algorithmia({"demo/credit/1.0.0": path}) as deployment:
        mart.bindings.add("host", "algorithmia", {"base_url": deployment.url})
        sub = mart.subscriptions.add(
            "credit",
            reference=data,
            label="label",
            problem_type="binary",
            binding="host",
            deployment="demo/credit/1.0.0",
        )
        sub.score(data[FEATURES], wait=True)
        sub.monitors.enable(
            "fairness",
            attributes=[{"feature": "sex", "monitored": "female", "reference": "male"}],
            favourable=1,
            max_perturbed=200,
        )
        result = sub.evaluate()
        got = {m.metric: m for m in result.measurements}
        flip = got["perturbation_flip_rate"].value
        # the oracle: the model itself, on the same records with sex switched
        females = data[data["sex"] == "female"][FEATURES]
        expected = (estimator.predict(females) != estimator.predict(females.assign(sex="male"))).mean()
        assert flip == pytest.approx(expected, abs=0.12)  # a sample of up to 400 records
        assert flip > 0.05
        males = data[data["sex"] == "male"][FEATURES]
        as_female = np.concatenate([estimator.predict(females), estimator.predict(males.assign(sex="female"))])
        as_male = np.concatenate([estimator.predict(males), estimator.predict(females.assign(sex="male"))])
        assert got["balanced_disparate_impact"].value == pytest.approx(as_female.mean() / as_male.mean(), abs=0.1)
        assert got["balanced_disparate_impact"].value < 0.8  # the model itself is biased
        assert result.outcomes[0].scoring_calls > 0
