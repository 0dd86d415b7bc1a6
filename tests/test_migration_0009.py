"""Migration 0009 (model versions, labelled sets) over a mart that held data at 0008: today's
reference becomes the training set of the subscription's version, payload records without a
version get it, nothing is lost, drift still evaluates; and the downgrade keeps the reference.

The subscriptions are made with today's API, the mart is then taken down to 0008 with alembic's
command API (the shape 0008 had), and what 0008 would have held is written there with plain SQL:
payload records without a version, feedback without a version column, more reference rows, and a
subscription with no asset revision at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from alembic import command

import openmart
from openmart.mart import migrate
from tests.models import credit_data

FEATURES = ["sex", "income", "debt"]


def _sql(mart: openmart.Mart, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with mart.engine.connect() as conn:
        result = conn.exec_driver_sql(sql, params or {}) if params else conn.exec_driver_sql(sql)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _run(mart: openmart.Mart, sql: str, params: dict[str, Any] | None = None) -> None:
    with mart.engine.begin() as conn:
        conn.exec_driver_sql(sql, params or {}) if params else conn.exec_driver_sql(sql)


def _columns(mart: openmart.Mart, table: str) -> set[str]:
    return set(
        _sql(
            mart,
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %(t)s",
            {"t": table},
        )["column_name"]
    )


def _scored(n: int, seed: int) -> pd.DataFrame:
    data = credit_data(n, seed=seed)
    return data.drop(columns="label").assign(prediction=data["label"], probability=np.linspace(0.1, 0.9, n))


def test_migration_0009_keeps_the_reference_versions_every_record_and_downgrades(mart: openmart.Mart) -> None:
    schema = mart.location.schema
    config = migrate.alembic_config(mart.engine, schema)
    credit = mart.subscriptions.add(
        "credit", reference=credit_data(300), label="label", problem_type="binary", asset_revision="r7"
    )
    plain = mart.subscriptions.add("plain", reference=credit_data(80, seed=4), label="label", problem_type="binary")
    credit.payload.log(_scored(50, 1).assign(scoring_id=[f"h{i}" for i in range(50)]))
    tables = credit.record.tables

    # -- at 0008 ---------------------------------------------------------------------------------
    command.downgrade(config, "0008")
    assert "environment" not in _columns(mart, tables["reference"])
    assert "asset_revision" not in _columns(mart, tables["feedback"])
    assert "model_versions" not in set(
        _sql(mart, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")[
            "table_name"
        ]
    )
    _run(mart, "UPDATE subscriptions SET asset_revision = NULL WHERE name = 'plain'")
    payload, feedback, reference = tables["payload"], tables["feedback"], tables["reference"]
    # payload written at 0008: some with a version of their own, most without
    for i, row in _scored(40, 2).reset_index(drop=True).iterrows():
        _run(
            mart,
            f'INSERT INTO "{payload}" (scoring_id, asset_revision, sex, income, debt, prediction, probability) '
            "VALUES (%(id)s, %(v)s, %(sex)s, %(income)s, %(debt)s, %(prediction)s, %(probability)s)",
            {"id": f"o{i}", "v": "r6" if i < 10 else None, **row.to_dict()},
        )
    for i, row in credit_data(25, seed=3).reset_index(drop=True).iterrows():
        _run(
            mart,
            f'INSERT INTO "{feedback}" (scoring_id, sex, income, debt, label) '
            "VALUES (%(id)s, %(sex)s, %(income)s, %(debt)s, %(label)s)",
            {"id": f"o{i}", **row.to_dict()},
        )
    _run(
        mart,
        f'INSERT INTO "{reference}" (sex, income, debt, label) VALUES (%(sex)s, %(income)s, %(debt)s, %(label)s)',
        {"sex": "female", "income": 12.5, "debt": 3.25, "label": 1},
    )
    old_reference = _sql(mart, f'SELECT * FROM "{reference}" ORDER BY record_id')
    old_payload = _sql(mart, f'SELECT scoring_id, asset_revision FROM "{payload}" ORDER BY scoring_id')
    assert len(old_reference) == 301 and len(old_payload) == 90
    assert old_payload["asset_revision"].isna().sum() == 30

    # -- to head ---------------------------------------------------------------------------------
    mart.upgrade()
    migrate.check(mart.engine, schema)
    credit, plain = mart.subscriptions.get("credit"), mart.subscriptions.get("plain")
    assert (credit.record.asset_revision, credit.reference_version) == ("r7", "r7")
    assert (plain.record.asset_revision, plain.reference_version) == ("1", "1")
    sets = _sql(mart, f'SELECT environment, asset_revision, count(*) AS n FROM "{reference}" GROUP BY 1, 2')
    assert sets.to_dict(orient="records") == [{"environment": "training", "asset_revision": "r7", "n": 301}]
    plain_sets = _sql(mart, f'SELECT DISTINCT environment, asset_revision FROM "{plain.record.reference_table}"')
    assert plain_sets.to_dict(orient="records") == [{"environment": "training", "asset_revision": "1"}]

    # THE reference, row for row
    read = credit.reference.read()
    pd.testing.assert_frame_equal(
        read[["record_id", *FEATURES, "label"]].reset_index(drop=True),
        old_reference[["record_id", *FEATURES, "label"]].reset_index(drop=True),
        check_dtype=False,
    )
    assert credit.reference.count() == 301

    # payload: nothing lost; those without a version got the subscription's, the others kept theirs
    now = _sql(mart, f'SELECT scoring_id, asset_revision FROM "{payload}" ORDER BY scoring_id')
    assert list(now["scoring_id"]) == list(old_payload["scoring_id"])
    assert now["asset_revision"].notna().all()
    expected = old_payload["asset_revision"].fillna("r7")
    assert list(now["asset_revision"]) == list(expected)
    assert "asset_revision" in _columns(mart, feedback)
    assert _sql(mart, f'SELECT count(*) AS n FROM "{feedback}"')["n"][0] == 25

    versions = _sql(
        mart, "SELECT subscription_id, version, source FROM model_versions ORDER BY subscription_id, version"
    )
    assert versions.to_dict(orient="records") == [
        {"subscription_id": credit.id, "version": "r6", "source": "records"},  # carried by records at 0008
        {"subscription_id": credit.id, "version": "r7", "source": "migration"},
        {"subscription_id": plain.id, "version": "1", "source": "migration"},
    ]
    summary = {v["version"]: v for v in credit.versions.summary()}
    assert (summary["r7"]["payload"], summary["r7"]["training"], summary["r7"]["current"]) == (80, 301, True)
    assert (summary["r6"]["payload"], summary["r6"]["training"], summary["r6"]["current"]) == (10, 0, False)

    # drift evaluates against the migrated reference: income moved, the rest did not
    credit.payload.log(_scored(300, 9).assign(income=lambda d: d["income"] + 40))
    credit.monitors.enable("drift", min_records=50)
    result = credit.evaluate()
    assert result.status == "finished"
    breached = {m.feature for m in result.breaches if m.monitor == "drift"}
    assert "income" in breached and "debt" not in breached

    # -- down to 0008 again: THE reference stays, the other sets go ---------------------------------
    credit.reference.load(credit_data(30, seed=11), environment="validation", version="r7")
    assert credit.reference.count() == 301
    command.downgrade(config, "0008")
    kept = _sql(mart, f'SELECT * FROM "{reference}" ORDER BY record_id')
    pd.testing.assert_frame_equal(kept, old_reference, check_dtype=False)
    mart.upgrade()  # and back: the same reference, once more
    assert mart.subscriptions.get("credit").reference.count() == 301
