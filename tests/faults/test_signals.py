"""Stopping a proxy under load: SIGTERM finishes what is in flight, keeps everything and exits 0;
SIGKILL of a ``--durable`` proxy loses nothing answered (the next start replays its journal).
Counted from the mart's own payload table against the scoring ids the clients received."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

import openmart
from openmart.deployments.launch import free_port
from openmart.scoring.proxy import SCORING_ID_HEADER
from tests.faults.conftest import stored_ids, subscribe
from tests.faults.test_sinks import wait_for


class Load:
    """Clients sending single-record requests from threads until stopped (bounded in count)."""

    def __init__(self, url: str, clients: int = 8, limit: int = 400) -> None:
        self.url = url
        self.answered: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(limit,), daemon=True) for _ in range(clients)]
        for t in self._threads:
            t.start()

    def _run(self, limit: int) -> None:
        with httpx.Client(timeout=60) as client:
            for i in range(limit):
                if self._stop.is_set():
                    return
                try:
                    r = client.post(f"{self.url}/predict", json={"sex": "male", "income": 20.0 + i % 60, "debt": 4.0})
                except httpx.TransportError:
                    continue  # the proxy is going away: a request not answered is not a record
                if r.status_code == 200:
                    with self._lock:
                        self.answered.append(r.headers[SCORING_ID_HEADER])

    def count(self) -> int:
        with self._lock:
            return len(self.answered)

    def stop(self) -> list[str]:
        self._stop.set()
        for t in self._threads:
            t.join(120)
        return list(self.answered)


def _start_proxy(env: dict[str, str], port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "openmart.cli.app", "proxy", "credit", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"proxy exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/_openmart/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, "the proxy to answer")
    return proc


@pytest.fixture
def proxy_env(database_url: str, schema_name: str, tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ,
        OPENMART_DATABASE_URL=database_url,
        OPENMART_SCHEMA=schema_name,
        OPENMART_DATA_DIR=str(tmp_path / "data"),
    )


def test_sigterm_under_load_keeps_every_answered_record(
    mart: openmart.Mart, crafted_model: str, proxy_env: dict[str, str]
) -> None:
    sub = subscribe(mart, crafted_model)
    port = free_port()
    proc = _start_proxy(proxy_env, port)
    load = Load(f"http://127.0.0.1:{port}")
    wait_for(lambda: load.count() >= 300, "300 answered requests")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 0
    answered = load.stop()
    ids = stored_ids(mart, sub)
    assert len(ids) == len(set(ids))  # nothing doubled
    assert set(answered) <= set(ids)  # every answered request stored
    assert len(set(ids) - set(answered)) <= 8  # at most the requests in flight when the clients gave up


def test_sigint_stops_a_proxy_started_in_the_background(
    mart: openmart.Mart, crafted_model: str, proxy_env: dict[str, str]
) -> None:
    subscribe(mart, crafted_model)
    port = free_port()
    # a shell's `openmart proxy ... &` starts it with SIGINT ignored
    proc = subprocess.Popen(
        [sys.executable, "-m", "openmart.cli.app", "proxy", "credit", "--port", str(port)],
        env=proxy_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    wait_for(lambda: _answers(port), "the proxy to answer")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) == 0


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/_openmart/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_sigkill_of_a_durable_proxy_loses_nothing_answered(
    mart: openmart.Mart, crafted_model: str, proxy_env: dict[str, str]
) -> None:
    sub = subscribe(mart, crafted_model)
    port = free_port()
    proc = _start_proxy(proxy_env, port, "--durable")
    load = Load(f"http://127.0.0.1:{port}")
    wait_for(lambda: load.count() >= 300, "300 answered requests")
    proc.kill()
    proc.wait(60)
    answered = load.stop()
    before = set(stored_ids(mart, sub))
    # the next start reads what the killed process had journalled and not yet stored
    restarted = _start_proxy(proxy_env, port)
    try:
        wait_for(lambda: set(answered) <= set(stored_ids(mart, sub)), "every answered record in the mart")
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(120) == 0
    ids = stored_ids(mart, sub)
    assert len(ids) == len(set(ids)) and set(answered) <= set(ids)
    print(f"answered {len(answered)}, stored before restart {len(before)}, after {len(ids)}")
