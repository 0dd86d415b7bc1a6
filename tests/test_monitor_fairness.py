"""The fairness monitor against aif360's own classes on the records themselves."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.errors import MonitorError

logging.getLogger("aif360").setLevel(logging.ERROR)


def _oracle(frame: pd.DataFrame, group: np.ndarray) -> dict[str, float]:
    from aif360.datasets import BinaryLabelDataset
    from aif360.metrics import BinaryLabelDatasetMetric, ClassificationMetric

    keep = ~np.isnan(group)
    base = pd.DataFrame({"g": group[keep], "y": frame["label"].to_numpy(float)[keep]})
    truth = BinaryLabelDataset(df=base, label_names=["y"], protected_attribute_names=["g"])
    pred = truth.copy(deepcopy=True)
    pred.labels = frame["prediction"].to_numpy(float)[keep].reshape(-1, 1)
    groups = dict(unprivileged_groups=[{"g": 1}], privileged_groups=[{"g": 0}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BinaryLabelDatasetMetric(pred, **groups)
        cm = ClassificationMetric(truth, pred, **groups)
        return {
            "disparate_impact": m.disparate_impact(),
            "statistical_parity_difference": m.statistical_parity_difference(),
            "equal_opportunity_difference": cm.equal_opportunity_difference(),
            "average_odds_difference": cm.average_odds_difference(),
            "false_positive_rate_difference": cm.false_positive_rate_difference(),
            "error_rate_difference": cm.error_rate_difference(),
            "theil_index": cm.theil_index(),
        }


def _biased(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male", "other"], n, p=[0.45, 0.45, 0.1])
    age = rng.integers(18, 80, n).astype(float)
    score = rng.normal(size=n) - 0.6 * (sex == "female")
    label = (rng.normal(size=n) + 0.3 > 0).astype(int)
    return pd.DataFrame(
        {"sex": sex, "age": age, "x": rng.normal(size=n), "label": label, "prediction": (score > 0).astype(int)}
    )


def test_metrics_match_aif360(mart: openmart.Mart) -> None:
    frame = _biased()
    sub = mart.subscriptions.add("f", reference=frame.drop(columns="prediction"), label="label", problem_type="binary")
    ids = sub.payload.log(frame.drop(columns="label"))
    sub.feedback.log(frame.drop(columns="prediction").assign(scoring_id=list(ids)))
    sub.monitors.enable(
        "fairness",
        attributes=[
            {"feature": "sex", "monitored": "female", "reference": "male"},
            {"feature": "age", "monitored": "18-30", "reference": "31-79"},
        ],
        favourable=1,
    )
    result = sub.evaluate()
    got = {(m.feature, m.metric): m for m in result.measurements}
    sex = frame["sex"].map({"female": 1.0, "male": 0.0}).to_numpy()
    age = np.where(frame["age"] <= 30, 1.0, np.where(frame["age"] >= 31, 0.0, np.nan))
    for feature, group in (("sex", sex), ("age", age)):
        expected = _oracle(frame, group)
        for metric, value in expected.items():
            assert got[(feature, metric)].value == pytest.approx(value, rel=1e-9, abs=1e-12), (feature, metric)
    di = got[("sex", "disparate_impact")]
    assert di.breached and di.threshold == 0.8 and di.group == "female"
    assert not got[("age", "disparate_impact")].breached
    rates = di.details["rates"]
    female = frame[frame["sex"] == "female"]
    assert rates["monitored"]["favourable_percent"] == pytest.approx(100 * female["prediction"].mean())
    assert di.details["excluded_records"] == int((frame["sex"] == "other").sum())
    assert set(di.details["by_value"]) == {"female", "male", "other"}
    debiased = di.details["debiased"]
    assert debiased["disparate_impact_after"] > debiased["disparate_impact_before"]


def test_edge_cases(mart: openmart.Mart) -> None:
    frame = _biased(600)
    sub = mart.subscriptions.add("e", reference=frame.drop(columns="prediction"), label="label", problem_type="binary")
    sub.payload.log(frame.drop(columns="label"))
    sub.monitors.enable(
        "fairness",
        attributes=[{"feature": "sex", "monitored": "nobody", "reference": "male"}],
        favourable=1,
        min_records=10,
    )
    m = sub.evaluate().measurements[0]
    assert m.value is None and "no records in the monitored group" in m.details["reason"]
    sub.monitors.enable(
        "fairness",
        attributes=[{"feature": "sex", "monitored": "female", "reference": "male"}],
        favourable=1,
        min_records=10_000,
    )
    outcome = sub.evaluate().outcomes[0]
    assert outcome.status == "not_enough_data"
    with pytest.raises(MonitorError, match="not class labels"):
        sub.monitors.enable(
            "fairness", attributes=[{"feature": "sex", "monitored": "female", "reference": "male"}], favourable="yes"
        )
    with pytest.raises(MonitorError, match="categorical"):
        sub.monitors.enable("fairness", attributes=[{"feature": "sex", "monitored": "1-2", "reference": "male"}])
    from openmart.errors import ValidationError

    with pytest.raises(ValidationError, match="no column 'ghost'"):
        sub.monitors.enable("fairness", attributes=[{"feature": "ghost", "monitored": "a", "reference": "b"}])
