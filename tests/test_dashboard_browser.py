"""The live dashboard (issue 16) in a real headless Chromium against a real ``openmart serve``,
with the quickstart's story in the mart: a diabetes model served by a local deployment, traffic
through the capture proxy, BMI drifting halfway, an evaluation after each quarter. A second,
small subscription does not drift.

One setup for the module (the story once, the service once, a browser logged in through the
form with a write key); each test then drives pages as a person would: the overview's chips,
the drifting subscription's drift tab (drifting features first), every tab, acknowledging an
alert (the mart changes, the row follows without a reload), a new evaluation appearing without
a reload, and a read-only key whose buttons are disabled. Screenshots of each page land in
``$OPENMART_TEST_ARTIFACTS/dashboard/`` (``test-artifacts/dashboard/`` by default)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import openmart
from openmart import quickstart
from openmart.config import Settings
from tests.browser_support import Browser, artifacts, require_chromium
from tests.service_support import Service, running_service

pytestmark = pytest.mark.slow

DRIFTING = quickstart.NAME  # the quickstart's subscription: BMI (and s5) shift halfway
STEADY = "steady-scorer"  # logs its own reference back: its drift monitor passes
FRESH = "fresh-model"  # too few records yet: its drift chip says no data
SHIFTED = {"bmi", "s5"}  # what quickstart.traffic() moves in the second half
RECORDS = 600  # enough that the last quarter's BMI breaches (tests/test_quickstart.py uses 400)
TABS = ("quality", "drift", "fairness", "performance", "explanations", "alerts")
WRITER = "dashboard-writer"
READER = "dashboard-reader"


@dataclass
class Story:
    mart: openmart.Mart
    service: Service
    writer_key: str
    reader_key: str
    workdir: Path

    def page(self, path: str = "/", **query: str) -> str:
        """A dashboard URL with fast polling (``poll=500``)."""
        params = "&".join(f"{k}={v}" for k, v in {**query, "poll": "500"}.items())
        return f"{self.service.url}/dashboard{path}?{params}"


def _small_subscriptions(mart: openmart.Mart) -> None:
    """``steady-scorer``, whose traffic is its reference (drift ok), and ``fresh-model``, with
    too little traffic for its drift monitor (no data)."""
    rng = np.random.default_rng(3)
    n = 300
    reference = pd.DataFrame(
        {"tenure": rng.normal(24, 6, n), "plan": rng.choice(["basic", "plus"], n), "label": rng.integers(0, 2, n)}
    )
    scored = reference.drop(columns="label").assign(prediction=reference["label"], probability=rng.random(n))
    steady = mart.subscriptions.add(STEADY, reference=reference, label="label", problem_type="binary")
    steady.monitors.enable("drift", min_records=50)
    steady.payload.log(scored)
    result = steady.evaluate()
    assert not result.breaches and [o.status for o in result.outcomes] == ["ok"], result
    fresh = mart.subscriptions.add(FRESH, reference=reference, label="label", problem_type="binary")
    fresh.monitors.enable("drift", min_records=100)
    fresh.payload.log(scored.head(20))
    fresh.evaluate()


@pytest.fixture(scope="module")
def story(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    require_chromium()
    home = tmp_path_factory.mktemp("dashboard-browser")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    settings = Settings(database_url=None, data_dir=home / "data", secret_key=None)
    mart = openmart.connect(database_url, schema=schema, settings=settings)
    try:
        result = quickstart.run(mart, records=RECORDS, workdir=home / "quickstart")
        breached = {(m.monitor, m.feature) for m in result.final.breaches}
        assert ("drift", "bmi") in breached, f"the story's last evaluation did not breach drift on bmi: {breached}"
        _small_subscriptions(mart)
        _, writer_key = mart.keys.create(WRITER, "write")
        _, reader_key = mart.keys.create(READER, "read")
        with running_service(database_url, schema, home) as service:
            yield Story(mart, service, writer_key, reader_key, home)
    finally:
        mart.close()
        from openmart.mart.engine import resolve

        engine = sa.create_engine(resolve(database_url, Settings.from_env()).url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


def log_in(browser: Browser, story: Story, key: str, path: str = "/", **query: str) -> None:
    """Open a page with no session yet, land on the login form, type the key, submit: back on
    the page asked for."""
    wanted = story.page(path, **query)
    browser.navigate(wanted)
    assert urlsplit(browser.url).path == "/dashboard/login", browser.url
    assert browser.count("form#login input[name=key]") == 1
    browser.type("form#login input[name=key]", key)
    with browser.expect_load():
        browser.click("form#login button[type=submit]")
    assert browser.url == wanted
    assert browser.count("form#login") == 0 and browser.count("main") == 1


@pytest.fixture(scope="module")
def logged_in(story: Story, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(tmp_path_factory.mktemp("chromium") / "profile") as browser:
        log_in(browser, story, story.writer_key)
        assert browser.count("table#subscriptions") == 1
        yield browser


@pytest.fixture
def browser(logged_in: Browser) -> Browser:
    """The logged-in browser with its log emptied: each test checks the errors of its own pages."""
    logged_in.clear()
    return logged_in


def shot(browser: Browser, name: str) -> Path:
    return browser.screenshot(artifacts("dashboard") / f"{name}.png")


def assert_clean(browser: Browser, story: Story) -> None:
    """No console error or uncaught exception, and nothing requested from another host (the
    DevTools' network log over the whole test, and the current page's resource timings)."""
    assert [str(e) for e in browser.errors] == []
    origin = story.service.url
    offsite = [u for u in browser.requests if not u.startswith((origin + "/", "data:", "about:"))]
    assert offsite == []
    resources = browser.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert resources, "the page loaded no resource at all (its script and style sheet are expected)"
    assert [u for u in resources if not u.startswith(origin + "/")] == []


def js(selector: str) -> str:
    return json.dumps(selector)


def chips(browser: Browser, subscription: str) -> dict[str, str]:
    return dict(
        browser.evaluate(
            f"Array.from(document.querySelectorAll('tr[data-subscription=\"{subscription}\"] span.chip'))"
            ".map(c => [c.dataset.monitor, c.dataset.status])"
        )
    )


def field(browser: Browser, subscription: str, name: str) -> str:
    return browser.text(f'tr[data-subscription="{subscription}"] td[data-field="{name}"]') or ""


def drift_features(browser: Browser) -> list[dict[str, Any]]:
    return list(
        browser.evaluate(
            "Array.from(document.querySelectorAll('ol#drift-features > li')).map(li => ({"
            "feature: li.dataset.feature, drifted: li.dataset.drifted, score: li.dataset.score,"
            " link: li.querySelector('a') !== null}))"
        )
    )


def mark_page(browser: Browser) -> None:
    """A marker a reload would lose."""
    browser.evaluate("window.__noReload = 1")


def not_reloaded(browser: Browser) -> bool:
    return browser.evaluate("window.__noReload") == 1


# -- the overview ----------------------------------------------------------------------------------


def test_overview_shows_the_drifted_subscription_breached_and_the_steady_one_ok(browser: Browser, story: Story) -> None:
    browser.navigate(story.page("/"))
    rows = browser.evaluate(
        "Array.from(document.querySelectorAll('table#subscriptions tr[data-subscription]'))"
        ".map(r => r.dataset.subscription)"
    )
    assert rows == [DRIFTING, FRESH, STEADY]  # worst first: breached, no data, ok
    drifting = chips(browser, DRIFTING)
    assert drifting["drift"] == "breached"
    assert drifting["quality"] == "breached" and drifting["fairness"] == "breached"  # the story's other breaches
    assert chips(browser, STEADY) == {"drift": "ok"}
    assert chips(browser, FRESH) == {"drift": "no_data"}
    sub = story.mart.subscriptions.get(DRIFTING)
    assert int(field(browser, DRIFTING, "traffic").replace(",", "")) == sub.payload.count() >= RECORDS
    open_alerts = story.mart.alerts(status="all", subscription=DRIFTING)
    still_open = int(open_alerts["status"].isin(["open", "acknowledged"]).sum())
    assert still_open >= 2 and int(field(browser, DRIFTING, "open-alerts")) == still_open
    assert field(browser, DRIFTING, "failed-deliveries") == "0"
    newest = sub.evaluations(limit=1)[0].id
    last = f'tr[data-subscription="{DRIFTING}"] td[data-field="last-evaluation"]'
    assert browser.attribute(last, "data-evaluation-id") == str(newest)
    everyone = [story.mart.subscriptions.get(s).evaluations(limit=1)[0].id for s in (DRIFTING, FRESH, STEADY)]
    assert browser.attribute("#latest-evaluation", "data-evaluation-id") == str(max(everyone))
    assert browser.attribute("body", "data-poll-ms") == "500" and browser.attribute("body", "data-change-token")
    shot(browser, "overview")
    assert_clean(browser, story)


# -- a subscription's page -------------------------------------------------------------------------


def test_drifting_subscription_opens_on_drift_with_the_drifting_features_first(browser: Browser, story: Story) -> None:
    browser.navigate(story.page("/"))
    with browser.expect_load():
        browser.click(f'tr[data-subscription="{DRIFTING}"] a.subscription-link')
    assert urlsplit(browser.url).path == f"/dashboard/subscriptions/{DRIFTING}"
    assert browser.evaluate("document.querySelector('h1').textContent.trim()") == DRIFTING
    assert browser.evaluate("document.querySelector('nav.tabs a.active').dataset.tab") == "drift"
    assert browser.evaluate("document.querySelector('section#tab-drift') !== null")

    features = drift_features(browser)
    flags = [f["drifted"] for f in features]
    assert set(flags) == {"true", "false"}, features  # some drift, some do not
    assert flags == sorted(flags, key=lambda f: f != "true"), f"drifting features are not first: {features}"
    assert all(f["link"] for f in features)
    drifting = [f["feature"] for f in features if f["drifted"] == "true"]
    assert features[0]["feature"] in SHIFTED and "bmi" in drifting, features
    stored = story.mart.subscriptions.get(DRIFTING).measurements(monitor="drift")
    newest = stored[stored["evaluation_id"] == stored["evaluation_id"].max()]
    assert set(drifting) == set(newest[newest["breached"] & newest["feature"].notna()]["feature"])

    figure = "figure#drift-distribution"
    assert browser.attribute(figure, "data-feature") == features[0]["feature"]
    assert browser.count(figure + " svg rect") > 4
    assert browser.evaluate("document.querySelector('figure#drift-history svg') !== null")
    shot(browser, "subscription-drift")

    mark_page(browser)
    second = features[1]["feature"]
    browser.click(f'ol#drift-features > li[data-feature="{second}"] a')
    browser.wait_for(
        f"document.querySelector({js(figure)})?.dataset.feature === {js(second)}",
        message=f"the distribution figure showing {second}",
    )
    assert browser.count(figure + " svg") == 1
    assert browser.attribute("figure#drift-history", "data-feature") == second
    assert f"feature={second}" in browser.url and not_reloaded(browser)
    shot(browser, "subscription-drift-second-feature")
    assert_clean(browser, story)


def test_every_tab_draws_its_content(browser: Browser, story: Story) -> None:
    browser.navigate(story.page(f"/subscriptions/{DRIFTING}", tab="quality"))
    mark_page(browser)
    expected = {
        "quality": "document.querySelectorAll('figure.metric-history[data-metric] svg').length > 0"
        " && document.querySelector('figure.metric-history[data-metric=\"roc_auc\"]') !== null",
        "drift": "document.querySelector('ol#drift-features > li') !== null",
        "fairness": "document.querySelector('figure.metric-history[data-metric][data-feature=\"sex\"] svg') !== null"
        " && document.querySelector('section#flip-test') !== null",
        "performance": "document.querySelector('figure#throughput svg') !== null"
        " && document.querySelector('figure#latency svg') !== null",
        # the story stores no explanations (openmart explain): the tab says so
        "explanations": "document.querySelector('section#tab-explanations').textContent.trim().length > 0",
        "alerts": "document.querySelectorAll('table#alerts tr[data-alert-id]').length > 0",
    }
    for tab in TABS:
        if tab != "quality":  # switched in place, as a person clicks
            browser.click(f'nav.tabs a[data-tab="{tab}"]')
        browser.wait_for(f"document.querySelector('section#tab-{tab}') !== null", message=f"the {tab} tab")
        assert browser.evaluate("document.querySelector('nav.tabs a.active').dataset.tab") == tab
        assert browser.evaluate("document.querySelectorAll('nav.tabs a.active').length") == 1
        assert browser.evaluate(expected[tab]), f"the {tab} tab lacks its content"
        assert f"tab={tab}" in browser.url
        shot(browser, f"subscription-{tab}")
    assert not_reloaded(browser)
    assert browser.evaluate("document.querySelector('form#range select[name=range]').value") == "7d"
    assert_clean(browser, story)


def test_acknowledging_an_alert_changes_it_in_the_mart_and_on_the_page(browser: Browser, story: Story) -> None:
    browser.navigate(story.page(f"/subscriptions/{DRIFTING}", tab="alerts"))
    open_rows = browser.evaluate(
        "Array.from(document.querySelectorAll('table#alerts tr[data-alert-id][data-status=\"open\"]'))"
        ".filter(r => r.querySelector('button[data-action=\"acknowledge\"]:not([disabled])'))"
        ".map(r => r.dataset.alertId)"
    )
    assert open_rows, "no open alert with an acknowledge button"
    alert_id = int(open_rows[0])
    before = story.mart.alerts(status="all").set_index("id").loc[alert_id]
    assert before["status"] == "open"
    row = f'table#alerts tr[data-alert-id="{alert_id}"]'
    assert browser.count(row + ' td[data-field="deliveries"]') == 1
    assert browser.count(row + ' button[data-action="resolve"]') == 1
    mark_page(browser)
    browser.click(f'{row} button[data-action="acknowledge"]')
    browser.wait_for(
        f"document.querySelector({js(row)})?.dataset.status === 'acknowledged'",
        message=f"alert {alert_id} shown acknowledged",
    )
    after = story.mart.alerts(status="all").set_index("id").loc[alert_id]
    assert after["status"] == "acknowledged" and after["acknowledged_by"] == WRITER
    assert not_reloaded(browser)
    assert browser.count(row + ' button[data-action="acknowledge"]') == 0
    assert "acknowledged" in browser.evaluate("document.querySelector('div#flash').textContent")
    shot(browser, "alerts")
    assert_clean(browser, story)


def _more_traffic(story: Story, name: str, n: int, label: str | None = None) -> int:
    """The newest ``n`` payload records scored again (new scoring ids), with their ``label`` as
    feedback when the subscription has one; then an evaluation of them: its id."""
    sub = story.mart.subscriptions.get(name)
    rows = sub.payload.read(limit=n, newest_first=True)
    meta = ("scoring_id", "scoring_timestamp", "asset_revision", "response_time")
    ids = sub.payload.log(rows[[c for c in rows.columns if c not in meta]])
    if label is not None:
        truth = sub.feedback.read().set_index("scoring_id")[label]
        labelled = rows.assign(scoring_id=ids.astype(str).to_numpy(), **{label: rows["scoring_id"].map(truth)})
        labelled = labelled[labelled[label].notna()]
        features = [c for c in rows.columns if c not in (*meta, "prediction", "probability")]
        sub.feedback.log(labelled[[*features, label, "scoring_id"]].astype({label: int}))
    return int(sub.evaluate(last=n).evaluation_id)


def test_a_new_evaluation_appears_without_a_reload(browser: Browser, story: Story) -> None:
    browser.navigate(story.page(f"/subscriptions/{DRIFTING}", tab="quality"))
    before = browser.attribute("#latest-evaluation", "data-evaluation-id")
    points = 'figure.metric-history[data-metric="roc_auc"] circle.point'
    drawn = browser.count(points)
    assert drawn >= 4  # one per quarter of the story
    mark_page(browser)
    new_id = _more_traffic(story, DRIFTING, 150, label="high_risk")
    assert before != str(new_id)
    # the id shows as soon as the evaluation starts (a poll may land while it runs); its point once it finished
    browser.wait_for(
        f"document.querySelector('#latest-evaluation')?.dataset.evaluationId === '{new_id}'"
        f" && document.querySelectorAll({js(points)}).length === {drawn + 1}",
        message=f"evaluation {new_id} and its roc_auc point on the subscription's page",
    )
    assert not_reloaded(browser)
    assert browser.evaluate("document.querySelector('nav.tabs a.active').dataset.tab") == "quality"
    shot(browser, "live-update-subscription")

    browser.navigate(story.page("/"))
    mark_page(browser)
    steady_id = _more_traffic(story, STEADY, 100)
    browser.wait_for(
        f"document.querySelector('#latest-evaluation')?.dataset.evaluationId === '{steady_id}'",
        message=f"evaluation {steady_id} on the overview",
    )
    last = f'tr[data-subscription="{STEADY}"] td[data-field="last-evaluation"]'
    assert browser.attribute(last, "data-evaluation-id") == str(steady_id)
    assert chips(browser, STEADY) == {"drift": "ok"} and not_reloaded(browser)
    assert_clean(browser, story)


def test_a_read_only_key_sees_the_pages_with_the_buttons_disabled(story: Story, tmp_path: Path) -> None:
    with Browser(tmp_path / "profile") as browser:
        log_in(browser, story, story.reader_key, f"/subscriptions/{DRIFTING}", tab="alerts")  # a deep link
        assert browser.evaluate("document.querySelector('nav.tabs a.active').dataset.tab") == "alerts"
        assert browser.attribute('span.chip[data-monitor="drift"]', "data-status") == "breached"
        buttons = browser.evaluate(
            "Array.from(document.querySelectorAll('table#alerts button[data-action]')).map(b => b.disabled)"
        )
        assert buttons and all(buttons), buttons
        statuses = story.mart.alerts(status="all", subscription=DRIFTING)[["id", "status"]].to_dict("records")
        open_row = browser.evaluate(
            "document.querySelector('table#alerts tr[data-status=\"open\"]')?.dataset.alertId ?? null"
        )
        if open_row is not None:  # clicking a disabled button sends nothing and changes nothing
            browser.click(f'table#alerts tr[data-alert-id="{open_row}"] button[data-action="acknowledge"]')
            browser.evaluate("new Promise(r => setTimeout(() => r(true), 0))")  # the click's handlers have run
            assert [u for u in browser.requests if "/alerts/" in u] == []
            now = story.mart.alerts(status="all", subscription=DRIFTING)[["id", "status"]].to_dict("records")
            assert now == statuses
        assert READER in browser.evaluate("document.body.textContent")
        shot(browser, "alerts-read-only")
        assert_clean(browser, story)
