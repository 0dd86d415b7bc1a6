"""The HTML report opened in a real headless Chromium (Debian's package), driven over the
DevTools protocol: it renders without errors and its charts are drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.report import write_report
from tests.browser_support import Browser, artifacts, require_chromium


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


def test_report_renders_and_draws_charts(report: Path, tmp_path: Path) -> None:
    require_chromium()
    assert report.stat().st_size < 1_000_000
    text = report.read_text()
    # self-contained: no script, nothing fetched from elsewhere
    assert "<script" not in text and 'src="http' not in text and 'href="http' not in text
    with Browser(tmp_path / "profile") as browser:
        browser.navigate(report.as_uri())
        assert browser.evaluate("document.readyState") == "complete"
        drawn = browser.evaluate(
            "Array.from(document.querySelectorAll('svg')).filter(s => { const r = s.getBoundingClientRect();"
            " return r.width > 100 && r.height > 80"
            " && s.querySelectorAll('path, use, rect').length > 5; }).length"
        )
        headings = browser.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        browser.screenshot(artifacts("report") / "report.png")
        assert [str(e) for e in browser.errors] == []
        assert all(u.startswith(("file:", "data:", "about:")) for u in browser.requests), browser.requests
    assert drawn >= 8  # metrics over time, drift distributions, fairness bars, confusion matrix
    assert headings[:4] == ["Alerts", "Metrics over time", "Quality", "Fairness"]
