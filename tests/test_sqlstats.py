"""SQL-side aggregates agree with numpy on the same data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.mart import stats, windows
from openmart.mart.windows import Window


def test_summaries_and_counts_match_numpy(mart: openmart.Mart) -> None:
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
    relation = windows.payload(Window(), sub.payload.table)
    edges = {"a": np.quantile(frame["a"].dropna(), np.linspace(0.1, 0.9, 9)), "b b": np.array([0.5, 1.0, 2.0])}
    tasks = {c: (lambda r, c=c: stats.numeric_summary(r, relation, c, edges[c])) for c in edges}
    tasks["c"] = lambda r: stats.column_counts(r, relation, "c")
    got = stats.per_column(mart.engine.raw_connection, tasks)
    for col, e in edges.items():
        values = frame[col].dropna().to_numpy()
        bucket = np.searchsorted(e, values, side="right")
        assert got[col].counts.tolist() == np.bincount(bucket, minlength=len(e) + 1).tolist()
        assert np.allclose(got[col].sums, np.bincount(bucket, weights=values, minlength=len(e) + 1))
        m = got[col].moments
        assert m.count == len(values) and m.nulls == frame[col].isna().sum()
        assert m.mean == pytest.approx(values.mean()) and m.std == pytest.approx(values.std(ddof=1))
        assert (m.min, m.max) == pytest.approx((values.min(), values.max()))
    assert got["c"] == frame["c"].value_counts().to_dict()
    with mart.engine.connect() as conn:  # a SQLAlchemy connection serves as well as a driver's
        assert stats.count(conn, windows.payload(Window(last=100), sub.payload.table)) == 100
        assert stats.count(conn, windows.payload(Window(), sub.payload.table)) == n
