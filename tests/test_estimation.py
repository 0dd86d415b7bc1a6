"""Performance without labels (issue #18): CBPE and DLE against NannyML 0.13 itself, per chunk, on
NannyML's own shipped synthetic datasets; and the estimated_performance monitor through the mart.

The oracle is NannyML run in an environment of its own (benchmarks/oracles/nannyml_env.py: built
from PyPI once per machine and pins, then reused); openmart never imports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.estimation import CBPE, DLE
from openmart.estimation.calibration import needs_calibration
from openmart.estimation.common import chunk_slices

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "oracles"))
import nannyml_env  # noqa: E402

TOLERANCE = 0.01  # the issue's: per chunk, against NannyML 0.13
#: what we measure (the same arithmetic, float rounding apart): a sampling error is ~0.002, so 0.01
#: alone would not notice a wrong sampling-error formula
EXACT = 1e-6
CLASSIFICATION = ["roc_auc", "accuracy", "precision", "recall", "f1"]
FIELDS = {  # ours -> NannyML's column
    "value": "value",
    "sampling_error": "sampling_error",
    "realized": "realized",
    "lower_confidence": "lower_confidence_boundary",
    "upper_confidence": "upper_confidence_boundary",
    "lower_threshold": "lower_threshold",
    "upper_threshold": "upper_threshold",
}
MULTICLASS = sorted(["prepaid_card", "highstreet_card", "upmarket_card"])
CAR_FEATURES = ["car_age", "km_driven", "price_new", "accident_count", "door_count", "fuel", "transmission"]


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NannyML's datasets and its per-chunk results, from NannyML's own environment."""
    return nannyml_env.datasets(tmp_path_factory.mktemp("nannyml"))


def _load(oracle: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return tuple(pd.read_parquet(oracle / f"{name}_{part}.parquet") for part in ("reference", "analysis", "results"))  # type: ignore[return-value]


def _differences(estimate_chunk, reference, analysis, results, size, metrics) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """|ours - NannyML's| for every chunk (reference and analysis periods), metric and field."""
    rows = []
    for period, data in (("reference", reference), ("analysis", analysis)):
        theirs = results[results["chunk__period"] == period].reset_index(drop=True)
        slices = list(chunk_slices(len(data), size))
        assert len(slices) == len(theirs)
        for i, s in enumerate(slices):
            ours = estimate_chunk(data.iloc[s])
            for metric in metrics:
                for field, column in FIELDS.items():
                    a = getattr(ours[metric], field)
                    b = float(theirs.at[i, f"{metric}__{column}"])
                    a = np.nan if a is None else a
                    same_nan = np.isnan(a) and np.isnan(b)
                    rows.append((period, i, metric, field, 0.0 if same_nan else abs(a - b), b))
    return pd.DataFrame(rows, columns=["period", "chunk", "metric", "field", "diff", "nannyml"])


def _assert_agree(diffs: pd.DataFrame, relative: bool = False, tolerance: float = TOLERANCE) -> None:
    scale = diffs["nannyml"].abs().clip(lower=1e-9) if relative else 1.0
    worst = (diffs["diff"] / scale).max()
    if not worst <= tolerance:  # also fails on NaN
        bad = diffs.assign(scaled=diffs["diff"] / scale).sort_values("scaled").tail(5)
        pytest.fail(f"disagrees with NannyML by {worst}:\n{bad}")


def test_cbpe_binary_agrees_with_nannyml_per_chunk(oracle: Path) -> None:
    reference, analysis, results = _load(oracle, "binary")
    cbpe = CBPE.fit(
        reference["work_home_actual"].to_numpy(),
        reference["y_pred"].to_numpy(),
        reference["y_pred_proba"].to_numpy(),
        chunk_size=nannyml_env.CHUNK_SIZES["binary"],
    )
    assert cbpe.calibrated == [True]  # NannyML recalibrated these scores too (binary_calibrated.json)

    def chunk(d: pd.DataFrame):  # type: ignore[no-untyped-def]
        return cbpe.estimate(d["y_pred"].to_numpy(), d["y_pred_proba"].to_numpy(), d["work_home_actual"].to_numpy())

    diffs = _differences(chunk, reference, analysis, results, nannyml_env.CHUNK_SIZES["binary"], CLASSIFICATION)
    _assert_agree(diffs)
    _assert_agree(diffs, relative=True, tolerance=EXACT)
    # the estimate is not the realized value: agreement is not a tautology of comparing labels
    values = diffs[diffs["field"] == "value"]
    assert values["nannyml"].std() > 0


def test_cbpe_multiclass_agrees_with_nannyml_per_chunk(oracle: Path) -> None:
    reference, analysis, results = _load(oracle, "multiclass")
    columns = [f"y_pred_proba_{c}" for c in MULTICLASS]
    cbpe = CBPE.fit(
        reference["y_true"].to_numpy(),
        reference["y_pred"].to_numpy(),
        reference[columns].to_numpy(),
        chunk_size=nannyml_env.CHUNK_SIZES["multiclass"],
        classes=MULTICLASS,
    )

    def chunk(d: pd.DataFrame):  # type: ignore[no-untyped-def]
        return cbpe.estimate(d["y_pred"].to_numpy(), d[columns].to_numpy(), d["y_true"].to_numpy())

    diffs = _differences(chunk, reference, analysis, results, nannyml_env.CHUNK_SIZES["multiclass"], CLASSIFICATION)
    _assert_agree(diffs)
    _assert_agree(diffs, relative=True, tolerance=EXACT)


def test_dle_agrees_with_nannyml_per_chunk(oracle: Path) -> None:
    reference, analysis, results = _load(oracle, "regression")
    dle = DLE.fit(
        reference[CAR_FEATURES],
        reference["y_pred"].to_numpy(),
        reference["y_true"].to_numpy(),
        chunk_size=nannyml_env.CHUNK_SIZES["regression"],
    )
    assert dle.categorical == ["fuel", "transmission"]

    def chunk(d: pd.DataFrame):  # type: ignore[no-untyped-def]
        return dle.estimate(d[CAR_FEATURES], d["y_pred"].to_numpy(), d["y_true"].to_numpy())

    diffs = _differences(chunk, reference, analysis, results, nannyml_env.CHUNK_SIZES["regression"], ["mae", "mse"])
    # car prices: MAE ~850, MSE ~1.1e6; within 0.01 absolute (as measured: identical, the same LightGBM
    # defaults on the same encoded inputs), and a relative 1e-4 should a LightGBM release round differently
    _assert_agree(diffs)
    _assert_agree(diffs, relative=True, tolerance=1e-4)


def test_calibration_is_decided_on_the_reference() -> None:
    """NannyML's rule: no recalibration for one class or a near-perfect ranking (AUC > 0.999); isotonic
    recalibration when it lowers the held-out binned ECE, as it does for overconfident scores."""
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, 20_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    overconfident = np.clip(0.5 + 2.5 * (p - 0.5), 0, 1)
    assert needs_calibration(y, overconfident)
    assert not needs_calibration(np.ones_like(y), p)
    separable = np.where(y == 1, 0.6 + 0.3 * p, 0.4 * p)
    assert not needs_calibration(y, separable)
    cbpe = CBPE.fit(y, (overconfident > 0.5).astype(int), overconfident, chunk_size=2000)
    assert cbpe.calibrated == [True]
    # recalibrated probabilities are close to the true ones, so the expected accuracy is the real one
    est = cbpe.estimate((overconfident > 0.5).astype(int), overconfident, y)
    assert est["accuracy"].value == pytest.approx(est["accuracy"].realized, abs=3 * est["accuracy"].sampling_error)


def test_cbpe_estimates_track_the_truth_under_covariate_shift() -> None:
    """An independent check (no NannyML): with calibrated scores and no concept shift, the estimated
    accuracy of a shifted chunk is within its band of what the labels later say."""
    rng = np.random.default_rng(5)
    n_ref, n_cur = 20_000, 5_000
    x_ref, x_cur = rng.normal(0, 1, n_ref), rng.normal(1.2, 1, n_cur)  # covariate shift: easier records

    def sample(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = 1 / (1 + np.exp(-2 * x))
        return (rng.uniform(size=x.size) < p).astype(int), (p > 0.5).astype(int), p

    y, pred, p = sample(x_ref)
    cbpe = CBPE.fit(y, pred, p, chunk_size=2000)
    yc, pc, pr = sample(x_cur)
    est = cbpe.estimate(pc, pr, yc)
    for metric in ("accuracy", "roc_auc"):
        e = est[metric]
        assert e.lower_confidence <= e.realized <= e.upper_confidence, (metric, e)
    ref_accuracy = float(np.mean(y == pred))
    assert est["accuracy"].value > ref_accuracy + 0.03  # the shift changed performance, and CBPE saw it


# -- the monitor, through the mart ----------------------------------------------------------------


def _binary_frames(n_ref: int = 4000, n_cur: int = 1500, seed: int = 11):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)

    def make(n: int, shift: float) -> pd.DataFrame:
        a, b = rng.normal(shift, 1, n), rng.normal(0, 1, n)
        p = 1 / (1 + np.exp(-(1.5 * a - b)))
        y = (rng.uniform(size=n) < p).astype(int)
        return pd.DataFrame({"a": a, "b": b, "label": y, "prediction": (p > 0.5).astype(int), "probability": p})

    return make(n_ref, 0.0), make(n_cur, 0.8)


def test_monitor_stores_the_estimate_and_then_the_realized_value(mart: openmart.Mart) -> None:
    reference, current = _binary_frames()
    sub = mart.subscriptions.add("est", reference=reference, label="label", problem_type="binary", class_labels=[0, 1])
    ids = sub.payload.log(current.drop(columns="label"))
    sub.monitors.enable("estimated_performance", chunk_size=500, min_records=100)

    result = sub.evaluate(kinds=["estimated_performance"])
    (outcome,) = result.outcomes
    assert outcome.status == "ok", outcome.reason
    got = {m.metric: m for m in result.measurements}
    assert set(got) == set(CLASSIFICATION)

    expected = CBPE.fit(
        reference["label"].to_numpy(),
        reference["prediction"].to_numpy(),
        reference["probability"].to_numpy(),
        chunk_size=500,
    ).estimate(current["prediction"].to_numpy(), current["probability"].to_numpy())
    for metric, e in expected.items():
        m = got[metric]
        assert m.value == pytest.approx(e.value, abs=1e-9)
        assert m.details["sampling_error"] == pytest.approx(e.sampling_error, abs=1e-12)
        assert m.details["lower_confidence"] == pytest.approx(e.lower_confidence, abs=1e-9)
        assert m.details["lower_threshold"] == pytest.approx(e.lower_threshold, abs=1e-12)
        assert m.details["realized"] is None and m.details["labelled_records"] == 0
        assert m.threshold == pytest.approx(e.lower_threshold)  # judged against the reference chunks' band

    # the labels arrive for part of the window: the realized value is stored beside the estimate
    half = len(current) // 2
    sub.feedback.log(current.iloc[:half][["a", "b", "label"]].assign(scoring_id=list(ids[:half])))
    result = sub.evaluate(kinds=["estimated_performance"])
    got = {m.metric: m for m in result.measurements}
    labelled = current.iloc[:half]
    truth = CBPE.fit(
        reference["label"].to_numpy(),
        reference["prediction"].to_numpy(),
        reference["probability"].to_numpy(),
        chunk_size=500,
    ).realized(labelled["label"].to_numpy(), labelled["prediction"].to_numpy(), labelled["probability"].to_numpy())
    from sklearn import metrics as skm  # the realized value is scikit-learn's, as the quality monitor's

    assert truth["accuracy"] == pytest.approx(skm.accuracy_score(labelled["label"], labelled["prediction"]))
    for metric in CLASSIFICATION:
        m = got[metric]
        assert m.value == pytest.approx(expected[metric].value, abs=1e-9)  # the estimate itself is unchanged
        assert m.details["realized"] == pytest.approx(truth[metric], abs=1e-12)
        assert m.details["labelled_records"] == half
    stored = sub.measurements(monitor="estimated_performance", metric="accuracy")
    assert len(stored) == 2


def test_monitor_estimates_regression_with_dle(mart: openmart.Mart) -> None:
    rng = np.random.default_rng(2)

    def make(n: int) -> pd.DataFrame:
        x = rng.normal(0, 1, n)
        kind = rng.choice(["p", "q"], n)
        noise = rng.normal(0, np.where(kind == "p", 0.5, 2.0) * (1 + np.abs(x)))
        y = 3 * x + noise
        return pd.DataFrame({"x": x, "kind": kind, "label": y, "prediction": 3 * x})

    reference, current = make(3000), make(800)
    sub = mart.subscriptions.add(
        "reg", reference=reference, label="label", problem_type="regression", categorical=["kind"], probability=None
    )
    sub.payload.log(current.drop(columns="label"))
    sub.monitors.enable("estimated_performance", chunk_size=500, thresholds=["mae=10"])
    result = sub.evaluate(kinds=["estimated_performance"])
    assert result.outcomes[0].status == "ok", result.outcomes[0].reason
    got = {m.metric: m for m in result.measurements}
    dle = DLE.fit(
        reference[["x", "kind"]],
        reference["prediction"].to_numpy(),
        reference["label"].to_numpy(),
        chunk_size=500,
        categorical=["kind"],
    )
    # the window's rows come back in any order: the estimate is a mean, order-free up to rounding
    expected = dle.estimate(current[["x", "kind"]], current["prediction"].to_numpy())
    for metric in ("mae", "mse"):
        assert got[metric].value == pytest.approx(expected[metric].value, rel=1e-9)
    assert got["mae"].threshold == 10 and not got["mae"].breached
    assert got["mae"].details["method"] == "dle"


def test_monitor_refuses_metrics_of_another_problem_type(mart: openmart.Mart) -> None:
    reference, _ = _binary_frames(500, 10)
    sub = mart.subscriptions.add("bad", reference=reference, label="label", problem_type="binary")
    with pytest.raises(openmart.errors.MonitorError, match="mae"):
        sub.monitors.enable("estimated_performance", metrics=["mae"])


def test_monitor_multiclass_text_labels_read_through_copy(mart: openmart.Mart) -> None:
    """Text class labels and probability arrays ({a,b,c} in COPY's text) reach CBPE as the
    frames that were logged: the monitor's estimate equals CBPE's on the same arrays."""
    rng = np.random.default_rng(5)
    classes = ["gold", "silver", "bronze"]

    def make(n: int) -> pd.DataFrame:
        logits = rng.normal(0, 1.5, (n, 3))
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        truth = [classes[rng.choice(3, p=p)] for p in proba]
        return pd.DataFrame(
            {
                "x": rng.normal(0, 1, n),
                "label": truth,
                "prediction": [classes[i] for i in proba.argmax(axis=1)],
                "probability": [list(np.round(p, 6)) for p in proba],
            }
        )

    reference, current = make(3000), make(900)
    sub = mart.subscriptions.add(
        "tiers", reference=reference, label="label", problem_type="multiclass", class_labels=classes
    )
    sub.payload.log(current.drop(columns="label"))
    sub.monitors.enable("estimated_performance", chunk_size=500, metrics=["accuracy", "f1"])
    result = sub.evaluate(kinds=["estimated_performance"])
    assert result.outcomes[0].status == "ok", result.outcomes[0].reason
    got = {m.metric: m for m in result.measurements}
    cbpe = CBPE.fit(
        reference["label"].to_numpy(),
        reference["prediction"].to_numpy(),
        np.asarray(reference["probability"].tolist()),
        chunk_size=500,
        classes=classes,
        metrics=["accuracy", "f1"],
    )
    expected = cbpe.estimate(current["prediction"].to_numpy(), np.asarray(current["probability"].tolist()))
    for metric in ("accuracy", "f1"):
        assert got[metric].value == pytest.approx(expected[metric].value, rel=1e-9)
        assert got[metric].details["records"] == len(current)
