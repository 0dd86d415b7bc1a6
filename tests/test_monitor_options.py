"""Options are validated when a monitor is enabled: each bad option is refused with an error that
names it (and what it may be); through the CLI, exit 2 with one line and no traceback. Nothing
is stored for a refused monitor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.errors import MonitorError, ValidationError


@pytest.fixture
def sub(mart: openmart.Mart) -> openmart.Subscription:
    rng = np.random.default_rng(0)
    n = 300
    ref = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "age": rng.integers(18, 80, n),
            "colour": rng.choice(["red", "blue"], n),
            "label": rng.integers(0, 2, n),
        }
    )
    return mart.subscriptions.add("opts", reference=ref, label="label", problem_type="binary", categorical=["colour"])


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("quality", {"min_records": 0}, "option 'min_records' must be an integer >= 1; got 0"),
    ("quality", {"min_records": "many"}, "option 'min_records' must be an integer >= 1"),
    ("quality", {"min_records": True}, "option 'min_records'"),
    ("quality", {"colour": 1}, "unknown option 'colour' (known: min_records, thresholds)"),
    ("quality", {"thresholds": ["roc_auc=high"]}, "'high' is not a number"),
    ("quality", {"thresholds": ["roc_auc=1.5"]}, "roc_auc must be [0, 1]"),
    ("quality", {"thresholds": ["nonsense=0.5"]}, "unknown metric 'nonsense' (known: accuracy"),
    ("quality", {"thresholds": ["r2=0.5"]}, "not a binary metric"),
    ("quality", {"thresholds": ["roc_auc:sideways=0.5"]}, "the side must be lower or upper"),
    ("quality", {"thresholds": [{"metric": "roc_auc"}]}, "give metric and value"),
    ("quality", {"thresholds": 0.8}, "option 'thresholds' must be a list"),
    ("drift", {"method": "magic"}, "option 'method' must be one of auto, psi, ks"),
    ("drift", {"drift_share": 2}, "option 'drift_share' must be a number in (0, 1]; got 2"),
    ("drift", {"drift_share": 0}, "option 'drift_share' must be a number in (0, 1]"),
    ("drift", {"drift_share": "half"}, "option 'drift_share'"),
    ("drift", {"max_rows": -1}, "option 'max_rows' must be an integer >= 0"),
    ("drift", {"features": ["ghost"]}, "no column 'ghost'"),
    ("drift", {"tests": {"ghost": "ks"}}, "option 'tests' names 'ghost', not a feature or the output"),
    ("drift", {"tests": {"x": "nope"}}, "unknown drift test 'nope' (known: chisquare, jensenshannon, ks"),
    ("drift", {"tests": {"colour": "ks"}}, "'ks' measures numeric columns; 'colour' is categorical"),
    ("drift", {"tests": ["x"]}, "option 'tests' must be a mapping"),
    ("drift", {"thresholds": ["psi=abc"]}, "'abc' is not a number"),
    ("drift", {"thresholds": ["ghost=0.2"]}, "'ghost' is neither a drift test (chisquare"),
    ("drift", {"thresholds": ["ks=3"]}, "ks is a p-value, in [0, 1]"),
    ("drift", {"thresholds": ["share_of_drifted_features=1.5"]}, "share_of_drifted_features must lie in (0, 1]"),
    ("drift", {"threshold": -0.1}, "option 'threshold' must be a number >= 0"),
    ("fairness", {}, "option 'attributes' is required"),
    ("fairness", {"attributes": []}, "option 'attributes' needs at least one protected attribute"),
    ("fairness", {"attributes": "colour"}, "option 'attributes[0]' must be a mapping"),
    ("fairness", {"attributes": [{"feature": "colour", "reference": "red"}]}, "attributes[0]'.monitored is missing"),
    (
        "fairness",
        {"attributes": [{"feature": "colour", "monitored": None, "reference": "red"}]},
        "attributes[0]'.monitored is missing",
    ),
    ("fairness", {"attributes": [{"feature": "colour", "monitored": "blue"}]}, "attributes[0]'.reference is missing"),
    ("fairness", {"attributes": [{"monitored": "blue", "reference": "red"}]}, "attributes[0]'.feature is missing"),
    (
        "fairness",
        {"attributes": [{"feature": "colour", "monitored": "blue", "reference": "red", "groups": 1}]},
        "unknown key 'groups'",
    ),
    (
        "fairness",
        {"attributes": [{"feature": "age", "monitored": "young", "reference": "26-75"}]},
        "'age' is numeric; give numbers or ranges",
    ),
    (
        "fairness",
        {"attributes": [{"feature": "colour", "monitored": "blue", "reference": "red"}], "perturb": "maybe"},
        "option 'perturb' must be true or false",
    ),
    (
        "fairness",
        {"attributes": [{"feature": "colour", "monitored": "blue", "reference": "red"}], "thresholds": ["di=0.8"]},
        "unknown metric 'di' (known: average_odds_difference",
    ),
    (
        "fairness",
        {
            "attributes": [{"feature": "colour", "monitored": "blue", "reference": "red"}],
            "thresholds": [{"metric": "disparate_impact", "value": 0.9, "feature": "x"}],
        },
        "'x': not a protected attribute",
    ),
    ("explainability", {"method": "gradcam"}, "option 'method' must be one of shap, lime; got 'gradcam'"),
    ("explainability", {"sample": 0}, "option 'sample' must be an integer in [1, 10000]"),
    ("explainability", {"thresholds": ["attribution_ndcg=high"]}, "'high' is not a number"),
    ("explainability", {"thresholds": ["attribution_ndcg=1.2"]}, "attribution_ndcg must be [0, 1]"),
    ("explainability", {"thresholds": [{"metric": "attribution_ndcg"}]}, "give metric and value"),
    ("explainability", {"thresholds": ["ndcg=0.5"]}, "unknown metric 'ndcg' (known: attribution_ndcg)"),
    ("data_quality", {"completeness_threshold": 2}, "'completeness_threshold' must be a number in [0, 1]; got 2"),
    ("data_quality", {"constraints": ["x"]}, "option 'constraints' must be a mapping"),
    ("data_quality", {"constraints": {"features": [{"name": "ghost"}]}}, "features[0].name: 'ghost' is not a column"),
    ("data_quality", {"thresholds": ["violations=-1"]}, "violations must be >= 0"),
    (
        "nosuch",
        {},
        "unknown monitor kind 'nosuch' (known: data_quality, drift, estimated_performance, explainability, fairness, "
        "multivariate_drift, performance, quality",
    ),
]


@pytest.mark.parametrize(("kind", "options", "message"), CASES, ids=[f"{k}-{m[:30]}" for k, _, m in CASES])
def test_a_bad_option_is_refused_by_name(
    sub: openmart.Subscription, kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises((MonitorError, ValidationError)) as caught:
        sub.monitors.enable(kind, **options)
    assert message in str(caught.value)
    assert sub.monitors.configs() == []  # nothing stored


def test_good_options_are_coerced_and_stored(sub: openmart.Subscription) -> None:
    drift = sub.monitors.enable(
        "drift",
        min_records="50",
        drift_share="0.25",
        tests={"x": "psi"},
        thresholds=["psi=0.2", "x=0.3", "0.15", "share_of_drifted_features=0.4"],
    )
    assert drift.min_records == 50 and drift.parameters["drift_share"] == 0.4
    assert drift.parameters["tests"] == {"x": "psi"}
    got = {(t.metric, t.feature): (str(t.type), t.value) for t in drift.thresholds}
    # psi=0.2 is the psi test's threshold, not a feature named "psi"
    assert got == {
        ("psi", None): ("upper_limit", 0.2),
        ("drift", "x"): ("upper_limit", 0.3),
        ("drift", None): ("upper_limit", 0.15),
    }
    fairness = sub.monitors.enable(
        "fairness", attributes=[{"feature": "age", "monitored": "18-25", "reference": [[26, 80]]}], perturb="no"
    )
    assert fairness.parameters["attributes"][0]["monitored"] == [[18.0, 25.0]]
    assert fairness.parameters["perturb"] is False
    assert [c.kind for c in sub.monitors.configs()] == ["drift", "fairness"]


CLI_CASES: list[tuple[list[str], str]] = [
    (["quality", "--min-records", "0"], "option 'min_records' must be an integer >= 1"),
    (["quality", "--option", "colour=red"], "unknown option 'colour'"),
    (["quality", "--option", "oops"], "--option 'oops': expected NAME=VALUE"),
    (["drift", "--threshold", "psi=abc"], "'abc' is not a number"),
    (["drift", "--method", "magic"], "option 'method' must be one of auto, psi"),
    (["drift", "--test", "ghost=ks"], "option 'tests' names 'ghost'"),
    (["drift", "--test", "x"], "--test 'x': expected COLUMN=TEST"),
    (["drift", "--drift-share", "3"], "option 'drift_share' must be a number in (0, 1]"),
    (
        ["fairness", "--protected", "colour", "--monitored", "", "--reference", "red"],
        "attributes[0]'.monitored is missing",
    ),
    (["fairness", "--protected", "colour", "--monitored", "blue"], "once for each protected attribute"),
    (["explainability", "--threshold", "attribution_ndcg=high"], "'high' is not a number"),
    (["nosuch"], "unknown monitor kind 'nosuch'"),
]


@pytest.mark.parametrize(("args", "message"), CLI_CASES, ids=[" ".join(a)[:40] for a, _ in CLI_CASES])
def test_cli_refuses_a_bad_option_in_one_line(cli, tmp_path: Path, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    pd.DataFrame(
        {"x": rng.normal(size=50), "colour": rng.choice(["red", "blue"], 50), "label": rng.integers(0, 2, 50)}
    ).to_csv(tmp_path / "ref.csv", index=False)
    cli("subscribe", "add", "o", "--reference", str(tmp_path / "ref.csv"), "--label", "label", "--problem", "binary")
    result = cli("monitor", "enable", "o", *args, ok=False)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
