"""Explanations through a real deployment, stored in the mart, and the explainability monitor."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import openmart
from openmart.cli.app import app
from openmart.deployments.launch import start_algorithmia
from tests.models import train_credit

FEATURES = ["sex", "income", "debt"]


@pytest.fixture
def sub(mart: openmart.Mart, tmp_path):  # type: ignore[no-untyped-def]
    path, estimator, data = train_credit(tmp_path / "credit.joblib")
    deployment = start_algorithmia({"demo/credit/1.0.0": path})
    mart.bindings.add("host", "algorithmia", {"base_url": deployment.url})
    sub = mart.subscriptions.add(
        "credit", reference=data, label="label", problem_type="binary", binding="host", deployment="demo/credit/1.0.0"
    )
    sub.score(data.loc[:39, FEATURES], wait=True)
    yield sub, estimator, data, deployment
    deployment.stop()


def test_explanation_through_the_binding(sub) -> None:  # type: ignore[no-untyped-def]
    from openmart.explain.service import explain

    sub, estimator, data, _ = sub
    sid = sub.payload.read(limit=1)["scoring_id"][0]
    record = sub.payload.read().set_index("scoring_id").loc[sid]
    result = explain(sub, sid, method="shap")
    p = estimator.predict_proba(record[FEATURES].to_frame().T.astype({"income": float, "debt": float}))[0, 1]
    explained = p if str(result.prediction) == "1" else 1 - p
    assert result.base_value + sum(result.attributions.values()) == pytest.approx(explained, abs=1e-6)
    assert result.scoring_calls <= 3
    assert set(result.attributions) == set(FEATURES)
    assert result.contrastive is not None and "keep" in result.contrastive
    again = explain(sub, sid, method="shap")
    assert again.cached and again.attributions == pytest.approx(result.attributions)
    lime = explain(sub, sid, method="lime")
    assert set(lime.attributions) == set(FEATURES) and not lime.cached
    stored = sub.mart.sql("SELECT method, scoring_calls FROM explanations ORDER BY id")
    assert stored["method"].tolist() == ["shap", "lime"]


def test_cli_and_monitor(sub, database_url, schema_name, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sub, *_ = sub
    monkeypatch.setenv("OPENMART_DATABASE_URL", database_url)
    monkeypatch.setenv("OPENMART_SCHEMA", schema_name)
    runner = CliRunner()
    r = runner.invoke(app, ["explain", "credit", "--last", "3", "--json"])
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)) == 3
    sid = json.loads(r.stdout)[0]["scoring_id"]
    r = runner.invoke(app, ["explain", "credit", sid])
    assert r.exit_code == 0 and "stored" in r.stdout and "income" in r.stdout
    sub.monitors.enable("explainability", sample=5)
    result = sub.evaluate(kinds=["explainability"])
    m = result.measurements[0]
    assert m.metric == "attribution_ndcg" and 0 < m.value <= 1
    assert m.threshold == 0.9
    assert set(m.details["current_importance"]) == set(FEATURES)
    assert np.isfinite(list(m.details["reference_importance"].values())).all()
    second = sub.evaluate(kinds=["explainability"])
    assert second.outcomes[0].scoring_calls == 0  # all explained already, reference ranking kept
    assert pd.notna(second.measurements[0].value)
