"""The REST API's evaluations (202, then polled; 409 when busy), measurements, alerts and
explanations, against a real ``openmart serve``; answers checked against the mart's tables."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import openmart
from openmart.errors import EvaluationFailed
from openmart.mart import evaluations as evaluations_table
from tests.rest_support import FEATURES, Model, count, keys, records, service, subscribe, wait_for

API = "/api/v1"


def labelled(mart: openmart.Mart) -> openmart.api.Subscription:
    """A subscription whose feedback has predictions already: evaluations need no deployment."""
    sub = subscribe(mart)
    rows = records(300, 1, ids="p", label=True)
    sub.payload.log(pd.DataFrame(rows).drop(columns=["label"]))
    sub.feedback.log(pd.DataFrame(rows))
    # accuracy is about 0.8: a lower limit of 0.99 breaches
    sub.monitors.enable("quality", thresholds=["accuracy=0.99", "roc_auc=0.1"], min_records=10)
    return sub


def finished(client: httpx.Client, location: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        answer = client.get(location)
        assert answer.status_code == 200, answer.text
        body = dict(answer.json())
        return body if body["status"] != "running" else None

    return wait_for(done, f"{location} to finish")


def test_evaluations_measurements_and_alerts(
    database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart
) -> None:
    labelled(mart)
    key = keys(mart)
    with service(database_url, schema_name, tmp_path) as svc, svc.client(key["write"]) as client:
        started = client.post(f"{API}/subscriptions/credit/evaluations", json={"kinds": ["quality"]})
        assert started.status_code == 202, started.text
        eid = started.json()["id"]
        location = started.headers["location"]
        assert location == f"{API}/subscriptions/credit/evaluations/{eid}" == started.json()["location"]
        result = finished(client, location)
        assert result["status"] == "finished", result
        assert result["records"] == 300 and result["monitors"]["quality"]["status"] == "ok"
        # the result is the mart's: its measurements and the alert it opened
        stored = mart.sql(
            f"SELECT id, metric, value, breached FROM measurements WHERE evaluation_id = {eid} ORDER BY id"
        )
        assert [m["id"] for m in result["measurements"]] == stored["id"].tolist()
        accuracy = next(m for m in result["measurements"] if m["metric"] == "accuracy")
        assert accuracy["breached"] and accuracy["value"] == pytest.approx(
            float(stored.set_index("metric")["value"]["accuracy"])
        )
        [alert] = result["alerts"]
        assert (alert["metric"], alert["status"], alert["evaluation_id"]) == ("accuracy", "open", eid)
        listed = client.get(f"{API}/subscriptions/credit/evaluations").json()
        assert [e["id"] for e in listed] == [eid] and listed[0]["status"] == "finished"
        assert client.get(f"{API}/subscriptions/credit/evaluations", params={"status": "failed"}).json() == []
        assert client.get(f"{API}/subscriptions/credit/evaluations/{eid + 100}").status_code == 404

        # measurements and their filters
        everything = client.get(f"{API}/subscriptions/credit/measurements").json()
        assert len(everything) == count(mart, "measurements")
        only = client.get(f"{API}/subscriptions/credit/measurements", params={"metric": "accuracy"}).json()
        assert [m["metric"] for m in only] == ["accuracy"]
        assert client.get(f"{API}/subscriptions/credit/measurements", params={"monitor": "drift"}).json() == []
        measured = only[0]["measured_at"]
        assert len(client.get(f"{API}/subscriptions/credit/measurements", params={"since": measured}).json()) == len(
            everything
        )
        assert client.get(f"{API}/subscriptions/credit/measurements", params={"until": measured}).json() == []
        bad = client.get(f"{API}/subscriptions/credit/measurements", params={"since": "yesterday-ish"})
        assert bad.status_code == 422 and "since" in bad.json()["error"]["message"]

        # alerts: list, acknowledge (by the key's name unless given), resolve with a note
        open_ = client.get(f"{API}/alerts").json()
        assert [a["id"] for a in open_] == [alert["id"]]
        assert client.get(f"{API}/alerts", params={"subscription": "other"}).json() == []
        acked = client.post(f"{API}/alerts/{alert['id']}/acknowledge", json={"note": "on it"})
        assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "write-key"
        assert client.get(f"{API}/alerts", params={"status": "acknowledged"}).json()[0]["note"] == "on it"
        done = client.post(f"{API}/alerts/{alert['id']}/resolve", json={"by": "ana", "note": "retrained"})
        assert done.status_code == 200 and done.json()["status"] == "resolved"
        row = mart.sql(f"SELECT status, acknowledged_by, resolved_by, note FROM alerts WHERE id = {alert['id']}").iloc[
            0
        ]
        assert (row.status, row.acknowledged_by, row.resolved_by, row.note) == (
            "resolved",
            "write-key",
            "ana",
            "retrained",
        )
        assert client.get(f"{API}/alerts").json() == []
        assert client.post(f"{API}/alerts/{alert['id'] + 100}/resolve").status_code == 404
        assert client.get(f"{API}/alerts", params={"status": "closed"}).status_code == 422

        # a bad window is refused before anything starts
        before = count(mart, "evaluations")
        bad = client.post(
            f"{API}/subscriptions/credit/evaluations", json={"since": "2030-01-01", "until": "2020-01-01"}
        )
        assert bad.status_code == 422 and count(mart, "evaluations") == before
        assert client.post(f"{API}/subscriptions/credit/evaluations", json={"last": 0}).status_code == 422


def test_a_busy_subscription_answers_409_or_waits(
    database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart
) -> None:
    """Another evaluation holds the subscription's lock (taken here, as a running evaluation
    holds it): wait=false answers 409 at once, wait=true answers once it could start."""
    sub = labelled(mart)
    key = keys(mart)
    with service(database_url, schema_name, tmp_path) as svc, svc.client(key["write"]) as client:
        url = f"{API}/subscriptions/credit/evaluations"
        with mart.engine.connect() as holder:
            lock = evaluations_table.lock_key(holder, sub.id)
            evaluations_table.lock(holder, lock)
            holder.commit()
            busy = client.post(url, json={"wait": False})
            assert busy.status_code == 409 and busy.json()["error"]["type"] == "EvaluationBusy"
            assert count(mart, "evaluations") == 0

            answers: list[httpx.Response] = []
            waiting = threading.Thread(target=lambda: answers.append(client.post(url, json={"wait": True})))
            waiting.start()

            def blocked() -> bool:
                sql = "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                return int(mart.sql(sql)["n"][0]) > 0

            wait_for(blocked, "the service's evaluation to wait for the lock")
            assert not answers and count(mart, "evaluations") == 0
            evaluations_table.unlock(holder, lock)
            holder.commit()
        waiting.join(timeout=300)
        [answer] = answers
        assert answer.status_code == 202, answer.text
        assert finished(client, answer.headers["location"])["status"] == "finished"
        assert count(mart, "evaluations") == 1


def test_explanations(database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart) -> None:
    model = Model()
    key = keys(mart)
    try:
        with service(database_url, schema_name, tmp_path) as svc, svc.client(key["admin"]) as admin:
            made = admin.post(
                f"{API}/bindings",
                json={
                    "name": "model",
                    "provider": "custom",
                    "settings": {"url": f"{model.url}/predict", "mode": "records"},
                },
            )
            assert made.status_code == 201, made.text
            ref = [{k: r[k] for k in (*FEATURES, "label")} for r in records(200, 3, label=True)]
            body = {
                "name": "credit",
                "reference": ref,
                "label": "label",
                "problem_type": "binary",
                "binding": "model",
                "deployment": "/predict",
            }
            made = admin.post(f"{API}/subscriptions", json=body)
            assert made.status_code == 201, made.text
            assert admin.post(f"{API}/subscriptions/credit/payload", json=records(5, 4, ids="x")).status_code == 201
            with svc.client(key["write"]) as client:
                explained = client.post(f"{API}/subscriptions/credit/explanations", json={"scoring_id": "x-2"})
                assert explained.status_code == 200, explained.text
                result = explained.json()
                assert set(result["attributions"]) == set(FEATURES) and not result["cached"]
                assert result["scoring_calls"] > 0
                again = client.post(f"{API}/subscriptions/credit/explanations", json={"scoring_id": "x-2"}).json()
                assert again["cached"] and again["attributions"] == pytest.approx(result["attributions"])
                missing = client.post(f"{API}/subscriptions/credit/explanations", json={"scoring_id": "nope"})
                assert missing.status_code == 404
                wrong = client.post(
                    f"{API}/subscriptions/credit/explanations", json={"scoring_id": "x-2", "method": "guess"}
                )
                assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "method"
                recent = client.get(f"{API}/subscriptions/credit/explanations").json()
                assert [r["scoring_id"] for r in recent] == ["x-2"] and count(mart, "explanations") == 1
    finally:
        model.close()


def test_on_started_hears_the_running_evaluation_and_its_failure_is_recorded(mart: openmart.Mart) -> None:
    """The runner's ``on_started`` (what the REST API answers with): called once the row is
    ``running`` and visible to others; what it raises fails the evaluation like any error."""
    sub = labelled(mart)
    seen: list[tuple[int, str]] = []

    def note(evaluation_id: int) -> None:
        status = mart.sql(f"SELECT status FROM evaluations WHERE id = {evaluation_id}")["status"][0]
        seen.append((evaluation_id, status))

    result = sub.evaluate(on_started=note)
    assert seen == [(result.evaluation_id, "running")]

    def boom(evaluation_id: int) -> None:
        raise RuntimeError("the caller broke")

    with pytest.raises(EvaluationFailed) as failed:
        sub.evaluate(on_started=boom)
    row = sub.evaluation(failed.value.evaluation_id)
    assert (row.status, row.error_type) == ("failed", "RuntimeError")
    assert count(mart, "measurements") == len(result.measurements)  # nothing of the failed one
