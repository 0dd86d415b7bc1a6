"""The HTML report opened in a real headless Chromium (Debian's package), driven over the
DevTools protocol: it renders without errors and its charts are drawn."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.deployments.launch import free_port
from openmart.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def report(mart: openmart.Mart, tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"group": rng.choice(["a", "b"], n), "x": rng.normal(size=n), "label": rng.integers(0, 2, n)})
    sub = mart.subscriptions.add("r", reference=frame, label="label", problem_type="binary")
    sub.monitors.enable("quality", min_records=10)
    sub.monitors.enable(
        "fairness", attributes=[{"feature": "group", "monitored": "a", "reference": "b"}], favourable=1, min_records=10
    )
    sub.monitors.enable("drift", min_records=10)
    for shift in (0.0, 1.0):
        batch = frame.assign(x=frame["x"] + shift)
        ids = sub.payload.log(batch.drop(columns="label").assign(prediction=batch["label"], probability=rng.random(n)))
        sub.feedback.log(batch.assign(scoring_id=list(ids)))
        sub.evaluate(last=n)
    return write_report(sub, tmp_path / "report.html")


def _cdp(ws, method: str, params: dict | None = None, _ids=iter(range(1, 10**6))) -> dict:  # type: ignore[no-untyped-def]
    msg_id = next(_ids)
    ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
    while True:
        msg = json.loads(ws.recv())
        if msg.get("id") == msg_id:
            return msg
        _cdp.events.append(msg)  # type: ignore[attr-defined]


_cdp.events = []  # type: ignore[attr-defined]


def test_report_renders_and_draws_charts(report: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium is not installed here")
    import websocket

    assert report.stat().st_size < 1_000_000
    text = report.read_text()
    # self-contained: no script, nothing fetched from elsewhere
    assert "<script" not in text and 'src="http' not in text and 'href="http' not in text
    port = free_port()
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=1).json()
                page = next(t for t in targets if t["type"] == "page")
                break
            except (httpx.TransportError, StopIteration):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=20)
        _cdp.events.clear()  # type: ignore[attr-defined]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            _cdp(ws, domain)
        _cdp(ws, "Page.navigate", {"url": report.as_uri()})
        ready = _cdp(
            ws,
            "Runtime.evaluate",
            {
                "expression": "new Promise(r => { if (document.readyState === "
                "'complete') r(true); else window.addEventListener('load', () => r(true));"
                " })",
                "awaitPromise": True,
            },
        )
        assert ready["result"]["result"]["value"] is True
        drawn = _cdp(
            ws,
            "Runtime.evaluate",
            {
                "expression": (
                    "Array.from(document.querySelectorAll('svg')).filter(s => { const r = s.getBoundingClientRect();"
                    " return r.width > 100 && r.height > 80"
                    " && s.querySelectorAll('path, use, rect').length > 5; }).length"
                ),
                "returnByValue": True,
            },
        )["result"]["result"]["value"]
        headings = _cdp(
            ws,
            "Runtime.evaluate",
            {
                "expression": "Array.from(document.querySelectorAll('h2')).map(h => h.textContent)",
                "returnByValue": True,
            },
        )
        ws.close()
        errors = [
            e
            for e in _cdp.events
            if e.get("method") == "Runtime.exceptionThrown"  # type: ignore[attr-defined]
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        ]
        assert errors == []
        assert drawn >= 8  # metrics over time, drift distributions, fairness bars, confusion matrix
        assert headings["result"]["result"]["value"][:4] == ["Alerts", "Metrics over time", "Quality", "Fairness"]
    finally:
        proc.terminate()
        proc.wait(10)
