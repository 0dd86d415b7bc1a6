"""The CLI as outside checks call it: bind, deployments, score, monitor, evaluate, measurements,
alerts — against a real deployment and a real mart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openmart.deployments.launch import start_algorithmia
from tests.models import train_credit


def test_bind_score_monitor_evaluate(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, estimator, data = train_credit(tmp_path / "credit.joblib")
    data.to_csv(tmp_path / "train.csv", index=False)
    data.drop(columns="label").head(300).to_csv(tmp_path / "new.csv", index=False)
    monkeypatch.setenv("HOST_KEY", "k3y")
    with start_algorithmia({"demo/credit/1.0.0": path}, key="k3y") as host:
        cli(
            "bind",
            "add",
            "host",
            "--provider",
            "algorithmia",
            "--set",
            f"base_url={host.url}",
            "--set",
            "key_env=HOST_KEY",
            "--set",
            "algorithms=demo/credit",
        )
        shown = json.loads(cli("bind", "show", "host", "--json").stdout)
        assert shown["settings"]["key_env"] == "HOST_KEY" and "k3y" not in json.dumps(shown)
        deployments = json.loads(cli("deployments", "host", "--json").stdout)
        assert [d["id"] for d in deployments] == ["demo/credit/1.0.0"] and deployments[0]["subscription"] is None
        cli(
            "subscribe",
            "add",
            "credit",
            "--binding",
            "host",
            "--deployment",
            "demo/credit/1.0.0",
            "--reference",
            str(tmp_path / "train.csv"),
            "--label",
            "label",
            "--problem",
            "binary",
            "--categorical",
            "sex",
        )
        assert json.loads(cli("deployments", "host", "--json").stdout)[0]["subscription"] == "credit"
        scored = json.loads(cli("score", "credit", str(tmp_path / "new.csv"), "--json").stdout)
        assert len(scored) == 300 and {"scoring_id", "prediction", "probability"} == set(scored[0])
        expected = estimator.predict(data.drop(columns="label").head(300))
        assert [r["prediction"] for r in scored] == expected.tolist()
        labelled = data.head(300).assign(scoring_id=[r["scoring_id"] for r in scored])
        labelled.to_csv(tmp_path / "fb.csv", index=False)
        cli("feedback", "log", "credit", str(tmp_path / "fb.csv"))

        cli("monitor", "enable", "credit", "quality", "--threshold", "roc_auc=0.99", "--min-records", "50")
        cli(
            "monitor",
            "enable",
            "credit",
            "fairness",
            "--protected",
            "sex",
            "--monitored",
            "female",
            "--reference",
            "male",
            "--favourable",
            "1",
            "--min-records",
            "50",
        )
        cli("monitor", "enable", "credit", "drift", "--method", "psi", "--threshold", "0.2")
        r = cli("monitor", "enable", "credit", "fairness", "--protected", "sex", "--monitored", "female", ok=False)
        assert r.exit_code != 0 and "once for each protected attribute" in r.stderr
        listed = json.loads(cli("monitor", "list", "credit", "--json").stdout)
        assert {m["kind"] for m in listed} == {"quality", "fairness", "drift"}
        drift = next(m for m in listed if m["kind"] == "drift")
        assert drift["parameters"]["method"] == "psi" and drift["thresholds"][0]["value"] == 0.2

        out = json.loads(cli("evaluate", "credit", "--json").stdout)
        assert isinstance(out["evaluation_id"], int)
        m = {(x["monitor"], x["metric"], x["feature"]): x for x in out["measurements"]}
        assert set(out["measurements"][0]) >= {
            "monitor",
            "metric",
            "value",
            "threshold",
            "breached",
            "feature",
            "group",
        }
        assert m[("quality", "roc_auc", None)]["breached"] is True  # 0.99 is out of this model's reach
        assert m[("fairness", "disparate_impact", "sex")]["group"] == "female"
        assert m[("drift", "psi", "income")]["threshold"] == 0.2
        history = json.loads(cli("measurements", "credit", "--metric", "roc_auc", "--json").stdout)
        assert len(history) == 1 and history[0]["breached"] is True
        alerts = json.loads(cli("alerts", "--json").stdout)
        assert any(a["metric"] == "roc_auc" and a["subscription"] == "credit" for a in alerts)
        cli("monitor", "disable", "credit", "drift")
        out = json.loads(cli("evaluate", "credit", "--json").stdout)
        assert not any(x["monitor"] == "drift" for x in out["measurements"])
        r = cli("evaluate", "nobody", ok=False)
        assert r.exit_code == 1 and r.stderr.strip() == "error: no subscription named 'nobody'"
