"""Comparing record sets (issue #17): drift, quality and fairness of any two sets, against
scipy, scikit-learn and a direct count as oracles, through a real PostgreSQL mart.

The story: a binary classifier in two versions. Training v1 and validation v1/v2 are labelled
sets; production v1 traffic is logged, then version 2 starts and its traffic has feature ``b``
shifted by +1 and predictions wrong (flipped) for ``sex == female``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

import openmart
from openmart.errors import MonitorError, ValidationError
from openmart.evaluation.compare import parse_set

FEATURES = ["a", "b", "c", "sex"]


def _records(n: int, seed: int, *, shift_b: float = 0.0, wrong_on_female: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=n), rng.normal(size=n) + shift_b, rng.normal(size=n)
    sex = rng.choice(["female", "male"], n, p=[0.4, 0.6])
    score = a + 0.3 * c
    label = (score + 0.5 * rng.normal(size=n) > 0).astype(int)
    proba = 1 / (1 + np.exp(-2 * score))
    if wrong_on_female:  # the version-2 bug: the segment's answers are the opposite
        proba = np.where(sex == "female", 1 - proba, proba)
    pred = (proba > 0.5).astype(int)
    return pd.DataFrame(
        {"a": a, "b": b, "c": c, "sex": sex, "label": label, "prediction": pred, "probability": proba.round(6)}
    )


def _log(sub: openmart.Subscription, frame: pd.DataFrame, start: str, prefix: str) -> None:
    ids = [f"{prefix}-{i}" for i in range(len(frame))]
    times = pd.date_range(start, periods=len(frame), freq="5min", tz="UTC")
    sub.payload.log(frame[[*FEATURES, "prediction", "probability"]].assign(scoring_id=ids, scoring_timestamp=times))
    sub.feedback.log(frame[[*FEATURES, "label"]].assign(scoring_id=ids))


@pytest.fixture
def story(mart: openmart.Mart) -> dict[str, object]:
    train = _records(400, 1)
    valid1, valid2 = _records(300, 2), _records(300, 3, wrong_on_female=True)
    prod1 = _records(300, 10)
    prod2 = _records(300, 12, shift_b=1.0, wrong_on_female=True)
    sub = mart.subscriptions.add(
        "loans", reference=train, label="label", problem_type="binary", categorical=["sex"], asset_revision="1"
    )
    sub.reference.load(valid1, environment="validation", version="1")
    sub.monitors.enable("drift", min_records=50)
    sub.monitors.enable("quality", min_records=50)
    sub.monitors.enable(
        "fairness",
        attributes=[{"feature": "sex", "monitored": "female", "reference": "male"}],
        favourable=1,
        min_records=50,
        debias=False,
    )
    _log(sub, prod1, "2026-11-02", "v1")
    sub.versions.start("2")
    sub.reference.load(valid2, environment="validation", version="2")
    _log(sub, prod2, "2026-11-09", "v2")
    return {"sub": sub, "train": train, "valid1": valid1, "valid2": valid2, "prod1": prod1, "prod2": prod2}


def _accuracy(frame: pd.DataFrame) -> float:
    return float(skm.accuracy_score(frame["label"], frame["prediction"]))


def _disparate_impact(frame: pd.DataFrame) -> float:
    rate = frame.groupby("sex")["prediction"].mean()
    return float(rate["female"] / rate["male"])


def _alerts(mart: openmart.Mart) -> int:
    return int(mart.sql("SELECT count(*) AS n FROM alerts")["n"].iloc[0])


def test_drift_flags_exactly_the_shifted_feature_with_scipys_p_value(story: dict) -> None:
    sub, train, prod2 = story["sub"], story["train"], story["prod2"]
    result = sub.compare("production:2", baseline="training:1", monitors=["drift"])
    drift = result.frame[(result.frame["monitor"] == "drift") & result.frame["feature"].isin(FEATURES)]
    assert set(drift.loc[drift["breached"], "feature"]) == {"b"}
    for feature in ("a", "b", "c"):  # 400 training rows, 300 production rows: the exact KS path
        row = drift[drift["feature"] == feature].iloc[0]
        assert row["metric"] == "ks" and row["value_kind"] == "p-value"
        assert row["target"] == pytest.approx(stats.ks_2samp(train[feature], prod2[feature]).pvalue, rel=1e-9)
    sex = drift[drift["feature"] == "sex"].iloc[0]
    assert sex["metric"] == "chisquare" and not sex["breached"]
    assert result.baseline_evaluation is None  # drift alone: nothing to measure on the baseline set
    assert result.target_description == "production v2" and result.baseline_description == "training v1"


def test_quality_of_each_set_equals_sklearn_and_the_delta_their_difference(story: dict) -> None:
    sub, prod1, prod2 = story["sub"], story["prod1"], story["prod2"]
    result = sub.compare("production:2", baseline="production:1", monitors=["quality"])
    q = result.frame[result.frame["monitor"] == "quality"].set_index("metric")
    assert q.loc["accuracy", "baseline"] == pytest.approx(_accuracy(prod1))
    assert q.loc["accuracy", "target"] == pytest.approx(_accuracy(prod2))
    assert q.loc["accuracy", "delta"] == pytest.approx(_accuracy(prod2) - _accuracy(prod1))
    assert q.loc["accuracy", "delta"] < -0.2  # v2 is wrong on 40% of its records
    assert q.loc["roc_auc", "target"] == pytest.approx(skm.roc_auc_score(prod2["label"], prod2["probability"]))
    assert q.loc["f1", "baseline"] == pytest.approx(skm.f1_score(prod1["label"], prod1["prediction"]))
    # the default quality threshold (roc_auc >= 0.8): v2 breaches it, v1 does not
    assert bool(q.loc["roc_auc", "breached"]) and not bool(q.loc["roc_auc", "baseline_breached"])
    assert result.target_records == 300 and result.baseline_records == 300


def test_labelled_sets_and_the_default_baseline(story: dict) -> None:
    sub, train, valid2 = story["sub"], story["train"], story["valid2"]
    result = sub.compare("validation:2")  # baseline: THE reference, training v1
    assert result.baseline_description == "training v1"
    acc = result.metric("quality", "accuracy")
    assert acc["target"] == pytest.approx(_accuracy(valid2))
    assert acc["baseline"] == pytest.approx(_accuracy(train))
    di = result.metric("fairness", "disparate_impact", "sex")
    assert di["group"] == "female"
    assert di["target"] == pytest.approx(_disparate_impact(valid2))
    assert di["baseline"] == pytest.approx(_disparate_impact(train))
    assert di["delta"] == pytest.approx(_disparate_impact(valid2) - _disparate_impact(train))
    # validation v2 is not shifted: no feature drifts from training v1
    drift = result.frame[(result.frame["monitor"] == "drift") & result.frame["feature"].isin(FEATURES)]
    assert not drift["breached"].any()


def test_fairness_of_production_versions_equals_a_direct_count(story: dict) -> None:
    sub, prod1, prod2 = story["sub"], story["prod1"], story["prod2"]
    result = sub.compare("production:2", "production:1", monitors=["fairness"])
    di = result.metric("fairness", "disparate_impact", "sex")
    assert di["baseline"] == pytest.approx(_disparate_impact(prod1))
    assert di["target"] == pytest.approx(_disparate_impact(prod2))
    spd = result.metric("fairness", "statistical_parity_difference", "sex")
    rate2 = prod2.groupby("sex")["prediction"].mean()
    assert spd["target"] == pytest.approx(rate2["female"] - rate2["male"])


def test_a_comparison_is_stored_as_comparison_evaluations_and_opens_no_alert(story: dict, mart: openmart.Mart) -> None:
    sub = story["sub"]
    before = _alerts(mart)
    result = sub.compare("production:2", baseline="validation:2")
    assert result.frame["breached"].any()  # drift of b breaches: a monitoring evaluation would alert
    assert _alerts(mart) == before == 0
    ids = ",".join(str(i) for i in result.evaluation_ids)
    rows = mart.sql(f"SELECT id, kind, status, target, baseline FROM evaluations WHERE id IN ({ids}) ORDER BY id")
    assert list(rows["kind"]) == ["comparison", "comparison"] and set(rows["status"]) == {"finished"}
    target = rows[rows["id"] == result.target_evaluation].iloc[0]
    base = rows[rows["id"] == result.baseline_evaluation].iloc[0]
    assert (target["target"]["environment"], target["target"]["version"]) == ("production", "2")
    assert (target["baseline"]["environment"], target["baseline"]["version"]) == ("validation", "2")
    assert (base["target"]["environment"], base["target"]["version"]) == ("validation", "2")
    # read back from the mart: the same frame
    again = sub.comparisons(limit=1)[0]
    assert again.target_evaluation == result.target_evaluation
    pd.testing.assert_frame_equal(again.frame, result.frame)
    # a monitoring evaluation of the same records does alert (the comparison's silence is its kind's)
    sub.evaluate()
    assert _alerts(mart) > 0


def test_the_monitored_history_and_the_dashboard_leave_comparisons_out(story: dict, mart: openmart.Mart) -> None:
    from openmart.mart import dashboard

    sub = story["sub"]
    sub.evaluate()
    history = sub.measurements()
    chips_before = _chips(mart, sub.id)
    result = sub.compare("production:2", baseline="validation:2")
    assert len(result.frame) and sub.measurements().equals(history)
    with mart.engine.connect() as conn:
        (row,) = [r for r in dashboard.overview(conn) if r.name == sub.name]
        drift_points = dashboard.measurement_history(conn, sub.id, "drift")
    assert row.last_evaluation_id not in result.evaluation_ids
    assert _chips(mart, sub.id) == chips_before
    stored = mart.sql(f"SELECT count(*) AS n FROM measurements WHERE evaluation_id = {result.target_evaluation}")
    assert int(stored["n"].iloc[0]) > 0 and len(drift_points) == len(history[history["monitor"] == "drift"])


def _chips(mart: openmart.Mart, sid: int) -> list[tuple[str, str]]:
    from openmart.mart import dashboard

    with mart.engine.connect() as conn:
        (row,) = [r for r in dashboard.overview(conn) if r.id == sid]
    return [(c.kind, str(c.status)) for c in row.chips]


def test_too_small_a_set_reports_not_enough_data(story: dict) -> None:
    sub, prod1 = story["sub"], story["prod1"]
    # 20 records of v1 (5 minutes apart): fewer than every monitor's min_records (50)
    result = sub.compare("production:1@2026-11-02T00:00..2026-11-02T01:40", baseline="production:1")
    assert result.target_records == 20
    statuses = {(n["side"], n["monitor"]): n["status"] for n in result.notes}
    assert statuses[("target", "quality")] == "not_enough_data"
    assert statuses[("target", "drift")] == "not_enough_data"
    acc = result.metric("quality", "accuracy")
    assert np.isnan(acc["target"]) and acc["baseline"] == pytest.approx(_accuracy(prod1))
    assert "not enough data" in acc["note"]


def test_bad_sets_are_refused_naming_the_part(story: dict) -> None:
    sub = story["sub"]
    with pytest.raises(ValidationError, match="environment 'prod'"):
        sub.compare("prod:2")
    with pytest.raises(ValidationError, match=r"no model version '9' \(its versions: 1, 2\)"):
        sub.compare("production:9")
    with pytest.raises(ValidationError, match=r"baseline.*no model version '7'"):
        sub.compare("production:2", baseline="validation:7")
    with pytest.raises(ValidationError, match=r"'@2026-11-01\.\.2026-11-08'.*production only"):
        sub.compare("validation:2@2026-11-01..2026-11-08")
    with pytest.raises(ValidationError, match=r"time range '@2026-11-01'"):
        parse_set("production:1@2026-11-01")
    with pytest.raises(ValidationError, match=r"target since"):
        parse_set("production:1@yesterday..2026-11-08")
    with pytest.raises(ValidationError, match="version after ':' is empty"):
        parse_set("production:")
    w = parse_set("production:1@2026-11-01..2026-11-08")
    assert (w.environment, w.version, w.since.day, w.until.day) == ("production", "1", 1, 8)
    sub.monitors.disable("fairness")
    with pytest.raises(MonitorError, match="openmart monitor enable loans fairness"):
        sub.compare("production:2", monitors=["fairness"])


def test_cli_compare(story: dict, cli) -> None:  # type: ignore[no-untyped-def]
    prod1, prod2 = story["prod1"], story["prod2"]
    shown = cli("compare", "loans", "--target", "production:2", "--baseline", "production:1")
    assert "ks p-value" in shown.stdout and "accuracy" in shown.stdout
    data = json.loads(
        cli("compare", "loans", "-t", "production:2", "-b", "production:1", "--monitor", "quality", "--json").stdout
    )
    acc = next(r for r in data["rows"] if r["metric"] == "accuracy")
    assert acc["delta"] == pytest.approx(_accuracy(prod2) - _accuracy(prod1))
    assert data["target"]["set"] == "production v2" and data["baseline"]["set"] == "production v1"
    bad = cli("compare", "loans", "--target", "staging:2", ok=False)
    assert bad.exit_code != 0 and "staging" in bad.stderr


def test_report_shows_the_latest_comparison_apart_from_monitoring(story: dict) -> None:
    from openmart.report.html import render

    sub = story["sub"]
    sub.compare("production:2", baseline="production:1")
    page = render(sub)
    section = page[page.index("<h2>Comparisons") : page.index("<h2>Explanations")]
    assert "production v2 against production v1" in section
    assert "<svg" in section and "accuracy" in section and "b (ks p-value" in section
    # a comparison is not the monitored stream's latest evaluation
    assert "Latest evaluation: not evaluated yet" in page
