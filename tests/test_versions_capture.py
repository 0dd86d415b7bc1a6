"""Model versions in capture: an endpoint that starts answering with a new version (the custom
provider's ``version_header``) starts it in the mart by itself, through the real proxy; and a
version started while capture writes applies in commit order (observed with PostgreSQL
snapshots), every record stored once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.scoring import journal
from openmart.scoring.capture import PayloadCapture
from openmart.scoring.intake import Exchange, IntakeBuilder, provider_decoder
from openmart.scoring.proxy import SCORING_ID_HEADER, CaptureProxy
from tests.models import credit_data

DEADLINE = 120.0


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll a condition (never a fixed sleep as synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


class VersionedModel:
    """A real HTTP deployment (one record per request) that names its model version in the
    ``X-Model-Version`` answer header; ``version`` may change while it serves."""

    def __init__(self, version: str) -> None:
        self.version = version
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                row = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                version = model.version  # read once: the header and the body agree
                body = json.dumps({"prediction": int(float(row["income"]) > 50), "version": version}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Model-Version", version)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def model() -> Iterator[VersionedModel]:
    server = VersionedModel("v1")
    yield server
    server.close()


def test_an_endpoint_answering_a_new_version_starts_it_through_the_proxy(
    mart: openmart.Mart, model: VersionedModel
) -> None:
    mart.bindings.add("web", "custom", {"url": f"{model.url}/predict", "version_header": "X-Model-Version"})
    sub = mart.subscriptions.add(
        "credit",
        reference=credit_data(200),
        label="label",
        problem_type="binary",
        binding="web",
        deployment="/predict",
        asset_revision="v1",
    )
    rows = credit_data(240, seed=3).drop(columns="label").to_dict(orient="records")
    answered: dict[str, str] = {}  # scoring id -> the version the model answered with
    lock = threading.Lock()
    proxy = CaptureProxy(sub)
    proxy.start_in_thread()
    try:

        def client(part: list[dict[str, Any]]) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=60) as http:
                for row in part:
                    answer = http.post("/predict", json=row)
                    assert answer.status_code == 200, answer.text
                    with lock:
                        answered[answer.headers[SCORING_ID_HEADER]] = answer.json()["version"]
                    if len(answered) == 120:  # mid-traffic, while the other clients keep sending
                        model.version = "v2"

        clients = [threading.Thread(target=client, args=(rows[k::4],)) for k in range(4)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        assert proxy.capture.flush(60)
    finally:
        proxy.stop()

    by_version = pd.Series(answered).value_counts().to_dict()
    assert set(by_version) == {"v1", "v2"} and sum(by_version.values()) == 240
    stored = mart.sql(f'SELECT scoring_id, asset_revision FROM "{sub.record.payload_table}"')
    # none lost, none doubled, each with the version its own answer named
    assert len(stored) == 240 and stored["scoring_id"].is_unique
    assert dict(zip(stored["scoring_id"], stored["asset_revision"], strict=True)) == answered
    counted = mart.sql(f'SELECT asset_revision, count(*) AS n FROM "{sub.record.payload_table}" GROUP BY 1').set_index(
        "asset_revision"
    )["n"]
    assert counted.to_dict() == by_version
    versions = {v.version: v for v in sub.versions.list()}
    assert list(versions) == ["v1", "v2"]
    assert versions["v1"].source == "subscribe" and versions["v2"].source == "records"
    assert versions["v2"].current and sub.versions.current == "v2"
    listed = {v["version"]: v["payload"] for v in sub.versions.summary()}
    assert listed == by_version


def test_the_version_header_survives_the_journal(tmp_path: Path) -> None:
    stamp = pd.Timestamp("2026-11-23T10:00:00", tz="UTC")
    plain = Exchange("s-0", stamp, 2.0, b"{}", b"{}", 200)
    kept = Exchange("s-1", stamp, 3.0, b'{"a": 1}', b'{"prediction": 1}', 200, (("x-model-version", "v7"),))
    path = tmp_path / "seg.journal"
    path.write_bytes(journal.encode(plain) + journal.encode(kept))
    assert journal.encode(plain)[:4] == journal.MAGIC  # the frame an older proxy reads
    assert list(journal.decode_file(path)) == [plain, kept]


def test_a_bad_version_header_sets_its_exchange_aside_alone(mart: openmart.Mart) -> None:
    from openmart_custom import CustomProvider

    sub = mart.subscriptions.add("credit", reference=credit_data(50), label="label", problem_type="binary")
    provider = CustomProvider({"url": "http://127.0.0.1:9/predict", "version_header": "X-Model-Version"})
    assert provider.exchange_headers == ("x-model-version",)
    stamp = pd.Timestamp.now(tz="UTC")
    record = json.dumps({"sex": "male", "income": 60.0, "debt": 3.0}).encode()

    def exchange(sid: str, version: str | None) -> Exchange:
        headers = (("x-model-version", version),) if version is not None else ()
        return Exchange(sid, stamp, 1.0, record, b'{"prediction": 1}', 200, headers)

    intake = IntakeBuilder(sub.schema, decoder=provider_decoder(provider)).build(
        [exchange("good", " v3 "), exchange("bad", "v" * 201), exchange("none", None)]
    )
    assert intake.table is not None
    versions = intake.table.select(["scoring_id", "asset_revision"]).to_pylist()
    assert {v["scoring_id"]: v["asset_revision"] for v in versions} == {
        "good": "v3",
        "none": None,  # no header: stamped with the current version when stored
    }
    assert [(a.scoring_id, "x-model-version header" in a.reason) for a in intake.set_aside] == [("bad", True)]
    with pytest.raises(openmart.errors.ValidationError, match="version_header"):
        CustomProvider.validate_settings({"url": "http://h/p", "version_header": "X Model"})


# -- a version started while capture writes ---------------------------------------------------------


def _visible(xids32: np.ndarray, snapshot: str) -> np.ndarray:
    """Which transactions (rows' 32-bit xmin) had committed when the snapshot
    (``pg_current_snapshot()``: ``xmin:xmax:in-progress,...``) was taken."""
    low, high, running = snapshot.split(":")
    xmin, xmax = int(low), int(high)
    xids = (xmin >> 32 << 32) | xids32  # in the snapshot's epoch
    xids = np.where(xids > xmax + (1 << 31), xids - (1 << 32), xids)
    in_progress = np.isin(xids, [int(x) for x in running.split(",") if x])
    return (xids < xmin) | ((xids < xmax) & ~in_progress)


def test_a_version_started_during_capture_applies_in_commit_order(mart: openmart.Mart, tmp_path: Path) -> None:
    sub = mart.subscriptions.add("credit", reference=credit_data(200), label="label", problem_type="binary")
    started = ["2", "3", "4", "5", "6"]
    order = {v: k for k, v in enumerate(["1", *started])}
    capture = PayloadCapture(sub, spool_dir=tmp_path / "spool", flush_interval=0.005)
    base = credit_data(20, seed=5).drop(columns="label").assign(prediction=1)
    stop = threading.Event()
    submitted = 0
    observations: list[tuple[str, str]] = []  # (snapshot, current version), as PostgreSQL says them

    def produce() -> None:
        nonlocal submitted
        while not stop.is_set():
            ids = [f"r{submitted + i:07d}" for i in range(len(base))]
            capture.submit(base.assign(scoring_id=ids))
            submitted += len(base)
            # keep a small backlog: batches keep coming while the versions start
            _wait_for(lambda n=submitted: capture.stats.stored >= n - 200, "capture to keep up")

    def observe() -> None:
        # the current version and, in the same statement, the snapshot it was read in
        raw = mart.engine.raw_connection()
        try:
            raw.autocommit = True
            with raw.cursor() as cur:
                while not stop.is_set():
                    cur.execute(
                        "SELECT pg_current_snapshot()::text, asset_revision FROM subscriptions WHERE id = %s", (sub.id,)
                    )
                    seen = cur.fetchone()
                    if not observations or observations[-1] != seen:
                        observations.append(seen)
        finally:
            raw.close()

    threads = [threading.Thread(target=produce), threading.Thread(target=observe)]
    for t in threads:
        t.start()
    try:
        other = mart.subscriptions.get("credit")  # another connection's API object
        for version in started:
            before = capture.stats.stored
            _wait_for(lambda b=before: capture.stats.stored >= b + 300, "records between two starts")
            assert other.versions.start(version) is True
        _wait_for(lambda: capture.stats.stored >= before + 600, "records after the last start")
    finally:
        stop.set()
        for t in threads:
            t.join()
        assert capture.flush(60)
        capture.close()

    stored = mart.sql(
        f'SELECT scoring_id, asset_revision, xmin::text::bigint AS xid FROM "{sub.record.payload_table}" '
        "ORDER BY scoring_id"
    )
    # every record stored once
    assert len(stored) == submitted and stored["scoring_id"].is_unique
    rank = stored["asset_revision"].map(order)
    assert rank.notna().all(), stored["asset_revision"].unique()
    # in the order the batches were written (one writer: submission order) versions only move on
    assert rank.is_monotonic_increasing
    assert set(stored["asset_revision"]) == set(order)  # each version got records of its own
    # commit order: a record whose batch committed before a snapshot is not of a newer version
    # than the snapshot saw; one that committed after it is not of an older one
    assert len({current for _, current in observations}) == len(order)
    xids, ranks = stored["xid"].to_numpy(dtype=np.int64), rank.to_numpy()
    for snapshot, current in observations:
        visible = _visible(xids, snapshot)
        newer = visible & (ranks > order[current])
        older = ~visible & (ranks < order[current])
        assert not newer.any(), (snapshot, current, stored[newer].head())
        assert not older.any(), (snapshot, current, stored[older].head())
