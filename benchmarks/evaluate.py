"""Evaluation speed: one `sub.evaluate()` with quality, fairness and drift enabled, against the
naive baseline (read the window with `pandas.read_sql`, then compute the same metrics with
scipy and scikit-learn), in the same run, on the same mart.

    python benchmarks/evaluate.py [--rows 1000000] [--reference 100000] [--database-url URL]

Data: 30 features (25 numeric, 5 categorical), drift injected into n03, n07 and c1; every
payload record labelled. Goals (issue 5): evaluation <= 10 s, >= 5 x faster than the baseline,
peak memory added by the evaluation <= 1 GB. Exits non-zero when a goal is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakRSS, database_url  # noqa: E402

import openmart  # noqa: E402

NUMERIC = [f"n{i:02d}" for i in range(25)]
CATEGORICAL = [f"c{i}" for i in range(5)]
DRIFTED = {"n03", "n07", "c1"}


def make(rows: int, seed: int, drift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {c: rng.normal(0, 1, rows) for c in NUMERIC}
    for c in CATEGORICAL:
        data[c] = rng.choice(["a", "b", "c", "d"], rows, p=[0.4, 0.3, 0.2, 0.1])
    frame = pd.DataFrame(data)
    if drift:
        frame["n03"] += 0.5
        frame["n07"] *= 1.6
        frame["c1"] = rng.choice(["a", "b", "c", "d"], rows, p=[0.1, 0.2, 0.3, 0.4])
    logit = frame["n00"] - 0.7 * frame["n01"] + 0.5 * (frame["c0"] == "a")
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame["probability"] = np.clip(1 / (1 + np.exp(-(logit + rng.normal(0, 1, rows)))), 0, 1)
    frame["prediction"] = (frame["probability"] > 0.5).astype(int)
    return frame


def naive(mart: openmart.Mart, sub: openmart.Subscription, reference: pd.DataFrame) -> dict[str, float]:
    """What a script would do: read the whole labelled window, compute everything in memory."""
    from scipy import stats
    from sklearn import metrics as skm

    with mart.engine.connect() as conn:
        window = pd.read_sql(
            f"SELECT p.*, f.label FROM {sub.payload.table} p JOIN {sub.feedback.table} f USING (scoring_id)", conn
        )
    y, pred, proba = window["label"], window["prediction"], window["probability"]
    out = {
        "accuracy": skm.accuracy_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, proba),
        "average_precision": skm.average_precision_score(y, proba),
        "log_loss": skm.log_loss(y, proba),
        "f1": skm.f1_score(y, pred),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
    }
    mon, ref = window["c0"] == "a", window["c0"] == "b"
    out["disparate_impact"] = pred[mon].mean() / pred[ref].mean()
    for c in NUMERIC:
        out[f"wasserstein:{c}"] = stats.wasserstein_distance(reference[c], window[c]) / reference[c].std()
    for c in CATEGORICAL:
        cats = sorted(set(reference[c]) | set(window[c]))
        r = reference[c].value_counts().reindex(cats, fill_value=0)
        w = window[c].value_counts().reindex(cats, fill_value=0)
        from scipy.spatial import distance

        out[f"jensenshannon:{c}"] = distance.jensenshannon(r / r.sum(), w / w.sum())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--database-url", default=database_url())
    args = parser.parse_args()
    schema = f"bench_eval_{uuid.uuid4().hex[:8]}"
    mart = openmart.connect(args.database_url, schema=schema)
    print(f"mart: {mart.location.describe()}")
    try:
        t0 = time.perf_counter()
        reference = make(args.reference, 1, drift=False)
        sub = mart.subscriptions.add(
            "bench",
            reference=reference.drop(columns=["prediction", "probability"]),
            label="label",
            problem_type="binary",
            categorical=CATEGORICAL,
        )
        current = make(args.rows, 2, drift=True)
        ids = sub.payload.log(current.drop(columns="label"))
        sub.feedback.log(current.drop(columns=["prediction", "probability"]).assign(scoring_id=ids))
        del ids
        with mart.engine.connect() as conn:
            conn.exec_driver_sql("COMMIT")
            conn.exec_driver_sql(f"VACUUM ANALYZE {sub.payload.table}")
            conn.exec_driver_sql(f"VACUUM ANALYZE {sub.feedback.table}")
        print(
            f"setup: {args.rows:,} labelled payload rows, {args.reference:,} reference rows in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        del current
        sub.monitors.enable("quality")
        sub.monitors.enable(
            "fairness", attributes=[{"feature": "c0", "monitored": "a", "reference": "b"}], favourable=1
        )
        sub.monitors.enable("drift")

        with PeakRSS() as mem:
            t0 = time.perf_counter()
            result = sub.evaluate()
            t_om = time.perf_counter() - t0
        for o in result.outcomes:
            assert o.status == "ok", (o.kind, o.status, o.reason)
        drifted = {
            m.feature
            for m in result.measurements
            if m.monitor == "drift" and m.breached and m.feature in set(NUMERIC) | set(CATEGORICAL)
        }
        assert drifted == DRIFTED, drifted

        with PeakRSS() as naive_mem:
            t0 = time.perf_counter()
            expected = naive(mart, sub, reference)
            t_naive = time.perf_counter() - t0
        got = {m.metric: m.value for m in result.measurements if m.monitor == "quality"}
        got["disparate_impact"] = next(m.value for m in result.measurements if m.metric == "disparate_impact")
        for m in result.measurements:
            if m.monitor == "drift" and m.feature in set(NUMERIC) | set(CATEGORICAL):
                got[f"{m.metric}:{m.feature}"] = m.value
        worst = max(abs(got[k] - v) for k, v in expected.items())
        print(f"evaluation (quality + fairness + drift) : {t_om:7.2f} s   (goal <= 10 s)")
        for o in result.outcomes:
            print(
                f"  {o.kind:9}: {o.info['elapsed_s']:6.2f} s, {o.records:,} records, {len(o.measurements)} measurements"
            )
        print(f"naive baseline (read_sql + sklearn/scipy): {t_naive:7.2f} s")
        print(f"speed-up                                 : {t_naive / t_om:7.1f} x (goal >= 5)")
        print(f"peak memory added, evaluation            : {mem.added / 2**20:7.0f} MiB (goal <= 1024)")
        print(f"peak memory added, naive baseline        : {naive_mem.added / 2**20:7.0f} MiB")
        print(f"largest difference from the baseline's values: {worst:.4f} (binned Wasserstein/KS)")
        print(f"drift found in {sorted(drifted)} (injected: {sorted(DRIFTED)})")
        ok = t_om <= 10 and t_naive / t_om >= 5 and mem.added <= 2**30
        print("goals met" if ok else "GOALS MISSED")
        return 0 if ok else 1
    finally:
        with mart.engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        mart.close()


if __name__ == "__main__":
    raise SystemExit(main())
