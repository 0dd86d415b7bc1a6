"""Background capture and the durable spool, with a real database that really goes away."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.config import Settings
from openmart.mart.embedded import ensure_running, stop
from openmart.mart.records import new_scoring_ids
from openmart.scoring.capture import PayloadCapture


def _records(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "scoring_id": new_scoring_ids(n).to_pylist(),
            "x": rng.normal(size=n),
            "prediction": rng.integers(0, 2, n),
            "probability": rng.random(n),
        }
    )


@pytest.fixture
def own_server(tmp_path: Path):
    pgdata = tmp_path / "pg"
    server = ensure_running(pgdata)
    yield pgdata, server
    stop(pgdata, mode="immediate")


def test_capture_stores_in_background(mart: openmart.Mart, tmp_path: Path) -> None:
    sub = mart.subscriptions.add(
        "c", reference=pd.DataFrame({"x": [0.0, 1.0], "y": [0, 1]}), label="y", problem_type="binary"
    )
    capture = PayloadCapture(sub, spool_dir=tmp_path / "spool")
    batches = [_records(50, seed) for seed in range(10)]
    for b in batches:
        capture.submit(b)
    assert capture.flush(30)
    capture.close()
    assert capture.stats.stored == 500 and capture.stats.spooled == 0
    stored = sub.payload.read().set_index("scoring_id")
    expected = pd.concat(batches).set_index("scoring_id")
    assert set(stored.index) == set(expected.index)
    assert np.allclose(stored.loc[expected.index, "x"], expected["x"])


def test_spool_keeps_records_while_database_is_down(own_server, tmp_path: Path) -> None:
    pgdata, server = own_server
    settings = Settings(database_url=None, data_dir=tmp_path / "data", secret_key=None)
    mart = openmart.connect(server.url, settings=settings)
    sub = mart.subscriptions.add(
        "s", reference=pd.DataFrame({"x": [0.0, 1.0], "y": [0, 1]}), label="y", problem_type="binary"
    )
    capture = PayloadCapture(sub, spool_dir=tmp_path / "spool", retry_interval=0.2)
    before = _records(100, 1)
    capture.submit(before)
    assert capture.flush(30)

    stop(pgdata, mode="immediate")  # the database blinks
    during = [_records(40, seed) for seed in range(2, 7)]
    for b in during:
        capture.submit(b)  # accepted without waiting
    assert capture.flush(30)
    assert capture.stats.spooled == 200
    assert capture.spool.stats().records == 200

    ensure_running(pgdata)  # back
    after = _records(30, 9)
    capture.submit(after)
    assert capture.flush(30)
    for _ in range(100):  # the writer drains the spool on its own
        if not capture.spool.files():
            break
        import time

        time.sleep(0.1)
    capture.close()
    assert capture.spool.files() == []
    ids = sub.payload.read()["scoring_id"]
    sent = pd.concat([before, *during, after])["scoring_id"]
    assert len(ids) == len(sent) == 330
    assert ids.is_unique and set(ids) == set(sent)  # every record, once
    mart.close()


def test_replaying_a_spooled_batch_twice_stores_it_once(mart: openmart.Mart, tmp_path: Path) -> None:
    from openmart.mart.records import RecordKind, prepare
    from openmart.scoring.spool import Spool

    sub = mart.subscriptions.add(
        "r", reference=pd.DataFrame({"x": [0.0, 1.0], "y": [0, 1]}), label="y", problem_type="binary"
    )
    arrow, _ = prepare(RecordKind.PAYLOAD, _records(25, 3), sub.schema)
    spool = Spool(tmp_path / "spool")
    spool.put(arrow)
    spool.put(arrow)  # e.g. a commit whose acknowledgement was lost, spooled again
    assert spool.drain(mart.engine.raw_connection, sub.payload.table) == 25
    assert sub.payload.count() == 25 and spool.files() == []


def test_a_record_that_does_not_fit_is_set_aside_alone(mart: openmart.Mart, tmp_path: Path) -> None:
    from openmart.mart.capture_store import read_set_aside

    sub = mart.subscriptions.add(
        "k", reference=pd.DataFrame({"x": [0.0, 1.0], "y": [0, 1]}), label="y", problem_type="binary"
    )
    capture = PayloadCapture(sub, spool_dir=tmp_path / "spool")
    batch = _records(3, 4).assign(prediction=[0, 7, 1])  # 7 is not a class of this model
    capture.submit(batch)
    assert capture.flush(30)
    capture.close()
    assert capture.stats.set_aside == 1 and capture.stats.stored == 2
    good = batch["scoring_id"].iloc[[0, 2]]
    assert sorted(sub.payload.read()["scoring_id"]) == sorted(good)  # its neighbours are stored
    (kept,) = read_set_aside(mart.engine, sub.id)
    assert kept.scoring_id == batch["scoring_id"].iloc[1]
    assert "class labels" in kept.reason and "'prediction'" in kept.reason
    assert json.loads(kept.record)["prediction"] == 7  # the record as it arrived
