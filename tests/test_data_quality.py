"""The data_quality monitor and SageMaker's data-quality files: planted nulls, out-of-range
values, new categories and fractional values in an integral column are each found, with their
counts, where they were planted and nowhere else; clean data breaches nothing; statistics.json
matches pandas; constraints.json goes out and comes back; a bad file is refused by its field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.errors import MonitorError

N_REF, N_CUR = 1000, 400


def _reference() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    i = np.arange(N_REF)
    balance = rng.uniform(0, 100, N_REF)
    balance[i % 10 == 9] = np.nan  # a column with nulls in the reference too: 10%
    return pd.DataFrame(
        {
            "age": rng.integers(18, 81, N_REF).astype(float),  # Integral
            "income": rng.normal(50_000, 12_000, N_REF),  # Fractional, no nulls
            "balance": balance,
            "colour": rng.choice(["red", "green", "blue"], N_REF),
            "region": rng.choice(["north", "south"], N_REF),
            "label": rng.integers(0, 2, N_REF),
        }
    )


def _clean(ref: pd.DataFrame, seed: int = 11) -> pd.DataFrame:
    """Production records from the reference's distribution; numbers kept inside the reference's
    range (its extremes are a sample's, the tolerance is tested apart) and nulls where the
    reference has them, at the same 10%."""
    rng = np.random.default_rng(seed)
    i = np.arange(N_CUR)
    balance = rng.uniform(ref["balance"].min(), ref["balance"].max(), N_CUR)
    balance[i % 10 == 9] = np.nan
    return pd.DataFrame(
        {
            "age": rng.integers(18, 81, N_CUR).astype(float),
            "income": np.clip(rng.normal(50_000, 12_000, N_CUR), ref["income"].min(), ref["income"].max()),
            "balance": balance,
            "colour": rng.choice(["red", "green", "blue"], N_CUR),
            "region": rng.choice(["north", "south"], N_CUR),
            "prediction": rng.integers(0, 2, N_CUR),
        }
    )


def _planted(ref: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    cur = _clean(ref)
    i = np.arange(N_CUR)
    nulls = i % 10 == 5  # 40 incomes missing
    cur.loc[nulls, "income"] = np.nan
    high = (i % 10 == 0) & (i < 300)  # 30 balances far above the reference's max (never on a null row)
    cur.loc[high, "balance"] = 150.0 + i[high]
    purple = i % 25 == 3  # 16 new colours
    cur.loc[purple, "colour"] = "purple"
    half = i % 50 == 7  # 8 fractional ages, inside the range
    cur.loc[half, "age"] = cur.loc[half, "age"].clip(20, 70) + 0.5
    return cur, {
        "nulls": int(nulls.sum()),
        "high": int(high.sum()),
        "purple": int(purple.sum()),
        "half": int(half.sum()),
    }


@pytest.fixture
def ref() -> pd.DataFrame:
    return _reference()


@pytest.fixture
def sub(mart: openmart.Mart, ref: pd.DataFrame) -> openmart.Subscription:
    return mart.subscriptions.add("dq", reference=ref, label="label", problem_type="binary")


def _breached(result: Any) -> set[tuple[str, str | None]]:
    return {(m.metric, m.feature) for m in result.measurements if m.breached}


def _measured(result: Any, metric: str, feature: str) -> Any:
    return next(m for m in result.measurements if m.metric == metric and m.feature == feature)


def test_planted_faults_are_found_each_where_planted_and_nothing_else(
    sub: openmart.Subscription, ref: pd.DataFrame
) -> None:
    cur, planted = _planted(ref)
    sub.payload.log(cur)
    sub.monitors.enable("data_quality")
    result = sub.evaluate()
    assert _breached(result) == {
        ("completeness", "income"),
        ("out_of_range", "balance"),
        ("unseen_categories", "colour"),
        ("type_conformance", "age"),
    }
    income = _measured(result, "completeness", "income")
    assert income.value == pytest.approx((N_CUR - planted["nulls"]) / N_CUR) and income.threshold == 1.0
    assert income.details["missing"] == planted["nulls"]
    balance = _measured(result, "out_of_range", "balance")
    present = N_CUR - N_CUR // 10
    assert balance.details["outside"] == planted["high"] and balance.value == pytest.approx(planted["high"] / present)
    assert balance.threshold == 0.01 and balance.details["max"] == pytest.approx(ref["balance"].max())
    assert {e["value"] for e in balance.details["examples"]} <= set(cur.loc[cur["balance"] >= 150, "balance"])
    colour = _measured(result, "unseen_categories", "colour")
    assert colour.details["unseen"] == planted["purple"] and colour.value == pytest.approx(planted["purple"] / N_CUR)
    assert colour.details["examples"] == [{"value": "purple", "count": planted["purple"]}]
    age = _measured(result, "type_conformance", "age")
    assert age.details["nonconforming"] == planted["half"] and age.value == pytest.approx(1 - planted["half"] / N_CUR)
    assert all(e["value"] % 1 == 0.5 for e in age.details["examples"])
    # the column with nulls in the reference as well passes: its suggested completeness sits below 90%
    assert not _measured(result, "completeness", "balance").breached
    violations = next(m for m in result.measurements if m.metric == "violations")
    assert violations.value == 4 and not violations.breached  # no threshold unless the user sets one
    # alerts: one per breached check, nothing for the rest
    alerts = sub.mart.alerts(subscription="dq")
    assert set(zip(alerts["metric"], alerts["feature"], strict=True)) == _breached(result)

    doc = sub.constraints.violations()
    assert sorted((v["feature_name"], v["constraint_check_type"]) for v in doc["violations"]) == [
        ("age", "data_type_check"),
        ("balance", "openmart_range_check"),
        ("colour", "categorical_values_check"),
        ("income", "completeness_check"),
    ]
    colour_text = next(v["description"] for v in doc["violations"] if v["feature_name"] == "colour")
    assert "16 of 400" in colour_text and "'purple'" in colour_text
    assert sub.constraints.violations(result.evaluation_id) == doc


def test_clean_data_violates_nothing(sub: openmart.Subscription, ref: pd.DataFrame) -> None:
    sub.payload.log(_clean(ref))
    sub.monitors.enable("data_quality")
    result = sub.evaluate()
    assert _breached(result) == set()
    checked = {(m.metric, m.feature) for m in result.measurements}
    assert ("unseen_categories", "colour") in checked and ("out_of_range", "income") in checked
    assert ("type_conformance", "age") in checked and ("type_conformance", "income") not in checked  # Fractional
    assert sub.constraints.violations() == {"violations": []}


def test_suggested_constraints_follow_the_reference(sub: openmart.Subscription, ref: pd.DataFrame) -> None:
    doc = sub.constraints.suggest()
    features = {f["name"]: f for f in doc["features"]}
    assert [f["name"] for f in doc["features"]] == ["age", "income", "balance", "colour", "region"]
    assert features["age"]["inferred_type"] == "Integral" and features["income"]["inferred_type"] == "Fractional"
    assert features["colour"]["inferred_type"] == "String"
    assert features["colour"]["string_constraints"] == {"domains": ["blue", "green", "red"]}
    assert features["income"]["completeness"] == 1.0
    p = 0.9  # the lower end of a 95% interval around the reference's 90% present
    assert features["balance"]["completeness"] == pytest.approx(p - 1.96 * np.sqrt(p * (1 - p) / N_REF), abs=1e-4)
    rng = features["balance"]["num_constraints"]["openmart_range"]
    assert (rng["min"], rng["max"]) == (ref["balance"].min(), ref["balance"].max())
    assert features["balance"]["num_constraints"]["is_non_negative"] is True
    assert features["income"]["num_constraints"]["is_non_negative"] is bool(ref["income"].min() >= 0)
    assert doc["monitoring_config"]["datatype_check_threshold"] == 1.0


def test_statistics_match_pandas(sub: openmart.Subscription, ref: pd.DataFrame) -> None:
    doc = sub.constraints.statistics()
    assert doc["dataset"]["item_count"] == N_REF
    features = {f["name"]: f for f in doc["features"]}
    for name in ("age", "income", "balance"):
        col = ref[name]
        num = features[name]["numerical_statistics"]
        assert num["common"] == {"num_present": int(col.count()), "num_missing": int(col.isna().sum())}
        assert num["mean"] == pytest.approx(col.mean(), rel=1e-12)
        assert num["sum"] == pytest.approx(col.sum(), rel=1e-12)
        # SageMaker (Deequ) writes the population standard deviation: ddof=0
        assert num["std_dev"] == pytest.approx(np.std(col.dropna().to_numpy(), ddof=0), rel=1e-9)
        assert num["std_dev"] != pytest.approx(col.std(ddof=1), rel=1e-9)
        assert (num["min"], num["max"]) == (col.min(), col.max())
        buckets = num["distribution"]["kll"]["buckets"]
        assert len(buckets) == 10 and sum(b["count"] for b in buckets) == col.count()
        edges = np.linspace(col.min(), col.max(), 11)
        assert [b["count"] for b in buckets] == np.histogram(col.dropna(), edges)[0].tolist()
    assert features["age"]["inferred_type"] == "Integral" and features["balance"]["inferred_type"] == "Fractional"
    strings = features["colour"]["string_statistics"]
    counts = ref["colour"].value_counts()
    assert strings["distinct_count"] == ref["colour"].nunique() == 3
    assert {b["value"]: b["count"] for b in strings["distribution"]["categorical"]["buckets"]} == counts.to_dict()
    assert strings["common"] == {"num_present": N_REF, "num_missing": 0}


def test_constraints_round_trip_through_files(
    sub: openmart.Subscription, ref: pd.DataFrame, tmp_path: Path, mart: openmart.Mart
) -> None:
    statistics, constraints = sub.constraints.baseline()
    (tmp_path / "constraints.json").write_text(json.dumps(constraints))
    (tmp_path / "statistics.json").write_text(json.dumps(statistics))
    other = mart.subscriptions.add("dq2", reference=ref, label="label", problem_type="binary")
    config = other.constraints.load(
        json.loads((tmp_path / "constraints.json").read_text()),
        statistics=json.loads((tmp_path / "statistics.json").read_text()),
    )
    assert config.parameters["constraints"] == constraints
    assert other.constraints.current() == constraints
    assert other.monitors.get("data_quality").parameters["statistics"] == statistics
    # the stored baseline does not move when the reference does
    other.reference.load(ref.assign(income=ref["income"] * 10))
    assert other.constraints.current() == constraints
    assert other.constraints.suggest() != constraints
    cur, _ = _planted(ref)
    other.payload.log(cur)
    # checked against the stored baseline: the same four; against the new reference's, every income would be out
    assert _breached(other.evaluate()) == {
        ("completeness", "income"),
        ("out_of_range", "balance"),
        ("unseen_categories", "colour"),
        ("type_conformance", "age"),
    }


def test_options_override_the_constraints(sub: openmart.Subscription, ref: pd.DataFrame) -> None:
    cur, planted = _planted(ref)
    sub.payload.log(cur)
    sub.monitors.enable(
        "data_quality", completeness_threshold=0.8, domain_content_threshold=0.9, out_of_range_threshold=0.2
    )
    result = sub.evaluate()
    assert _breached(result) == {("type_conformance", "age")}
    assert _measured(result, "unseen_categories", "colour").threshold == pytest.approx(0.1)
    sub.monitors.enable("data_quality", datatype_check_threshold=0.9, completeness_threshold=0.8)
    assert ("type_conformance", "age") not in _breached(sub.evaluate())


def _suggested(sub: openmart.Subscription) -> dict[str, Any]:
    return sub.constraints.suggest()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["features"][0].update(completness=1.0), "features[0].completness: unknown field (known: name"),
        (lambda d: d["features"][1].update(name="ghost"), "features[1].name: 'ghost' is not a column"),
        (lambda d: d["features"][0].update(completeness=1.5), "features[0].completeness: must be a number in [0, 1]"),
        (lambda d: d["features"][0].update(inferred_type="Integer"), "features[0].inferred_type: must be one of"),
        (lambda d: d["monitoring_config"].update(domain_threshold=0.1), "monitoring_config.domain_threshold: unknown"),
        (
            lambda d: d["features"][3].update(num_constraints={"is_non_negative": True}),
            "features[3].num_constraints: 'colour' is a categorical (text) column",
        ),
        (
            lambda d: d["features"][1]["num_constraints"]["openmart_range"].update(min=10.0, max=1.0),
            "openmart_range: min 10 is above max 1",
        ),
        (lambda d: d["features"].append(dict(d["features"][0])), "features[5].name: 'age' appears twice"),
        (lambda d: d.update(feature=[]), "constraints.json: feature: unknown field (known: version, features"),
    ],
)
def test_a_bad_constraints_file_is_refused_by_its_field(sub: openmart.Subscription, edit: Any, message: str) -> None:
    doc = _suggested(sub)
    edit(doc)
    with pytest.raises(MonitorError) as caught:
        sub.constraints.load(doc)
    assert message in str(caught.value)
    with pytest.raises(openmart.errors.NotFound):
        sub.monitors.get("data_quality")  # nothing stored


def test_a_sagemaker_file_without_openmart_fields_is_checked(sub: openmart.Subscription, ref: pd.DataFrame) -> None:
    """A file as SageMaker writes it (no openmart_range; version 0.0; distribution settings)."""
    sagemaker = {
        "version": 0.0,
        "features": [
            {
                "name": "age",
                "inferred_type": "Integral",
                "completeness": 1.0,
                "num_constraints": {"is_non_negative": True},
            },
            {
                "name": "colour",
                "inferred_type": "String",
                "completeness": 1.0,
                "string_constraints": {"domains": ["red", "green", "blue"]},
                "monitoringConfigOverrides": {"domain_content_threshold": 0.9},
            },
        ],
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 1.0,
            "domain_content_threshold": 1.0,
            "distribution_constraints": {"perform_comparison": "Enabled", "comparison_threshold": 0.1},
        },
    }
    cur, _ = _planted(ref)
    sub.payload.log(cur)
    sub.constraints.load(sagemaker)
    result = sub.evaluate()
    # colour's 4% unseen stays under its own override (10%); age's fractional values are found
    assert _breached(result) == {("type_conformance", "age")}
    assert {m.feature for m in result.measurements if m.feature} == {"age", "colour"}
    sagemaker["monitoring_config"]["evaluate_constraints"] = "Disabled"
    sub.constraints.load(sagemaker)
    assert sub.evaluate().outcomes[0].status == "skipped"


def test_cli_suggest_load_and_violations(cli: Any, mart: openmart.Mart, ref: pd.DataFrame, tmp_path: Path) -> None:
    sub = mart.subscriptions.add("dq", reference=ref, label="label", problem_type="binary")
    cur, _ = _planted(ref)
    sub.payload.log(cur)
    out = tmp_path / "baseline"
    cli("constraints", "suggest", "dq", "-o", str(out))
    constraints = json.loads((out / "constraints.json").read_text())
    statistics = json.loads((out / "statistics.json").read_text())
    assert statistics["dataset"]["item_count"] == N_REF and constraints == sub.constraints.suggest()

    constraints["features"][0]["completness"] = 1.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(constraints))
    refused = cli("constraints", "load", "dq", str(bad), ok=False)
    assert refused.exit_code == 2 and "features[0].completness: unknown field" in refused.stderr
    (tmp_path / "broken.json").write_text("{")
    broken = cli("constraints", "load", "dq", str(tmp_path / "broken.json"), ok=False)
    assert broken.exit_code == 2 and "not JSON" in broken.stderr

    cli("constraints", "load", "dq", str(out / "constraints.json"), "--statistics", str(out / "statistics.json"))
    none_yet = cli("constraints", "violations", "dq", ok=False)
    assert none_yet.exit_code == 1 and "no evaluation has measured data quality" in none_yet.stderr
    evaluated = cli("evaluate", "dq")
    assert evaluated.stdout.count("BREACHED") == 4
    assert "data_quality: ok, 400 records (4 constraints violated: openmart constraints violations dq)" in (
        " ".join(evaluated.stderr.split())
    )
    shown = json.loads(cli("constraints", "violations", "dq", "--json").stdout)
    assert {v["feature_name"] for v in shown["violations"]} == {"age", "balance", "colour", "income"}
    table = cli("constraints", "violations", "dq").stdout
    assert "categorical_values_check" in table and "colour" in table
    evaluation = sub.constraints.latest_evaluation()
    assert json.loads(cli("constraints", "violations", "dq", "--evaluation", str(evaluation), "--json").stdout) == shown


def test_the_report_lists_the_latest_violations(sub: openmart.Subscription, ref: pd.DataFrame, tmp_path: Path) -> None:
    from openmart.report import write_report

    assert "Data quality" not in write_report(sub, tmp_path / "none.html").read_text()  # not enabled: no section
    sub.monitors.enable("data_quality")
    assert "not evaluated yet" in write_report(sub, tmp_path / "enabled.html").read_text()
    cur, _ = _planted(ref)
    sub.payload.log(cur)
    evaluation = sub.evaluate().evaluation_id
    text = write_report(sub, tmp_path / "report.html").read_text()
    section = text[text.index("Data quality: constraint violations") :]
    assert f"evaluation {evaluation}: 4 violation(s)" in section
    for check in ("completeness_check", "data_type_check", "openmart_range_check", "categorical_values_check"):
        assert check in section
    assert "&#x27;purple&#x27; x16" in section  # escaped, as every value the report shows
