"""The dashboard (``openmart.dashboard.app``) over a real mart, through HTTP: what the overview
and the tabs show for real evaluations, escaping, the login and its cookies, CSRF on the REST
calls the buttons make, scopes, mounting in a user's FastAPI app, fragments and the change
token, time ranges, and that nothing is fetched from another host."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import openmart
import openmart.dashboard
from openmart.errors import EvaluationFailed
from openmart.service.app import create_app
from openmart.service.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE

HOSTILE = "<script>alert(1)</script>"
STATIC = Path(openmart.dashboard.__file__).with_name("static")


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), HOSTILE: rng.normal(size=n), "label": rng.integers(0, 2, n)})


def _subscribe(mart: openmart.Mart, name: str, reference: pd.DataFrame) -> openmart.api.Subscription:
    return mart.subscriptions.add(name, reference=reference, label="label", problem_type="binary")


def _log(sub: openmart.api.Subscription, frame: pd.DataFrame) -> None:
    rng = np.random.default_rng(1)
    ids = sub.payload.log(
        frame.drop(columns="label").assign(prediction=frame["label"], probability=rng.random(len(frame)))
    )
    sub.feedback.log(frame.assign(scoring_id=list(ids)))


@pytest.fixture
def populated(mart: openmart.Mart, monkeypatch: pytest.MonkeyPatch) -> openmart.Mart:
    """Four subscriptions, one per chip status, from real evaluations:
    ``drifting`` (drift breached, an open alert), ``steady`` (ok), ``quiet`` (no data: too few
    records), ``broken`` (failed: its quality monitor raised)."""
    reference = _frame(300)
    drifting = _subscribe(mart, "drifting", reference)
    drifting.monitors.enable("drift", min_records=10)
    _log(drifting, reference.assign(x=reference["x"] + 3.0, **{HOSTILE: reference[HOSTILE] + 3.0}))
    drifting.evaluate()

    steady = _subscribe(mart, "steady", reference)
    steady.monitors.enable("drift", min_records=10)
    _log(steady, reference)
    steady.evaluate()

    quiet = _subscribe(mart, "quiet", reference)
    quiet.monitors.enable("drift", min_records=100_000)
    _log(quiet, reference.head(50))
    quiet.evaluate()

    broken = _subscribe(mart, "broken", reference)
    broken.monitors.enable("quality", min_records=10)
    _log(broken, reference)
    from openmart.monitors import quality

    def raising(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("injected in quality")

    with monkeypatch.context() as patch:
        patch.setattr(quality, "compute", raising)
        with pytest.raises(EvaluationFailed):
            broken.evaluate()
    return mart


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr data-subscription="([^"]*)"', page)


def _chips(page: str, subscription: str) -> dict[str, str]:
    row = re.search(rf'<tr data-subscription="{subscription}".*?</tr>', page, re.S)
    assert row, subscription
    return dict(re.findall(r'<span class="chip[^"]*" data-monitor="([^"]+)" data-status="([^"]+)"', row.group(0)))


def _field(page: str, subscription: str, field: str) -> str:
    row = re.search(rf'<tr data-subscription="{subscription}".*?</tr>', page, re.S)
    assert row
    cell = re.search(rf'<td data-field="{field}"[^>]*>(.*?)</td>', row.group(0), re.S)
    assert cell, field
    return cell.group(1)


def _login(client: TestClient, root: str, key: str) -> Any:
    return client.post(f"{root}/login", data={"key": key, "next": f"{root}/"}, follow_redirects=False)


def _open_alert(mart: openmart.Mart) -> int:
    alerts = mart.alerts(status="open", subscription="drifting")
    assert len(alerts)
    return int(alerts["id"].iloc[0])


# -- what it shows ---------------------------------------------------------------------------------


def test_overview_has_a_chip_per_monitor_worst_first(populated: openmart.Mart) -> None:
    with TestClient(openmart.dashboard.app(populated, auth=False)) as client:
        answer = client.get("/")
    assert answer.status_code == 200
    page = answer.text
    assert _rows(page) == ["broken", "drifting", "quiet", "steady"]  # failed, breached, no data, ok
    assert _chips(page, "broken") == {"quality": "failed"}
    assert _chips(page, "drifting") == {"drift": "breached"}
    assert _chips(page, "quiet") == {"drift": "no_data"}
    assert _chips(page, "steady") == {"drift": "ok"}
    assert int(_field(page, "drifting", "open-alerts")) >= 1 and _field(page, "steady", "open-alerts") == "0"
    assert _field(page, "drifting", "traffic") == "300" and _field(page, "quiet", "traffic") == "50"
    assert _field(page, "steady", "failed-deliveries") == "0"
    assert "UTC" in _field(page, "steady", "last-evaluation")
    assert 'href="/subscriptions/drifting?range=7d"' in page and 'class="subscription-link"' in page
    newest = max(populated.subscriptions.get(n).evaluations()[0].id for n in ("drifting", "steady", "quiet", "broken"))
    assert f'<span id="latest-evaluation" data-evaluation-id="{newest}"' in page
    assert re.search(r'<body data-change-token="[^"]+" data-poll-ms="5000"', page)
    assert '<div id="flash"' in page and "<main>" in page


def test_drift_tab_lists_drifting_features_first_and_escapes_names(populated: openmart.Mart) -> None:
    with TestClient(openmart.dashboard.app(populated, auth=False)) as client:
        page = client.get("/subscriptions/drifting").text  # default tab: drift, as its chip is breached
        assert 'data-tab="drift" class="active"' in page and '<section id="tab-drift"' in page
        items = re.findall(r'<li data-feature="([^"]*)" data-drifted="(true|false)" data-score="([^"]*)"', page)
        features = [f for f, _, _ in items]
        assert {"x", "&lt;script&gt;alert(1)&lt;/script&gt;"} <= set(features)
        drifted = [d for _, d, _ in items]
        assert drifted == sorted(drifted, key=lambda d: d != "true")  # drifting first
        assert drifted[0] == "true" and all(s for _, _, s in items)
        # the hostile feature name is text everywhere, never markup
        assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        selected = re.search(r'<figure id="drift-distribution" data-feature="([^"]*)"', page)
        assert selected and selected.group(1) == features[0]
        assert re.search(r'<figure id="drift-distribution"[^>]*><svg', page)
        assert '<figure id="drift-history"' in page
        # choosing a feature by its link
        chosen = client.get("/subscriptions/drifting", params={"tab": "drift", "feature": "x"}).text
        assert '<figure id="drift-distribution" data-feature="x"' in chosen
        # reference vs current, with a legend and the dashed threshold in the history
        assert ">reference</text>" in chosen and ">current</text>" in chosen and 'stroke-dasharray="6 4"' in chosen
        steady = client.get("/subscriptions/steady").text
        assert 'data-tab="quality" class="active"' in steady  # nothing breached: quality
        assert "no quality monitor" in steady and "openmart monitor enable steady quality" in steady


def test_every_tab_renders(populated: openmart.Mart) -> None:
    with TestClient(openmart.dashboard.app(populated, auth=False)) as client:
        for tab in ("quality", "drift", "fairness", "performance", "explanations", "alerts"):
            answer = client.get("/subscriptions/drifting", params={"tab": tab})
            assert answer.status_code == 200, tab
            assert f'<section id="tab-{tab}"' in answer.text and f'data-tab="{tab}" class="active"' in answer.text
        assert client.get("/subscriptions/nobody").status_code == 404
        alerts = client.get("/subscriptions/drifting", params={"tab": "alerts"}).text
        alert_id = _open_alert(populated)
        assert f'<tr data-alert-id="{alert_id}" data-status="open">' in alerts
        assert 'data-action="acknowledge"' in alerts and 'data-action="resolve"' in alerts
        assert '<td data-field="deliveries"' in alerts
        performance = client.get("/subscriptions/drifting", params={"tab": "performance"}).text
        assert '<figure id="throughput"' in performance and '<figure id="latency"' in performance


def test_quality_history_draws_only_the_range(mart: openmart.Mart) -> None:
    reference = _frame(300)
    sub = _subscribe(mart, "q", reference)
    sub.monitors.enable("quality", min_records=10)
    _log(sub, reference)
    sub.evaluate()
    between = datetime.now(UTC)
    sub.evaluate()
    with TestClient(openmart.dashboard.app(mart, auth=False)) as client:

        def points(**params: str) -> int:
            page = client.get("/subscriptions/q", params={"tab": "quality", **params}).text
            figure = re.search(r'<figure class="metric-history" data-metric="accuracy">(.*?)</figure>', page, re.S)
            assert figure, page[:500]
            return len(re.findall(r'<circle class="point', figure.group(1)))

        assert points(range="all") == 2
        assert points(range="custom", start=between.isoformat()) == 1  # the first evaluation is outside
        assert points(range="custom", end=between.isoformat()) == 1
        empty = client.get("/subscriptions/q", params={"tab": "quality", "range": "custom", "end": "2000-01-01"}).text
        assert "no quality measurements in" in empty and "metric-history" not in empty


# -- live updates ----------------------------------------------------------------------------------


def test_fragments_and_the_change_token(populated: openmart.Mart) -> None:
    with TestClient(openmart.dashboard.app(populated, auth=False)) as client:
        full = client.get("/subscriptions/steady", params={"tab": "drift"})
        token = full.headers["x-change-token"]
        assert f'data-change-token="{token}"' in full.text
        assert client.get("/changes", params={"subscription": "steady"}).json() == {"token": token}
        fragment = client.get("/subscriptions/steady", params={"tab": "drift", "fragment": "1"})
        assert "<html" not in fragment.text and "<main" not in fragment.text
        assert fragment.text.startswith('<div class="page-head"><h1>steady</h1>')
        assert '<section id="tab-drift"' in fragment.text
        overall = client.get("/changes").json()["token"]
        populated.subscriptions.get("steady").evaluate()
        assert client.get("/changes", params={"subscription": "steady"}).json()["token"] != token
        assert client.get("/changes").json()["token"] != overall
        # another subscription's evaluation leaves this page's token alone
        mine = client.get("/changes", params={"subscription": "steady"}).json()["token"]
        populated.subscriptions.get("quiet").evaluate()
        assert client.get("/changes", params={"subscription": "steady"}).json()["token"] == mine
        assert client.get("/", params={"poll": "10"}).text.count('data-poll-ms="250"') == 1  # the floor


def test_nothing_comes_from_another_host(populated: openmart.Mart) -> None:
    offsite = re.compile(r"(https?:)?//[a-z0-9]", re.I)
    with TestClient(openmart.dashboard.app(populated)) as client:
        texts = {"login": client.get("/login").text}
    with TestClient(openmart.dashboard.app(populated, auth=False)) as client:
        texts["overview"] = client.get("/").text
        for tab in ("quality", "drift", "fairness", "performance", "explanations", "alerts"):
            texts[tab] = client.get("/subscriptions/drifting", params={"tab": tab}).text
        for name in ("dashboard.js", "dashboard.css"):
            answer = client.get(f"/static/{name}")
            assert answer.status_code == 200
            texts[name] = answer.text
    for path in STATIC.iterdir():
        texts[path.name] = path.read_text()
    for name, text in texts.items():
        assert not offsite.search(text), (name, offsite.search(text))


# -- login, cookies, CSRF, scopes ------------------------------------------------------------------


def test_login_sets_a_session_cookie_and_pages_need_it(populated: openmart.Mart) -> None:
    _, read_key = populated.keys.create("viewer", "read")
    with TestClient(create_app(populated)) as client:
        assert client.get("/", follow_redirects=False).headers["location"] == "/dashboard/"
        answer = client.get("/dashboard/subscriptions/steady?tab=drift", follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fsubscriptions%2Fsteady%3Ftab%3Ddrift"
        login = client.get(answer.headers["location"]).text
        assert '<form id="login"' in login and '<input name="key" type="password"' in login
        assert '<button type="submit">' in login
        # what a script asks for gets 401, not a login page
        assert client.get("/dashboard/changes").status_code == 401
        assert client.get("/dashboard/?fragment=1").status_code == 401
        refused = _login(client, "/dashboard", "om_not_a_key")
        assert refused.status_code == 401 and "not valid" in refused.text
        assert SESSION_COOKIE not in client.cookies
        answer = client.post(
            "/dashboard/login",
            data={"key": read_key, "next": "/dashboard/subscriptions/steady?tab=drift"},
            follow_redirects=False,
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/subscriptions/steady?tab=drift"
        cookies = {c.split("=", 1)[0]: c.lower() for c in answer.headers.get_list("set-cookie")}
        session, csrf = cookies[SESSION_COOKIE], cookies[CSRF_COOKIE]
        assert "httponly" in session and "samesite=strict" in session and "secure" not in session
        assert "httponly" not in csrf and "samesite=strict" in csrf
        # the dashboard at /dashboard calls the service's /api/v1: the narrowest path covering both
        assert "path=/;" in session or session.endswith("path=/")
        assert read_key not in "".join(answer.headers.get_list("set-cookie"))  # a token, not the key
        page = client.get("/dashboard/subscriptions/steady?tab=drift")
        assert page.status_code == 200 and "viewer (read)" in page.text
        # an open redirect is refused: next must stay inside the dashboard
        elsewhere = client.post(
            "/dashboard/login", data={"key": read_key, "next": "//evil.example/"}, follow_redirects=False
        )
        assert elsewhere.headers["location"] == "/dashboard/"
        # the session dies with its key
        populated.keys.revoke("viewer")
        assert client.get("/dashboard/", follow_redirects=False).status_code == 303


def test_over_https_the_cookies_are_secure(populated: openmart.Mart) -> None:
    _, key = populated.keys.create("viewer", "read")
    with TestClient(openmart.dashboard.app(populated), base_url="https://testserver") as client:
        answer = _login(client, "", key)
    assert all("secure" in c.lower() for c in answer.headers.get_list("set-cookie"))


def test_buttons_need_write_scope_and_csrf(populated: openmart.Mart) -> None:
    alert_id = _open_alert(populated)
    _, read_key = populated.keys.create("viewer", "read")
    _, write_key = populated.keys.create("oncall", "write")
    app = create_app(populated)
    url = f"/api/v1/alerts/{alert_id}/acknowledge"
    with TestClient(app) as reader:
        assert _login(reader, "/dashboard", read_key).status_code == 303
        page = reader.get("/dashboard/subscriptions/drifting?tab=alerts").text
        disabled = f'<button type="button" data-action="acknowledge" data-alert-id="{alert_id}" disabled title="needs'
        assert disabled in page and "has read" in page
        csrf = reader.cookies[CSRF_COOKIE]
        assert reader.post(url, headers={CSRF_HEADER: csrf}).status_code == 403  # read scope
    with TestClient(app) as writer:
        assert _login(writer, "/dashboard", write_key).status_code == 303
        page = writer.get("/dashboard/subscriptions/drifting?tab=alerts").text
        csrf = writer.cookies[CSRF_COOKIE]
        assert f'<meta name="csrf-token" content="{csrf}">' in page
        assert re.search(rf'<button type="button" data-action="acknowledge" data-alert-id="{alert_id}">', page)
        refused = writer.post(url)
        assert refused.status_code == 403 and CSRF_HEADER in refused.json()["error"]["message"]
        assert writer.post(url, headers={CSRF_HEADER: csrf[:-1] + "x"}).status_code == 403
        assert populated.alerts(status="acknowledged").empty
        done = writer.post(url, headers={CSRF_HEADER: csrf})
        assert done.status_code == 200 and done.json()["acknowledged_by"] == "oncall"
        row = populated.alerts(status="all").set_index("id").loc[alert_id]
        assert row["status"] == "acknowledged"
        page = writer.get("/dashboard/subscriptions/drifting?tab=alerts&fragment=1").text
        row_html = re.search(rf'<tr data-alert-id="{alert_id}" data-status="acknowledged">.*?</tr>', page, re.S)
        assert row_html, "the row shows the new status"
        assert 'data-action="acknowledge"' not in row_html.group(0) and 'data-action="resolve"' in row_html.group(0)
        # a key in a header needs no CSRF token, as before (scripts, the CLI)
        resolved = writer.post(f"/api/v1/alerts/{alert_id}/resolve", headers={"X-API-Key": write_key})
        assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
        # GETs by cookie need none either
        assert writer.get("/api/v1/alerts?status=all").status_code == 200


# -- mounted in a user's app -----------------------------------------------------------------------


def test_mounted_at_monitoring_in_a_models_app(populated: openmart.Mart) -> None:
    alert_id = _open_alert(populated)
    _, write_key = populated.keys.create("oncall", "write")
    model_app = FastAPI()

    @model_app.post("/predict")
    def predict() -> dict[str, int]:
        return {"prediction": 1}

    model_app.mount("/monitoring", openmart.dashboard.app(populated))
    with TestClient(model_app) as client:
        answer = client.get("/monitoring/", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/monitoring/login?next=")
        answer = _login(client, "/monitoring", write_key)
        assert answer.status_code == 303 and answer.headers["location"] == "/monitoring/"
        assert all("path=/monitoring" in c.lower() for c in answer.headers.get_list("set-cookie"))
        page = client.get("/monitoring/").text
        links = [x for x in re.findall(r'(?:href|src|action)="([^"]+)"', page) if x != "data:,"]  # the inline icon
        assert links and all(link.startswith("/monitoring/") for link in links), links
        assert 'data-changes-url="/monitoring/changes"' in page and 'data-api="/monitoring/api/v1"' in page
        sub_page = client.get("/monitoring/subscriptions/drifting?tab=drift").text
        links = [x for x in re.findall(r'(?:href|src|action)="([^"]+)"', sub_page) if x != "data:,"]
        assert all(link.startswith("/monitoring/") for link in links), links
        assert client.get("/monitoring/static/dashboard.js").status_code == 200
        assert client.get("/monitoring/changes?subscription=drifting").status_code == 200
        # the buttons' API lives inside the mount, behind the same cookie and CSRF token
        url = f"/monitoring/api/v1/alerts/{alert_id}/acknowledge"
        assert client.post(url).status_code == 403
        assert client.post(url, headers={CSRF_HEADER: client.cookies[CSRF_COOKIE]}).status_code == 200
        assert client.post("/predict").json() == {"prediction": 1}  # the model's own routes are untouched
    assert populated.alerts(status="acknowledged")["id"].tolist() == [alert_id]


def test_static_files_ship_in_the_wheel_listing() -> None:
    """The script and style are package data next to the code (hatch packs every file under src/openmart)."""
    assert {"dashboard.js", "dashboard.css"} <= {p.name for p in STATIC.iterdir()}


def test_fairness_tab_per_attribute_and_flip_test_section(mart: openmart.Mart) -> None:
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame({"group": rng.choice(["a", "b"], n), "x": rng.normal(size=n), "label": rng.integers(0, 2, n)})
    sub = _subscribe(mart, "fair", frame)
    sub.monitors.enable(
        "fairness", attributes=[{"feature": "group", "monitored": "a", "reference": "b"}], favourable=1, min_records=10
    )
    _log(sub, frame)
    sub.evaluate()
    with TestClient(openmart.dashboard.app(mart, auth=False)) as client:
        page = client.get("/subscriptions/fair", params={"tab": "fairness"}).text
    assert re.search(r'<figure class="metric-history" data-metric="disparate_impact" data-feature="group"><svg', page)
    assert '<section id="flip-test">' in page and "no flip test in this evaluation" in page  # no binding to re-score
    assert '<section id="group-rates">' in page and "<td>monitored</td><td>a</td>" in page


def test_drift_order_is_worst_first_for_p_values_and_distances() -> None:
    from openmart.dashboard.tabs.drift import ordered, score_attr
    from openmart.mart.dashboard import MeasurementDetail

    now = datetime.now(UTC)

    def m(feature: str, value: float, threshold: float, kind: str, breached: bool) -> MeasurementDetail:
        return MeasurementDetail(1, now, "m", feature, None, value, threshold, kind, breached, 1, "drift", None)

    features = [
        m("calm-distance", 0.05, 0.2, "upper_limit", False),
        m("p-slightly", 0.04, 0.05, "lower_limit", True),  # 1.25 x past its limit
        m("p-far", 0.0001, 0.05, "lower_limit", True),  # 500 x
        m("distance-double", 0.4, 0.2, "upper_limit", True),  # 2 x
        m("calm-p", 0.9, 0.05, "lower_limit", False),
    ]
    assert [x.feature for x in ordered(features)] == [
        "p-far",
        "distance-double",
        "p-slightly",
        "calm-distance",
        "calm-p",
    ]
    assert score_attr(float("inf")) == "Infinity" and score_attr(None) == "" and float(score_attr(0.25)) == 0.25
