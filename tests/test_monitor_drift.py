"""The drift monitor: statistics against scipy and hand computations; injected drift found
where it was injected and only there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

import openmart
from openmart.monitors import drift
from openmart.monitors.profile import bucket_counts, bucket_sums, interior_edges


def test_psi_matches_hand_computation() -> None:
    ref, cur = [50, 30, 20], [20, 30, 50]
    r, c = np.array(ref) / 100, np.array(cur) / 100
    assert drift.psi(ref, cur) == pytest.approx(np.sum((c - r) * np.log(c / r)))
    assert drift.psi(ref, ref) == 0.0
    assert np.isfinite(drift.psi([10, 0], [5, 5]))  # an empty bin does not blow up


def test_binned_statistics_track_scipy_on_large_samples() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 100_000), rng.normal(0.3, 1.2, 100_000)
    edges = interior_edges(a, 100)
    ra, rb = bucket_counts(a, edges), bucket_counts(b, edges)
    d, _ = drift.ks_binned(edges, ra, rb)
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=0.01)
    w = drift.wasserstein_buckets(ra, bucket_sums(a, edges), rb, bucket_sums(b, edges))
    assert w == pytest.approx(stats.wasserstein_distance(a, b), abs=0.01)
    js = drift.jensenshannon(ra, rb)
    assert js == pytest.approx(distance.jensenshannon(ra / ra.sum(), rb / rb.sum()))
    cats_ref, cats_cur = [100, 200, 300], [110, 190, 300]
    expected = np.array(cats_ref) / 600 * 600
    assert drift.chisquare_pvalue(cats_ref, cats_cur) == pytest.approx(stats.chisquare(cats_cur, expected).pvalue)


def _world(mart: openmart.Mart, n_ref: int, n_cur: int, seed: int = 0):
    rng = np.random.default_rng(seed)

    def frame(n: int, shifted: bool) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "stable": rng.normal(0, 1, n),
                "moved": rng.normal(1.5 if shifted else 0, 1, n),
                "colour": rng.choice(["red", "green", "blue"], n, p=[0.2, 0.2, 0.6] if shifted else [0.4, 0.4, 0.2]),
                "kind": rng.choice(["x", "y"], n),
                "label": rng.integers(0, 2, n),
            }
        )

    ref = frame(n_ref, False)
    sub = mart.subscriptions.add("d", reference=ref, label="label", problem_type="binary")
    cur = frame(n_cur, True)
    sub.payload.log(cur.drop(columns="label").assign(prediction=cur["label"]))
    return sub, ref, cur


@pytest.mark.parametrize(
    ("n_ref", "methods"),
    [
        (800, {"stable": "ks", "moved": "ks", "colour": "chisquare"}),
        (5000, {"stable": "wasserstein", "moved": "wasserstein", "colour": "jensenshannon"}),
    ],
)
def test_injected_drift_is_found_there_only(mart: openmart.Mart, n_ref: int, methods: dict[str, str]) -> None:
    sub, ref, cur = _world(mart, n_ref, 3000)
    sub.monitors.enable("drift", drift_share=0.5)
    result = sub.evaluate()
    by_feature = {m.feature: m for m in result.measurements if m.feature}
    for feature, method in methods.items():
        assert by_feature[feature].metric == method
    drifted = {f for f, m in by_feature.items() if m.breached}
    assert drifted == {"moved", "colour"}
    share = next(m for m in result.measurements if m.metric == "share_of_drifted_features")
    assert share.value == pytest.approx(0.5) and share.breached
    if n_ref == 800:  # small reference: exact scipy p-values
        expected = stats.ks_2samp(ref["moved"], cur["moved"]).pvalue
        assert by_feature["moved"].value == pytest.approx(expected)
    else:
        expected = stats.wasserstein_distance(ref["moved"], cur["moved"]) / ref["moved"].std()
        assert by_feature["moved"].value == pytest.approx(expected, abs=0.02)


def test_psi_method_and_edge_cases(mart: openmart.Mart) -> None:
    sub, ref, cur = _world(mart, 2000, 2000)
    sub.monitors.enable("drift", method="psi")
    result = sub.evaluate()
    by_feature = {m.feature: m for m in result.measurements if m.feature}
    edges = np.array(sub.reference.profile()["columns"]["moved"]["psi_edges"])
    assert len(edges) == 9  # deciles
    assert np.allclose(edges, ref["moved"].quantile(np.linspace(0, 1, 11)[1:-1]), atol=0.05)
    expected = drift.psi(bucket_counts(ref["moved"].to_numpy(), edges), bucket_counts(cur["moved"].to_numpy(), edges))
    assert by_feature["moved"].value == pytest.approx(expected)
    assert by_feature["moved"].breached and not by_feature["stable"].breached
    assert sub.evaluate(since="2999-01-01").outcomes[0].status == "not_enough_data"


def test_constant_feature_and_nan(mart: openmart.Mart) -> None:
    rng = np.random.default_rng(3)
    n = 3000
    ref = pd.DataFrame({"const": np.ones(n), "gappy": rng.normal(size=n), "label": rng.integers(0, 2, n)})
    sub = mart.subscriptions.add("c", reference=ref, label="label", problem_type="binary")
    cur = ref.copy()
    cur.loc[::3, "gappy"] = np.nan
    sub.payload.log(cur.drop(columns="label").assign(prediction=cur["label"]))
    sub.monitors.enable("drift")
    result = sub.evaluate()
    by_feature = {m.feature: m for m in result.measurements if m.feature}
    assert by_feature["const"].value == 0.0 and not by_feature["const"].breached
    assert not by_feature["gappy"].breached


def test_large_window_is_sampled_and_agrees(mart: openmart.Mart) -> None:
    sub, ref, cur = _world(mart, 5000, 3000)
    sub.monitors.enable("drift")
    full = {m.feature: m.value for m in sub.evaluate().measurements if m.feature}
    sub.monitors.enable("drift", max_rows=1000)
    result = sub.evaluate()
    assert 700 < result.outcomes[0].info["sampled_rows"] < 1300
    sampled = {m.feature: m for m in result.measurements if m.feature}
    assert {f for f, m in sampled.items() if m.breached} == {"moved", "colour"}
    for feature, value in full.items():
        assert sampled[feature].value == pytest.approx(value, abs=0.1)
