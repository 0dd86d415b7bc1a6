"""The explanation engine against known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from openmart.explain.engine import ReferenceStats, contrastive, explain_lime, explain_shap, ndcg

FEATURES = [f"x{i}" for i in range(6)]


@pytest.fixture(scope="module")
def logistic():
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(600, 6)), columns=FEATURES)
    logit = 2 * x["x0"] - 1.5 * x["x1"] + 0.5 * x["x2"]
    y = (rng.random(600) < 1 / (1 + np.exp(-logit))).astype(int)
    return LogisticRegression().fit(x, y), x


def test_shap_matches_the_exact_linear_answer(logistic) -> None:
    model, x = logistic
    background = x.iloc[:80]
    record = x.iloc[200]

    def log_odds(frame: pd.DataFrame) -> np.ndarray:
        return model.decision_function(frame[FEATURES].astype(float))

    exp = explain_shap(record, background, log_odds, features=FEATURES, nsamples=200)
    expected = model.coef_[0] * (record.to_numpy() - background.mean().to_numpy())
    assert np.allclose([exp.attributions[f] for f in FEATURES], expected, atol=1e-6)
    assert exp.output_value - exp.base_value == pytest.approx(sum(exp.attributions.values()))
    assert exp.output_value == pytest.approx(float(log_odds(record.to_frame().T)[0]))
    assert exp.scoring_calls <= 3


def test_shap_probability_space_adds_up_and_lime_ranks(logistic) -> None:
    model, x = logistic

    def proba(frame: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(frame[FEATURES].astype(float))[:, 1]

    record = x.iloc[10]
    exp = explain_shap(record, x.iloc[:30], proba, features=FEATURES)
    assert exp.base_value + sum(exp.attributions.values()) == pytest.approx(proba(record.to_frame().T)[0], abs=1e-6)
    lime = explain_lime(record, x, proba, features=FEATURES, num_samples=3000)
    assert lime.scoring_calls == 1 and lime.scored_rows == 3000
    top2 = {f for f, _ in lime.ranked()[:2]}
    assert top2 == {"x0", "x1"}


def test_categorical_features_reach_the_model_as_text() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"colour": rng.choice(["red", "blue"], 200), "size": rng.normal(size=200)})
    seen: list[set[str]] = []

    def score(batch: pd.DataFrame) -> np.ndarray:
        seen.append(set(batch["colour"]))
        return (batch["colour"] == "red").astype(float).to_numpy() * 0.6 + 0.2

    exp = explain_shap(frame.iloc[0], frame.iloc[:20], score, features=["colour", "size"], categorical=["colour"])
    assert set().union(*seen) <= {"red", "blue"}
    assert abs(exp.attributions["colour"]) > 0.1 and abs(exp.attributions["size"]) < 1e-9


def test_contrastive_flips_within_ranges(logistic) -> None:
    model, x = logistic

    def proba(frame: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(frame[FEATURES].astype(float))[:, 1]

    stats = ReferenceStats.from_frame(x, FEATURES, [])
    p = proba(x)
    record = x.iloc[int(np.argmin(np.abs(p - 0.6)))]  # near the boundary
    result = contrastive(record, stats, proba, features=FEATURES)
    assert result.found and result.scoring_calls == 1
    changed = record.copy()
    for f, change in result.changes.items():
        assert stats.numeric[f]["min"] <= change["to"] <= stats.numeric[f]["max"]
        changed[f] = change["to"]
    assert (proba(changed.to_frame().T)[0] >= 0.5) != (proba(record.to_frame().T)[0] >= 0.5)
    constant = contrastive(record, stats, lambda f: np.full(len(f), 0.9), features=FEATURES)
    assert not constant.found and constant.keep == []
    tiny = contrastive(x.iloc[int(np.argmax(p))], stats, proba, features=FEATURES, budget=8)
    assert not tiny.found


def test_ndcg() -> None:
    ref = {"a": 3.0, "b": 2.0, "c": 1.0}
    assert ndcg(ref, {"a": 0.9, "b": 0.5, "c": 0.1}) == pytest.approx(1.0)
    swapped = ndcg(ref, {"a": 0.1, "b": 0.5, "c": 0.9})
    by_hand = (1 / np.log2(2) + 2 / np.log2(3) + 3 / np.log2(4)) / (3 / np.log2(2) + 2 / np.log2(3) + 1 / np.log2(4))
    assert swapped == pytest.approx(by_hand) and swapped < 0.9
