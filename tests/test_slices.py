"""Slices and root cause (docs/slices.md): known answers on real PostgreSQL, scikit-learn as the
metric oracle, the expression language against pandas masks."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

import openmart
from openmart.errors import ValidationError
from openmart.schema import Column, ColumnKind, ProblemType, SubscriptionSchema
from openmart.slices.expressions import Categories, ExpressionError, evaluate, parse
from openmart.slices.metrics import benjamini_hochberg

REGIONS = np.array(["north", "south", "east", "west"])


def _people(n: int, seed: int, *, broken: float = 0.0, noise: float = 0.08) -> pd.DataFrame:
    """Records with a label and a model's prediction: right but for ``noise``, and for ``broken``
    of the segment region == 'north' and age > 60 (the prediction flipped there on purpose)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "region": rng.choice(REGIONS, n),
            "age": rng.integers(18, 91, n).astype(float),
            "income": rng.normal(50_000, 15_000, n).round(0),
            "sex": rng.choice(["F", "M"], n),
        }
    )
    y = (frame["income"] / 10_000 + rng.normal(0, 1, n) > 5).astype(int)
    flip = rng.random(n) < noise
    segment = (frame["region"] == "north") & (frame["age"] > 60)
    flip |= segment.to_numpy() & (rng.random(n) < broken)
    frame["label"] = y
    frame["prediction"] = np.where(flip, 1 - y, y)
    return frame


def _subscription(mart: openmart.Mart, current: pd.DataFrame, reference: pd.DataFrame, name: str = "people"):
    sub = mart.subscriptions.add(
        name, reference=reference, label="label", problem_type="binary", class_labels=[0, 1], probability=None
    )
    sub.feedback.log(current)
    return sub


@pytest.fixture
def broken(mart: openmart.Mart):
    return _subscription(mart, _people(8000, 1, broken=0.4), _people(3000, 2))


# -- the search -----------------------------------------------------------------------------------


def test_the_broken_segment_ranks_first(broken) -> None:
    result = broken.slices()
    top = result.frame.iloc[0]
    assert top["slice"] == "region == 'north'"
    assert top["significant"] and top["q_value"] < 1e-6
    assert top["value"] < top["rest"]
    # the age bins above 60 are next in line among the other features' slices
    ages = result.frame[result.frame["features"] == "age"]
    assert len(ages) and all(">= 6" in s or ">= 7" in s or ">= 8" in s for s in ages["slice"])
    assert not result.frame["features"].isin(["sex"]).any()
    # with pairs, the conjunctions of north and an age bin above 60 are found: the worst pairs
    # (impact prefers the broad slice holding all the damage, region == 'north', ranked first still)
    with_pairs = broken.slices(pairs=True, top=100)
    assert with_pairs.frame.iloc[0]["slice"] == "region == 'north'"
    pairs = with_pairs.frame[with_pairs.frame["kind"] == "pair"].sort_values("value")
    worst = re.fullmatch(r"age >= ([0-9.]+)( and age < [0-9.]+)? and region == 'north'", pairs.iloc[0]["slice"])
    assert worst and float(worst.group(1)) >= 59


def test_between_windows_the_segment_dropped_from_the_reference(broken) -> None:
    result = broken.slices(baseline="reference")
    assert result.against == "baseline" and "baseline" in result.frame.columns
    assert result.frame.iloc[0]["slice"] == "region == 'north'"
    assert result.baseline_overall > result.overall


def test_metrics_equal_sklearn_on_the_same_rows(mart: openmart.Mart) -> None:
    current = _people(3000, 3, broken=0.4)
    sub = _subscription(mart, current, _people(500, 4))
    for metric, fn in (
        ("accuracy", skm.accuracy_score),
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        result = sub.slices(metric=metric, alpha=1.0, min_support=0.0, top=10_000)
        for region in REGIONS:
            row = result.tested[result.tested["slice"] == f"region == '{region}'"].iloc[0]
            rows = current[current["region"] == region]
            rest = current[current["region"] != region]
            assert row["records"] == len(rows)
            assert row["value"] == pytest.approx(fn(rows["label"], rows["prediction"]))
            assert row["rest"] == pytest.approx(fn(rest["label"], rest["prediction"]))
        assert result.overall == pytest.approx(fn(current["label"], current["prediction"]))


def test_regression_mae_and_rmse_match_sklearn(mart: openmart.Mart) -> None:
    rng = np.random.default_rng(5)
    n = 2000
    frame = pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice(["a", "b"], n)})
    frame["label"] = frame["x"] * 2 + rng.normal(size=n)
    frame["prediction"] = frame["x"] * 2 + np.where(frame["g"] == "b", 1.5, 0.0)
    sub = mart.subscriptions.add("reg", reference=frame, label="label", problem_type="regression", probability=None)
    sub.feedback.log(frame)
    result = sub.slices()
    assert result.metric == "mae" and result.frame.iloc[0]["slice"] == "g == 'b'"
    b = frame[frame["g"] == "b"]
    assert result.frame.iloc[0]["value"] == pytest.approx(skm.mean_absolute_error(b["label"], b["prediction"]))
    rmse = sub.slices(metric="rmse", alpha=1.0, min_support=0.0)
    row = rmse.tested[rmse.tested["slice"] == "g == 'b'"].iloc[0]
    assert row["value"] == pytest.approx(np.sqrt(skm.mean_squared_error(b["label"], b["prediction"])))


def test_tiny_slices_are_not_ranked(mart: openmart.Mart) -> None:
    current = _people(4000, 6)
    # a rare category, always wrong: high error, tiny support
    rare = current.index[:20]
    current.loc[rare, "region"] = "island"
    current.loc[rare, "prediction"] = 1 - current.loc[rare, "label"]
    sub = _subscription(mart, current, _people(500, 7))
    assert "region == 'island'" not in set(sub.slices(top=100).tested["slice"])
    # with the support floor lowered it is tested, and found
    low = sub.slices(min_support=0.0, min_records=10)
    assert low.frame.iloc[0]["slice"] == "region == 'island'" and low.frame.iloc[0]["value"] == 0.0


def test_chance_is_not_significant(mart: openmart.Mart) -> None:
    current = _people(6000, 8)
    rng = np.random.default_rng(9)
    current["prediction"] = rng.integers(0, 2, len(current))  # right half the time, everywhere alike
    sub = _subscription(mart, current, _people(500, 10))
    result = sub.slices(pairs=True)
    assert len(result.tested) > 40 and result.tested["p_value"].min() < 0.05  # some slice looks worse by chance...
    assert result.frame.empty  # ...and none survives the correction


def test_benjamini_hochberg_matches_the_definition() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.2])
    # sorted 0.01, 0.03, 0.04, 0.2 -> 0.04, 0.0533, 0.0533, 0.2
    assert benjamini_hochberg(p) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])


# -- expressions ----------------------------------------------------------------------------------

SCHEMA = SubscriptionSchema(
    features=(
        Column("age", ColumnKind.NUMERIC),
        Column("region", ColumnKind.CATEGORICAL),
        Column("sex", ColumnKind.CATEGORICAL),
        Column("credit score", ColumnKind.NUMERIC),
    ),
    label="label",
    problem_type=ProblemType.BINARY,
)


def _columns(frame: pd.DataFrame) -> dict:
    out: dict = {}
    for c in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[c]):
            vocab = tuple(sorted(frame[c].dropna().unique()))
            codes = frame[c].map({v: i for i, v in enumerate(vocab)}).fillna(-1).astype(int).to_numpy()
            out[c] = Categories(codes, vocab)
        else:
            out[c] = frame[c].to_numpy(dtype=float)
    return out


@pytest.mark.parametrize(
    ("text", "mask"),
    [
        ("age > 50 and sex == 'F'", lambda f: (f.age > 50) & (f.sex == "F")),
        (
            "age >= 50 or not (region in ['north', \"east\"])",
            lambda f: (f.age >= 50) | ~f.region.isin(["north", "east"]),
        ),
        ("region not in ['north'] and age < 40.5", lambda f: f.region.notna() & (f.region != "north") & (f.age < 40.5)),
        (
            "not not (age <= 30) and `credit score` != -1.5e2",
            lambda f: (f.age <= 30) & f["credit score"].notna() & (f["credit score"] != -150),
        ),
        ("(sex != 'M')", lambda f: f.sex.notna() & (f.sex != "M")),
        ("age == 42 or age == 43 and sex == 'M'", lambda f: (f.age == 42) | ((f.age == 43) & (f.sex == "M"))),
    ],
)
def test_expressions_select_what_pandas_selects(text: str, mask) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    n = 2000
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 60, n).astype(float),
            "region": rng.choice(["north", "south", "east", None], n),
            "sex": rng.choice(["F", "M", None], n),
            "credit score": rng.choice([-150.0, 1.0, np.nan], n),
        }
    )
    frame.loc[rng.random(n) < 0.1, "age"] = np.nan
    expected = mask(frame).fillna(False).to_numpy(dtype=bool)
    got = evaluate(parse(text, SCHEMA), _columns(frame))
    assert got.sum() > 0 and (got == expected).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agee > 3", r"unknown feature 'agee' \(the schema has: .*\) at position 0"),
        ("age > 3 and sx == 'F'", r"unknown feature 'sx'.* at position 12"),
        ("age > ", r"expected a number or a quoted text, found 'nothing' at the end"),
        ("age >> 3", r"expected a number or a quoted text, found '>' at position 5"),
        ("age > 'old'", r"'age' is numeric: compare it with a number, not 'old' at position 6"),
        ("sex == 1", r"'sex' is categorical: compare it with text in quotes, not 1 at position 7"),
        ("sex < 'M'", r"'sex' is categorical: '<' does not apply to it at position 4"),
        ("(age > 3", r"expected '\)', found 'nothing' at the end"),
        ("age > 3 sex == 'F'", r"unexpected 'sex' at position 8"),
        ("age in [1, 2", r"expected '\]'"),
        ("age > 3; DROP TABLE x", r"unexpected ';' at position 7"),
        ("sex == 'F' or 1 == 1", r"expected a feature name, found '1' at position 14"),
        ("__import__('os').system('x')", r"unexpected '\.' at position 16"),
        ("__import__ == 'os'", r"unknown feature '__import__'"),
        ("age > 3 -- comment", r"unexpected '-' at position 8"),
        ("sex == 'F'' OR ''1'='1'", r"unexpected"),
        ("", r"non-empty"),
        ("not " * 100 + "age > 1", r"nested deeper than"),
    ],
)
def test_bad_expressions_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        parse(text, SCHEMA)


def test_expressions_through_the_api(broken) -> None:
    result = broken.slices(expressions=["region == 'north' and age > 60", "sex == 'F'"])
    rows = result.expressions.set_index("slice")
    segment = rows.loc["region == 'north' and age > 60"]
    assert segment["value"] < 0.75 < segment["rest"] and segment["p_value"] < 1e-9
    assert rows.loc["sex == 'F'"]["p_value"] > 0.001
    # the expressions asked together are one family: Benjamini-Hochberg over their p-values (scipy's oracle)
    from scipy.stats import false_discovery_control

    expected = false_discovery_control(result.expressions["p_value"].to_numpy(dtype=float), method="bh")
    assert np.allclose(result.expressions["q_value"].to_numpy(dtype=float), expected, rtol=1e-12)
    assert bool(segment["significant"]) and not bool(rows.loc["sex == 'F'"]["significant"])
    with pytest.raises(ValidationError, match="unknown feature 'regoin'"):
        broken.slices(expressions=["regoin == 'north'"])
    with pytest.raises(ValidationError, match="not a binary slice metric"):
        broken.slices(metric="mae")


# -- root cause -----------------------------------------------------------------------------------


def _shifted(n: int, seed: int, *, shift: float) -> pd.DataFrame:
    """The model is right 95% of the time where x < 1, 60% where x >= 1; z does not matter to it.
    ``shift`` moves x and z (and w stays)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, n)
    z = rng.normal(2 * shift, 1, n)
    w = rng.normal(0, 1, n)
    y = rng.integers(0, 2, n)
    right = rng.random(n) < np.where(x < 1, 0.95, 0.6)
    return pd.DataFrame({"w": w, "z": z, "x": x, "label": y, "prediction": np.where(right, y, 1 - y)})


def test_root_cause_names_the_shifted_feature_that_matters(mart: openmart.Mart) -> None:
    sub = _subscription(mart, _shifted(6000, 12, shift=1.5), _shifted(6000, 13, shift=0.0), name="shift")
    found = sub.root_cause()
    frame = found.frame.set_index("feature")
    assert list(found.frame["feature"])[0] == "x"
    assert found.current_value < found.baseline_value - 0.1
    # x's shift explains most of the drop; z drifted further (PSI) yet explains none of it
    assert frame.loc["x", "explained_share"] > 0.7
    assert (
        abs(frame.loc["z", "explained"]) < 0.05 < abs(frame.loc["x", "explained"])
        and frame.loc["z", "psi"] > frame.loc["x", "psi"]
    )
    assert frame.loc["w", "psi"] < 0.05
    assert list(found.frame["feature"]).index("z") > 0


def test_root_cause_explains_the_breached_metric_by_default(mart: openmart.Mart) -> None:
    """A quality alert on recall: root cause without a metric measures recall, and says which alert."""
    sub = _subscription(mart, _shifted(3000, 16, shift=1.5), _shifted(3000, 17, shift=0.0), name="breach")
    assert sub.root_cause().metric == "accuracy"  # no alert yet: the default
    sub.monitors.enable("quality", thresholds=["recall=0.99", "roc_auc=0.0"], min_records=10)
    sub.evaluate()
    (alert,) = [a for a in mart.alerts(status="open").itertuples() if a.monitor == "quality"]
    assert alert.metric == "recall"
    found = sub.root_cause()
    assert found.metric == "recall" and found.settings["metric_from_alert"] == alert.id
    mart.resolve_alert(alert.id)
    assert sub.root_cause().metric == "accuracy"


def test_root_cause_needs_a_labelled_baseline(mart: openmart.Mart) -> None:
    reference = _shifted(500, 14, shift=0.0).drop(columns="prediction")
    sub = _subscription(mart, _shifted(500, 15, shift=1.0), reference, name="nopred")
    with pytest.raises(ValidationError, match="needs a labelled baseline"):
        sub.root_cause()


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_slices_and_root_cause(mart: openmart.Mart, cli) -> None:  # type: ignore[no-untyped-def]
    _subscription(mart, _people(8000, 1, broken=0.4), _people(3000, 2))
    shown = cli("slices", "people", "--top", "3", "--where", "region == 'north' and age > 60")
    assert "region == 'north'" in shown.stdout and "impact" in shown.stdout
    assert "region == 'north' and age > 60" in shown.stdout
    data = json.loads(cli("slices", "people", "--json", "--pairs").stdout)
    assert data["slices"][0]["slice"] == "region == 'north'" and data["metric"] == "accuracy"
    bad = cli("slices", "people", "--where", "age >> 3", ok=False)
    assert bad.exit_code == 2 and "at position 5" in bad.stderr
    rc = json.loads(cli("root-cause", "people", "--json").stdout)
    assert rc["metric"] == "accuracy" and len(rc["features"]) == 4
    assert "explained" in cli("root-cause", "people").stdout


def test_report_has_a_slices_section(broken) -> None:
    from openmart.report import slices as report_slices

    section = report_slices.section(broken)
    assert "region == &#x27;north&#x27;" in section and "<svg" in section
    assert "significant after Benjamini" in section
