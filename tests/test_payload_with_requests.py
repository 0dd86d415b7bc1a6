"""Payload records and the scoring requests they came in (the OpenScale routes' path) are stored
in ONE transaction: a refused record stores no request, a refused request no record, and a
failure inside the database while the requests are written leaves no record behind."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest

import openmart
from openmart.errors import ValidationError
from tests.models import credit_data


def _counts(mart: openmart.Mart, sub: Any) -> tuple[int, int]:
    requests = mart.sql("SELECT count(*) AS n FROM scoring_requests")["n"][0]
    return sub.payload.count(), int(requests)


def _scored(n: int) -> Any:
    frame = credit_data(n).drop(columns="label")
    return frame.assign(prediction=1, probability=0.7, scoring_id=[f"s{i}" for i in range(n)])


def test_records_and_their_requests_are_stored_together_or_not_at_all(mart: openmart.Mart) -> None:
    sub = mart.subscriptions.add("credit", reference=credit_data(100), label="label", problem_type="binary")
    requests = [{"status": 200, "records": 1, "latency_ms": 3.0, "request_id": f"s{i}"} for i in range(4)]
    ids = sub.payload.log(_scored(4), requests=requests, request_source="openscale")
    assert list(ids) == ["s0", "s1", "s2", "s3"] and _counts(mart, sub) == (4, 4)
    assert set(mart.sql("SELECT source FROM scoring_requests")["source"]) == {"openscale"}

    bad_record = _scored(3).assign(scoring_id=["t0", "t1", "t2"])
    bad_record.loc[1, "probability"] = 7.0
    with pytest.raises(ValidationError):
        sub.payload.log(bad_record, requests=[{"status": 200, "request_id": "t"}])
    assert _counts(mart, sub) == (4, 4)

    with pytest.raises(ValidationError, match="status"):
        sub.payload.log(_scored(3).assign(scoring_id=["u0", "u1", "u2"]), requests=[{"status": "teapot"}])
    assert _counts(mart, sub) == (4, 4)

    # a failure inside the database while the requests are written: the records go too
    with mart.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$"
        )
        conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON scoring_requests EXECUTE FUNCTION refuse()")
    with pytest.raises(psycopg2.Error, match="refused"):
        sub.payload.log(_scored(3).assign(scoring_id=["v0", "v1", "v2"]), requests=[{"status": 200}])
    assert _counts(mart, sub) == (4, 4)
