"""The quality monitor against scikit-learn as the oracle, through the mart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

import openmart
from openmart.errors import MonitorError


def _binary(mart: openmart.Mart, n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    proba = 1 / (1 + np.exp(-2 * x[:, 0]))
    pred = (proba > 0.5).astype(int)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    sub = mart.subscriptions.add("q", reference=frame.assign(label=y), label="label", problem_type="binary")
    ids = sub.payload.log(frame.assign(prediction=pred, probability=proba))
    return sub, frame, y, pred, proba, ids


def _values(result) -> dict[str, float | None]:
    return {m.metric: m.value for m in result.measurements if m.monitor == "quality"}


def test_binary_metrics_match_sklearn(mart: openmart.Mart) -> None:
    sub, frame, y, pred, proba, ids = _binary(mart)
    sub.feedback.log(frame.assign(label=y, scoring_id=list(ids)))
    sub.monitors.enable("quality", thresholds=["roc_auc=0.99", "false_positive_rate=0.01"])
    result = sub.evaluate()
    v = _values(result)
    assert v["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert v["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert v["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert v["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert v["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba))
    assert v["average_precision"] == pytest.approx(skm.average_precision_score(y, proba))
    assert v["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert v["false_positive_rate"] == pytest.approx(fp / (fp + tn))
    assert v["true_positive_rate"] == pytest.approx(tp / (tp + fn))
    breached = {m.metric for m in result.breaches}
    assert breached == {"roc_auc", "false_positive_rate"}  # AUC ~0.9 < 0.99, FPR > 0.01
    cm = next(m for m in result.measurements if m.metric == "accuracy").details["confusion_matrix"]
    assert cm["matrix"] == skm.confusion_matrix(y, pred).tolist()
    alerts = mart.alerts()
    assert set(alerts["metric"]) == {"roc_auc", "false_positive_rate"}
    history = sub.measurements(metric="roc_auc")
    assert len(history) == 1 and bool(history["breached"][0])


def test_not_enough_data_and_single_class(mart: openmart.Mart) -> None:
    sub, frame, y, pred, proba, ids = _binary(mart)
    sub.monitors.enable("quality", min_records=100)
    sub.feedback.log(frame.head(50).assign(label=y[:50], scoring_id=list(ids[:50])))
    outcome = sub.evaluate().outcomes[0]
    assert outcome.status == "not_enough_data" and outcome.records == 50 and not outcome.measurements
    ones = np.flatnonzero(y == 1)[:150]
    # relabelled as 1 (some of them were among the first 50: their label is replaced, not doubled)
    sub.feedback.log(frame.iloc[ones].assign(label=1, scoring_id=[ids[i] for i in ones]), on_duplicate="replace")
    sub.monitors.enable("quality", min_records=10)
    result = sub.evaluate(since="2000-01-01")
    assert result.outcomes[0].status == "ok"


def test_unknown_threshold_metric_is_refused(mart: openmart.Mart) -> None:
    sub, *_ = _binary(mart)
    with pytest.raises(MonitorError, match="not a binary metric"):
        sub.monitors.enable("quality", thresholds=["r2=0.5"])
    with pytest.raises(MonitorError, match="unknown metric"):
        sub.monitors.enable("quality", thresholds=["nonsense=0.5"])


def test_multiclass_and_regression(mart: openmart.Mart) -> None:
    rng = np.random.default_rng(1)
    n = 300
    classes = ["a", "b", "c"]
    y = rng.choice(classes, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.choice(classes, n))
    proba = rng.dirichlet([1, 1, 1], n)
    x = pd.DataFrame({"x": rng.normal(size=n)})
    sub = mart.subscriptions.add("m", reference=x.assign(label=y), label="label", problem_type="multiclass")
    ids = sub.payload.log(x.assign(prediction=pred, probability=list(proba)))
    sub.feedback.log(x.assign(label=y, scoring_id=list(ids)))
    sub.monitors.enable("quality")
    v = _values(sub.evaluate())
    assert v["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert v["f1_weighted"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert v["precision_macro"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert v["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=classes))

    yr = rng.normal(10, 2, n)
    pr = yr + rng.normal(0, 1, n)
    reg = mart.subscriptions.add("r", reference=x.assign(label=yr), label="label", problem_type="regression")
    ids = reg.payload.log(x.assign(prediction=pr))
    reg.feedback.log(x.assign(label=yr, scoring_id=list(ids)))
    reg.monitors.enable("quality", thresholds=["rmse=0.5"])
    result = reg.evaluate()
    v = _values(result)
    assert v["mae"] == pytest.approx(skm.mean_absolute_error(yr, pr))
    assert v["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(yr, pr)))
    assert v["r2"] == pytest.approx(skm.r2_score(yr, pr))
    assert v["explained_variance"] == pytest.approx(skm.explained_variance_score(yr, pr))
    assert v["mape"] == pytest.approx(skm.mean_absolute_percentage_error(yr, pr))
    assert [m.metric for m in result.breaches] == ["rmse"]


def test_empty_window(mart: openmart.Mart) -> None:
    sub, *_ = _binary(mart)
    sub.monitors.enable("quality")
    outcome = sub.evaluate(since="2999-01-01").outcomes[0]
    assert outcome.status == "not_enough_data" and outcome.records == 0
