"""SQL-side aggregates agree with numpy on the same data."""

from __future__ import annotations

import numpy as np
import pandas as pd

import openmart
from openmart.evaluation.window import Window
from openmart.monitors import sqlstats


def test_histograms_value_counts_and_moments_match_numpy(mart: openmart.Mart) -> None:
    rng = np.random.default_rng(7)
    n = 5000
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b b": rng.exponential(size=n),
            "c": rng.choice(["x", "y", "z"], n),
            "label": rng.integers(0, 2, n),
        }
    )
    frame.loc[::17, "a"] = np.nan
    sub = mart.subscriptions.add("h", reference=frame, label="label", problem_type="binary")
    sub.payload.log(frame.drop(columns="label").assign(prediction=frame["label"]))
    sql, params = Window().payload_sql(sub.payload.table)
    edges = {
        "a": ("a", np.quantile(frame["a"].dropna(), np.linspace(0.1, 0.9, 9))),
        "b b": ("b b", np.array([0.5, 1.0, 2.0])),
        "b2": ("b b", np.array([1.5])),
    }
    raw = mart.engine.raw_connection()
    try:
        hist = sqlstats.histograms(raw, sql, params, edges)
        for key, (col, e) in edges.items():
            values = frame[col].dropna().to_numpy()
            expected = np.bincount(np.searchsorted(e, values, side="right"), minlength=len(e) + 1)
            assert hist[key].tolist() == expected.tolist()
        counts = sqlstats.value_counts(raw, sql, params, ["c"])
        assert counts["c"] == frame["c"].value_counts().to_dict()
        mom = sqlstats.moments(raw, sql, params, ["a"])["a"]
        assert mom.count == frame["a"].count() and mom.nulls == frame["a"].isna().sum()
        assert np.isclose(mom.mean, frame["a"].mean()) and np.isclose(mom.std, frame["a"].std())
        last_sql, last_params = Window(last=100).payload_sql(sub.payload.table)
        assert sqlstats.count(raw, last_sql, last_params) == 100
    finally:
        raw.close()
