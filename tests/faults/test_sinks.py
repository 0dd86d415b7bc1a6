"""Capture under sink faults: the database cut mid-traffic, the spool read-only or full, two
marts sharing one data directory. Every request answered 2xx is counted from the mart's own
tables: stored exactly once, or (only past the memory bound, with every sink down) counted as
dropped and reported."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd

from openmart.mart.capture_store import read_events
from openmart.mart.records import new_scoring_ids
from openmart.scoring.capture import PayloadCapture
from openmart.scoring.intake import provider_decoder
from openmart.scoring.proxy import SCORING_ID_HEADER, CaptureProxy
from tests.faults.conftest import Blinking, SmallFilesystem, stored_ids, subscribe


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def send(url: str, n: int, start: int = 0) -> list[str]:
    """n single-record requests; the scoring ids of those answered 200."""
    answered = []
    with httpx.Client(timeout=60) as client:
        for i in range(start, start + n):
            r = client.post(f"{url}/predict", json={"sex": "female", "income": 30.0 + i % 40, "debt": 5.0})
            if r.status_code == 200:
                answered.append(r.headers[SCORING_ID_HEADER])
    return answered


def _proxy(sub, **capture_options) -> tuple[CaptureProxy, str]:  # type: ignore[no-untyped-def]
    capture = PayloadCapture(sub, decoder=provider_decoder(sub.provider()), retry_interval=0.1, **capture_options)
    proxy = CaptureProxy(sub, capture=capture)
    return proxy, proxy.start_in_thread()


def _count(blinking: Blinking, sub) -> int:  # type: ignore[no-untyped-def]
    try:
        with blinking.connect() as mart:
            return len(stored_ids(mart, sub))
    except Exception:
        return -1  # still away


def test_database_cut_mid_traffic_loses_nothing(blinking: Blinking, crafted_model: str) -> None:
    mart = blinking.connect()
    sub = subscribe(mart, crafted_model)
    proxy, url = _proxy(sub)
    try:
        answered = send(url, 100)
        blinking.cut()
        answered += send(url, 100, 100)  # answered while the mart is away: spooled
        wait_for(lambda: proxy.capture.stats.spooled >= 100, "the outage's records to reach the spool")
        blinking.restore()
        answered += send(url, 100, 200)
        wait_for(lambda: _count(blinking, sub) >= 300, "all records in the mart")
    finally:
        proxy.stop()
    assert len(answered) == 300
    with blinking.connect() as mart:
        ids = stored_ids(mart, sub)
    assert len(ids) == len(set(ids)) == 300 and set(ids) == set(answered)  # every one, once
    assert proxy.capture.stats.dropped == 0 and proxy.capture.spool.files() == []


def test_read_only_spool_with_the_database_away_buffers_then_stores(
    blinking: Blinking, crafted_model: str, small_fs: SmallFilesystem
) -> None:
    mart = blinking.connect()
    sub = subscribe(mart, crafted_model)
    small_fs.read_only(True)
    proxy, url = _proxy(sub, spool_dir=small_fs.root / "spool")
    try:
        blinking.cut()
        answered = send(url, 80)
        wait_for(lambda: proxy.capture.health()["buffered"] == 80, "80 records held in memory")
        health = httpx.get(f"{url}/_openmart/health").json()
        assert health["status"] == "degraded" and health["buffered"] == 80 and health["dropped"] == 0
        blinking.restore()
        wait_for(lambda: _count(blinking, sub) >= 80, "the buffered records in the mart")
        assert httpx.get(f"{url}/_openmart/health").json()["status"] == "ok"
    finally:
        proxy.stop()
    with blinking.connect() as mart:
        ids = stored_ids(mart, sub)
    assert len(ids) == len(set(ids)) == 80 and set(ids) == set(answered)
    assert proxy.capture.stats.dropped == 0


def test_full_disk_past_the_memory_bound_counts_and_reports_what_it_drops(
    blinking: Blinking, crafted_model: str, small_fs: SmallFilesystem
) -> None:
    mart = blinking.connect()
    sub = subscribe(mart, crafted_model)
    small_fs.fill()
    proxy, url = _proxy(sub, spool_dir=small_fs.root / "spool", max_buffered=50)
    try:
        blinking.cut()
        answered = send(url, 120)
        wait_for(lambda: proxy.capture.stats.dropped + proxy.capture.health()["buffered"] == 120, "120 handled")
        health = httpx.get(f"{url}/_openmart/health")
        assert health.status_code == 503
        assert health.json()["status"] == "degraded"
        assert health.json()["buffered"] == 50 and health.json()["dropped"] == 70
        small_fs.free()  # the disk has room again: the buffer goes to the spool
        wait_for(lambda: proxy.capture.health()["buffered"] == 0, "the buffer spooled")
        assert proxy.capture.spool.stats().records == 50
        blinking.restore()
        wait_for(lambda: _count(blinking, sub) >= 50, "the spooled records in the mart")
        wait_for(lambda: not proxy.capture.degraded, "the drop reported to the mart")
    finally:
        proxy.stop()
    with blinking.connect() as mart:
        ids = stored_ids(mart, sub)
        events = read_events(mart.engine, sub.id)
    assert len(ids) == len(set(ids)) == 50 and set(ids) <= set(answered)
    assert [e["counts"]["dropped"] for e in events] == [70]  # stored + dropped == answered
    assert len(ids) + sum(e["counts"]["dropped"] for e in events) == len(answered) == 120


def test_two_marts_sharing_a_data_directory_keep_their_own_records(blinking: Blinking, tmp_path: Path) -> None:
    ref = pd.DataFrame({"x": [0.0, 1.0], "y": [0, 1]})
    marts = [blinking.connect("mart_a"), blinking.connect("mart_b")]
    subs = [m.subscriptions.add("same", reference=ref, label="y", problem_type="binary") for m in marts]
    assert subs[0].id == subs[1].id  # same name, same id: only the mart's own id tells them apart
    captures = [PayloadCapture(s, retry_interval=0.1) for s in subs]
    assert captures[0].spool.folder != captures[1].spool.folder
    blinking.cut()
    sent = []
    for capture, n in zip(captures, (30, 40), strict=True):
        batch = pd.DataFrame({"scoring_id": new_scoring_ids(n).to_pylist(), "x": 0.5, "prediction": 1})
        capture.submit(batch)
        assert capture.flush(60)
        sent.append(set(batch["scoring_id"]))
    assert [c.stats.spooled for c in captures] == [30, 40]
    blinking.restore()
    for capture in captures:
        wait_for(lambda c=capture: not c.spool.files(), "the spool drained")
        capture.close()
    for schema, s, expected in zip(("mart_a", "mart_b"), subs, sent, strict=True):
        with blinking.connect(schema) as mart:
            ids = stored_ids(mart, s)
        assert len(ids) == len(set(ids)) and set(ids) == expected
