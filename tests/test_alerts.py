"""Alerts with a lifecycle — open, acknowledged, resolved — through the API, the CLI and the
evaluations that open, update and resolve them; and migration 0004 on a mart with old alerts."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command

import openmart
from openmart.errors import NotFound, ValidationError
from openmart.mart import migrate


def _subscription(mart: openmart.Mart, name: str = "q") -> openmart.api.Subscription:
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, 2))
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    proba = 1 / (1 + np.exp(-2 * x[:, 0]))
    frame = pd.DataFrame(x, columns=["a", "b"])
    sub = mart.subscriptions.add(name, reference=frame.assign(label=y), label="label", problem_type="binary")
    ids = sub.payload.log(frame.assign(prediction=(proba > 0.5).astype(int), probability=proba))
    sub.feedback.log(frame.assign(label=y, scoring_id=list(ids)))
    return sub


def _quality(sub: openmart.api.Subscription, roc_auc: float) -> None:
    """AUC here is about 0.9: a limit of 0.99 breaches, 0.5 passes."""
    sub.monitors.enable("quality", thresholds=[f"roc_auc={roc_auc}"], min_records=10)


def _alerts(mart: openmart.Mart, status: str = "all") -> list[Any]:
    return list(mart.alerts(status=status).itertuples())


def test_lifecycle_through_evaluations_and_people(mart: openmart.Mart) -> None:
    sub = _subscription(mart)
    _quality(sub, 0.99)
    first = sub.evaluate()
    [alert] = _alerts(mart)
    assert first.alerts.opened == (alert.id,)
    assert (alert.status, alert.metric, alert.occurrences) == ("open", "roc_auc", 1)
    assert alert.evaluation_id == alert.last_evaluation_id == first.evaluation_id
    assert alert.message.startswith("q: quality.roc_auc = 0.") and "(below 0.99)" in alert.message

    # the same breach again: the open alert is updated, not opened twice
    second = sub.evaluate()
    [again] = _alerts(mart)
    assert second.alerts.updated == (alert.id,) and not second.alerts.opened
    assert again.id == alert.id and again.occurrences == 2
    assert again.evaluation_id == first.evaluation_id and again.last_evaluation_id == second.evaluation_id

    # acknowledged: still updated by repeats, still acknowledged
    acked = mart.acknowledge_alert(alert.id, by="ana", note="retraining on Monday")
    assert acked.status == "acknowledged" and acked.acknowledged_by == "ana" and acked.acknowledged_at is not None
    assert acked.note == "retraining on Monday"
    assert mart.alerts().empty  # open ones only, by default
    assert list(mart.alerts(status="acknowledged")["id"]) == [alert.id]
    sub.evaluate()
    [still] = _alerts(mart)
    assert (still.status, still.occurrences) == ("acknowledged", 3)
    with pytest.raises(ValidationError, match=f"alert {alert.id} is acknowledged already"):
        mart.acknowledge_alert(alert.id)

    # a later evaluation in which the measurement passes resolves it
    _quality(sub, 0.5)
    passing = sub.evaluate()
    [resolved] = _alerts(mart)
    assert passing.alerts.resolved == (alert.id,)
    assert resolved.status == "resolved" and resolved.resolved_by == "evaluation"
    assert resolved.resolved_evaluation_id == passing.evaluation_id
    with pytest.raises(ValidationError, match="resolved already by evaluation"):
        mart.resolve_alert(alert.id)

    # breached once more: a new alert, the resolved one stays as it was
    _quality(sub, 0.99)
    sub.evaluate()
    old, new = _alerts(mart)
    assert old.id == alert.id and old.status == "resolved"
    assert new.status == "open" and new.occurrences == 1

    # resolved by a person; an acknowledgement of a resolved alert is refused
    done = mart.resolve_alert(new.id, by="bo", note="false alarm")
    assert done.status == "resolved" and done.resolved_by == "bo" and done.resolved_evaluation_id is None
    with pytest.raises(ValidationError, match="only an open alert can be acknowledged"):
        mart.acknowledge_alert(new.id)
    with pytest.raises(NotFound, match="no alert 999"):
        mart.resolve_alert(999)


def test_one_alert_per_feature_and_group(mart: openmart.Mart) -> None:
    """Drift breaches per feature are separate alerts; an undefined or unjudged measurement
    resolves nothing."""
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "label": rng.integers(0, 2, 500)})
    sub = mart.subscriptions.add("d", reference=reference, label="label", problem_type="binary")
    shifted = pd.DataFrame({"a": rng.normal(3, 1, 500), "b": rng.normal(3, 1, 500)})
    sub.payload.log(shifted.assign(prediction=rng.integers(0, 2, 500), probability=0.5))
    sub.monitors.enable("drift", min_records=10)
    result = sub.evaluate()
    frame = mart.alerts()
    by_feature = frame.groupby("feature", dropna=False)["id"].count().to_dict()
    assert by_feature.get("a") and by_feature.get("b")
    assert len(frame) == len({(r.monitor, r.metric, r.feature, r.group) for r in frame.itertuples()})
    assert set(result.alerts.opened) == set(frame["id"])
    again = sub.evaluate()
    assert set(again.alerts.updated) == set(frame["id"]) and not again.alerts.opened
    assert (mart.alerts()["occurrences"] == 2).all()


def test_alerts_filtered_by_subscription_and_status(mart: openmart.Mart) -> None:
    one, two = _subscription(mart, "one"), _subscription(mart, "two")
    for sub in (one, two):
        _quality(sub, 0.99)
        sub.evaluate()
    assert set(mart.alerts()["subscription"]) == {"one", "two"}
    assert list(mart.alerts(subscription="two")["subscription"]) == ["two"]
    first = int(mart.alerts(subscription="one")["id"][0])
    mart.resolve_alert(first)
    assert list(mart.alerts(status="resolved")["id"]) == [first]
    assert len(mart.alerts(status="all")) == 2 and len(mart.alerts(status=None)) == 2
    with pytest.raises(ValidationError, match="choose from open, acknowledged, resolved or all"):
        mart.alerts(status="closed")


def test_cli(mart: openmart.Mart, cli) -> None:  # type: ignore[no-untyped-def]
    sub = _subscription(mart, "credit")
    _quality(sub, 0.99)
    cli("evaluate", "credit")
    listed = json.loads(cli("alerts", "--json").stdout)
    assert [(a["subscription"], a["metric"], a["status"]) for a in listed] == [("credit", "roc_auc", "open")]
    alert_id = listed[0]["id"]
    table = cli("alerts").stdout  # open alerts, as a table
    assert "open" in table and str(alert_id) in table

    acked = json.loads(cli("alerts", "ack", str(alert_id), "--by", "ana", "--note", "on it", "--json").stdout)
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "ana" and acked["note"] == "on it"
    assert json.loads(cli("alerts", "--json").stdout) == []
    shown = json.loads(cli("alerts", "--status", "acknowledged", "--subscription", "credit", "--json").stdout)
    assert [a["id"] for a in shown] == [alert_id]

    r = cli("alerts", "resolve", str(alert_id))
    assert r.stdout.strip().startswith(f"alert {alert_id} resolved: credit: quality.roc_auc")
    assert json.loads(cli("alerts", "--status", "all", "--json").stdout)[0]["status"] == "resolved"

    r = cli("alerts", "resolve", str(alert_id), ok=False)
    assert r.exit_code == 2 and r.stderr.strip() == f"error: alert {alert_id} is resolved already"
    r = cli("alerts", "ack", "999", ok=False)
    assert r.exit_code == 1 and r.stderr.strip() == "error: no alert 999"
    r = cli("alerts", "--status", "closed", ok=False)
    assert r.exit_code == 2 and "choose from open, acknowledged, resolved or all" in r.stderr

    # the evaluations listing, with why one failed
    rows = json.loads(cli("evaluations", "credit", "--json").stdout)
    assert [r["status"] for r in rows] == ["finished"] and rows[0]["records"] == 400


def test_migration_0004_folds_repeated_alerts(mart: openmart.Mart) -> None:
    """A mart at 0003 with the old alerts (one row per breach, 'closed'), then upgraded."""
    sub = _subscription(mart)
    _quality(sub, 0.99)
    for _ in range(3):
        sub.evaluate()
    schema = mart.location.schema
    command.downgrade(migrate.alembic_config(mart.engine, schema), "0003")
    with mart.engine.begin() as conn:
        evaluation_id, measurement_id = conn.exec_driver_sql(
            "SELECT evaluation_id, id FROM measurements WHERE metric = 'roc_auc' ORDER BY id LIMIT 1"
        ).one()
        conn.exec_driver_sql("DELETE FROM alerts")
        for status in ("open", "open", "open", "closed"):
            conn.execute(
                sa.text(
                    "INSERT INTO alerts (subscription_id, evaluation_id, measurement_id, monitor, metric, message, "
                    "status) VALUES (:s, :e, :m, 'quality', 'roc_auc', 'old', :st)"
                ),
                {"s": sub.id, "e": evaluation_id, "m": measurement_id, "st": status},
            )
        conn.exec_driver_sql("UPDATE evaluations SET status = 'running' WHERE id = (SELECT max(id) FROM evaluations)")
    mart.upgrade()
    migrate.check(mart.engine, schema)
    rows = _alerts(mart)
    assert [(r.status, r.occurrences, r.resolved_by if isinstance(r.resolved_by, str) else None) for r in rows] == [
        ("resolved", 1, "migration 0004"),
        ("resolved", 1, "migration 0004"),
        ("open", 3, None),
        ("resolved", 1, "migration 0004"),
    ]
    assert all(r.last_evaluation_id == evaluation_id for r in rows)
    left = sub.evaluations(limit=1)[0]
    assert left.status == "abandoned" and left.error_message == "left running before migration 0004"
    # and the lifecycle goes on from there
    assert sub.evaluate().alerts.updated == (rows[2].id,)
