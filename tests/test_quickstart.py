"""The newcomer's main job, end to end on a fresh embedded mart (smaller traffic)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import openmart
from openmart.cli.app import app
from openmart.config import Settings


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("qs")
    report = home / "report.html"
    env = {"OPENMART_DATA_DIR": str(home / "data"), "OPENMART_DATABASE_URL": "", "OPENMART_SCHEMA": "openmart"}
    result = CliRunner().invoke(app, ["quickstart", "--records", "400", "--report", str(report), "--json"], env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    yield json.loads(result.stdout), report, home
    from openmart.mart.embedded import stop

    stop(home / "data" / "postgres")


def test_quickstart_stores_rows_and_finds_the_breaches(quickstart_run) -> None:
    data, report, home = quickstart_run
    assert data["sent"] == 400 and data["stored"] == 400 and data["feedback"] == 240
    evaluations = data["evaluations"]
    assert len(evaluations) == 4
    first, last = evaluations[0], evaluations[-1]
    breached = {(m["monitor"], m["metric"], m["feature"]) for m in last["measurements"] if m["breached"]}
    assert ("quality", "roc_auc", None) in breached
    assert ("fairness", "disparate_impact", "sex") in breached
    assert ("drift", "ks", "bmi") in breached
    early = {(m["monitor"], m["metric"], m["feature"]) for m in first["measurements"] if m["breached"]}
    assert ("fairness", "disparate_impact", "sex") not in early and ("drift", "ks", "bmi") not in early
    assert report.exists() and report.stat().st_size < 1_500_000
    settings = Settings(None, home / "data", None)
    with openmart.connect(settings=settings) as mart:
        sub = mart.subscriptions.get("diabetes-triage")
        assert sub.payload.count() == 400
        assert len(mart.alerts()) >= 3
        rows = sub.payload.read(limit=5)
        assert rows["scoring_id"].notna().all() and rows["response_time"].gt(0).all()


def test_quickstart_runs_again(quickstart_run) -> None:
    data, report, home = quickstart_run
    env = {"OPENMART_DATA_DIR": str(home / "data"), "OPENMART_DATABASE_URL": "", "OPENMART_SCHEMA": "openmart"}
    result = CliRunner().invoke(app, ["quickstart", "--records", "100", "--report", str(home / "again.html")], env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "sent 100 requests" in result.stdout
