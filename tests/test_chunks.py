"""Chunked evaluations and learned thresholds (issue #17, docs/chunks.md) on a real PostgreSQL
mart, with pandas and scikit-learn as oracles.

The story: a binary classifier; 1000 reference rows (with its predictions), then 600 production
records, one every 10 minutes from 2026-11-02 00:00 (so 144 a day): the first half as the
reference, the second half with feature ``b`` shifted by +2 and the answers flipped on 40%.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

import openmart
from openmart.errors import EvaluationFailed, ValidationError
from openmart.evaluation.chunks import ChunkedResult
from openmart.mart import chunks as mart_chunks
from openmart.mart import windows
from openmart.mart.chunks import Chunking
from openmart.mart.windows import Window
from openmart.monitors import quality

FEATURES = ["a", "b", "c"]
START = "2026-11-02"


def _records(n: int, seed: int, *, shift_b: float = 0.0, flip: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=n), rng.normal(size=n) + shift_b, rng.normal(size=n)
    score = a + 0.3 * c
    label = (score + 0.5 * rng.normal(size=n) > 0).astype(int)
    proba = 1 / (1 + np.exp(-2 * score))
    wrong = rng.random(n) < flip
    proba = np.where(wrong, 1 - proba, proba)
    pred = (proba > 0.5).astype(int)
    return pd.DataFrame({"a": a, "b": b, "c": c, "label": label, "prediction": pred, "probability": proba.round(6)})


@pytest.fixture
def story(mart: openmart.Mart) -> dict[str, object]:
    reference = _records(1000, 1)
    stream = pd.concat([_records(300, 2), _records(300, 3, shift_b=2.0, flip=0.4)], ignore_index=True)
    stream["scoring_id"] = [f"r-{i:04d}" for i in range(len(stream))]
    stream["scoring_timestamp"] = pd.date_range(START, periods=len(stream), freq="10min", tz="UTC")
    sub = mart.subscriptions.add("loans", reference=reference, label="label", problem_type="binary")
    sub.payload.log(stream[[*FEATURES, "prediction", "probability", "scoring_id", "scoring_timestamp"]])
    sub.feedback.log(stream[[*FEATURES, "label", "scoring_id"]])
    return {"sub": sub, "reference": reference, "stream": stream}


def _bounds(sub: openmart.Subscription, window: Window, spec: str) -> list[mart_chunks.ChunkBounds]:
    with sub.context.engine.connect() as conn:
        return mart_chunks.boundaries(conn, sub.context, window, Chunking.parse(spec))


def _rows_of_chunks(sub: openmart.Subscription, window: Window, spec: str) -> list[set[str]]:
    """The scoring ids each chunk's window selects, read back through the chunk windows."""
    with sub.context.engine.connect() as conn:
        bounds = mart_chunks.boundaries(conn, sub.context, window, Chunking.parse(spec))
        floor = mart_chunks.floor_key(conn, sub.context, window)
        parts = mart_chunks.chunk_windows(window, bounds, floor)
        rows = [windows.columns(conn, windows.payload(part, sub.context), ["scoring_id"]) for part in parts]
    return [set(r["scoring_id"]) for r in rows]


# -- chunk boundaries against pandas ---------------------------------------------------------------


@pytest.mark.parametrize("spec", ["1d", "6h", "1w", "size=70", "number=7"])
def test_chunks_equal_pandas_and_tile_the_window(story: dict, spec: str) -> None:
    sub, stream = story["sub"], story["stream"]
    ordered = stream.sort_values(["scoring_timestamp", "scoring_id"]).reset_index(drop=True)
    chunking = Chunking.parse(spec)
    if chunking.by == "period":
        # calendar buckets: pandas' floor for days and hours, Monday-start weeks for 1w
        ts = ordered["scoring_timestamp"]
        if spec == "1w":
            bucket = ts.dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time.dt.tz_localize("UTC")
        else:
            bucket = ts.dt.floor(spec)
        expected = ordered.groupby(bucket.values, sort=True)["scoring_id"].apply(list).tolist()
    elif chunking.by == "size":
        expected = [ordered["scoring_id"][i : i + 70].tolist() for i in range(0, len(ordered), 70)]  # last kept
    else:
        expected = [part.tolist() for part in np.array_split(ordered["scoring_id"].to_numpy(), 7)]
    bounds = _bounds(sub, Window(), spec)
    assert [b.records for b in bounds] == [len(e) for e in expected]
    assert sum(b.records for b in bounds) == len(stream)
    assert [b.first_key[1] for b in bounds] == [e[0] for e in expected]
    assert [b.last_key[1] for b in bounds] == [e[-1] for e in expected]
    selected = _rows_of_chunks(sub, Window(), spec)
    assert [sorted(s) for s in selected] == [sorted(e) for e in expected]  # every record in exactly one chunk
    if spec == "1d":
        assert bounds[0].start == pd.Timestamp(START, tz="UTC")
        assert bounds[0].end == pd.Timestamp("2026-11-03", tz="UTC")


def test_chunks_of_the_newest_records_and_of_a_labelled_set(story: dict) -> None:
    sub, stream = story["sub"], story["stream"]
    newest = stream.sort_values(["scoring_timestamp", "scoring_id"]).tail(250)
    selected = _rows_of_chunks(sub, Window(last=250), "number=4")
    assert [len(s) for s in selected] == [63, 63, 62, 62]
    assert set().union(*selected) == set(newest["scoring_id"])
    reference = Window(environment="training", version=sub.context.record.reference_version)
    assert [b.records for b in _bounds(sub, reference, "size=300")] == [300, 300, 300, 100]
    with pytest.raises(ValidationError, match="no scoring times"):
        _bounds(sub, reference, "1d")


@pytest.mark.parametrize("bad", ["size=0", "number=x", "3 days", "1y", "depth=3"])
def test_bad_chunkings_are_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(ValidationError, match="chunk by"):
        Chunking.parse(bad)


# -- chunked evaluations ---------------------------------------------------------------------------


def test_per_chunk_accuracy_equals_sklearn_and_drift_flags_only_the_shifted_chunks(story: dict) -> None:
    sub, stream = story["sub"], story["stream"]
    sub.monitors.enable("quality", min_records=50)
    sub.monitors.enable("drift", min_records=50, method="ks")
    seen: list[tuple[int, int]] = []
    result = sub.evaluate(chunk_by="number=6", on_chunk=lambda i, n: seen.append((i, n)))
    assert isinstance(result, ChunkedResult)
    assert seen == [(i, 6) for i in range(6)]
    frame = result.frame
    ordered = stream.sort_values(["scoring_timestamp", "scoring_id"]).reset_index(drop=True)
    parts = [ordered.iloc[ix] for ix in np.array_split(np.arange(len(ordered)), 6)]
    accuracy = frame[frame["metric"] == "accuracy"].set_index("chunk")["value"]
    for i, part in enumerate(parts):
        assert accuracy[i] == pytest.approx(skm.accuracy_score(part["label"], part["prediction"]))
    b = frame[(frame["monitor"] == "drift") & (frame["feature"] == "b")].set_index("chunk")["breached"]
    assert b.tolist() == [False, False, False, True, True, True]  # the shift starts at record 300 = chunk 3
    stored = sub.measurements(evaluation_id=result.evaluation_id)
    assert sorted(stored["chunk"].unique().tolist()) == list(range(6))
    assert stored.groupby("chunk")["chunk_records"].first().sum() == len(stream)
    ev = sub.evaluations(limit=1)[0]
    assert ev.kind == "chunked" and ev.chunking == {"by": "number", "number": 6} and ev.records == len(stream)


def test_alerts_come_only_from_the_newest_chunk(story: dict, mart: openmart.Mart) -> None:
    sub = story["sub"]
    sub.monitors.enable("drift", min_records=50, method="ks")
    # chunks 0..3 of 4 over the first 400 records: chunk 3 (records 300-399) drifted; then only clean ones
    first = sub.evaluate(chunk_by="number=4", last=None, until="2026-11-04T18:40:00+00:00")
    assert first.frame.query("feature == 'b'")["breached"].tolist() == [False, False, False, True]
    opened = mart.sql("SELECT monitor, feature, evaluation_id FROM alerts")
    assert set(opened["feature"].dropna()) == {"b"} and set(opened["evaluation_id"]) == {first.evaluation_id}
    # the first 300 records only: an older chunk's drift is history, the newest chunk passes and resolves it
    second = sub.evaluate(chunk_by="size=100", until="2026-11-04T02:00:00+00:00")
    assert not second.frame["breached"].any()
    states = mart.sql("SELECT status FROM alerts")["status"].tolist()
    assert states and all(s == "resolved" for s in states)


def test_a_fault_in_chunk_3_stores_nothing_and_marks_the_evaluation_failed(
    story: dict, mart: openmart.Mart, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = story["sub"]
    sub.monitors.enable("quality", min_records=50)
    calls = {"n": 0}
    original = quality.QualityMonitor.run

    def faulty(self, ctx, config, window, conn):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:  # chunk 3 (the fourth chunk)
            raise RuntimeError("disk on fire in chunk 3")
        return original(self, ctx, config, window, conn)

    monkeypatch.setattr(quality.QualityMonitor, "run", faulty)
    before = int(mart.sql("SELECT count(*) AS n FROM measurements")["n"].iloc[0])
    with pytest.raises(EvaluationFailed, match="disk on fire"):
        sub.evaluate(chunk_by="number=6")
    after = int(mart.sql("SELECT count(*) AS n FROM measurements")["n"].iloc[0])
    assert before == after == 0
    ev = sub.evaluations(limit=1)[0]
    assert str(ev.status) == "failed" and ev.kind == "chunked" and ev.error_type == "RuntimeError"
    assert calls["n"] == 4  # it stopped at chunk 3


# -- learned thresholds ----------------------------------------------------------------------------


def _band(values: list[float], k: float = 3.0) -> tuple[float, float]:
    s = pd.Series(values)
    return max(0.0, s.mean() - k * s.std(ddof=0)), min(1.0, s.mean() + k * s.std(ddof=0))


def test_learned_thresholds_are_mean_plus_minus_3_std_of_reference_chunks(story: dict) -> None:
    sub, reference, stream = story["sub"], story["reference"], story["stream"]
    config = sub.monitors.enable("quality", min_records=50, thresholds={"accuracy": "learned"})
    # when enabled: 10 reference chunks (NannyML's default), in stored order
    tens = [
        skm.accuracy_score(reference["label"][ix], reference["prediction"][ix])
        for ix in np.array_split(range(1000), 10)
    ]
    stored = config.threshold("accuracy")
    assert stored is not None and stored.learned is not None
    assert stored.learned["values"] == pytest.approx(tens)
    lower, upper = _band(tens)
    assert (stored.learned["lower"], stored.learned["upper"]) == pytest.approx((lower, upper))
    assert stored.value == pytest.approx(lower)  # accuracy: higher is better, its limit is the lower one
    assert sub.monitors.get("quality").threshold("accuracy").learned["values"] == pytest.approx(tens)

    # a chunked evaluation by size learns again on reference chunks of that size (the last one kept)
    result = sub.evaluate(chunk_by="size=100")
    hundreds = [skm.accuracy_score(p["label"], p["prediction"]) for _, p in reference.groupby(reference.index // 100)]
    lower, upper = _band(hundreds)
    acc = result.frame[result.frame["metric"] == "accuracy"].set_index("chunk")
    assert acc["lower"].tolist() == pytest.approx([lower] * 6) and acc["upper"].tolist() == pytest.approx([upper] * 6)
    assert result.learned["quality"]["thresholds"][0]["learned"]["values"] == pytest.approx(hundreds)
    ordered = stream.sort_values(["scoring_timestamp", "scoring_id"]).reset_index(drop=True)
    for i, part in ordered.groupby(ordered.index // 100):
        value = skm.accuracy_score(part["label"], part["prediction"])
        assert acc.loc[i, "value"] == pytest.approx(value)
        assert bool(acc.loc[i, "breached"]) == (value < lower or value > upper)
    assert acc["breached"].tolist()[3:] == [True, True, True]  # 40% flipped answers leave the band
    details = sub.measurements(evaluation_id=result.evaluation_id, metric="accuracy")["details"]
    assert details.iloc[0]["learned"]["lower"] == pytest.approx(lower)


def test_learned_drift_thresholds_measure_reference_chunks_against_the_whole_reference(story: dict) -> None:
    sub = story["sub"]
    config = sub.monitors.enable("drift", min_records=50, method="jensenshannon", thresholds=["jensenshannon=learned"])
    learned = {t.feature: t.learned for t in config.thresholds if t.learned}
    assert set(learned) >= set(FEATURES)  # one band per feature
    assert all(len(band["values"]) == 10 and band["lower"] >= 0.0 for band in learned.values())
    result = sub.evaluate(chunk_by="size=100")  # reference chunks of 100 too: the same noise level
    b = result.frame[(result.frame["monitor"] == "drift") & (result.frame["feature"] == "b")]
    assert b["breached"].tolist() == [False, False, False, True, True, True]


def test_a_learned_band_on_a_p_value_is_refused_with_the_reason(story: dict) -> None:
    from openmart.errors import MonitorError

    with pytest.raises(MonitorError, match="p-values.*never breach.*jensenshannon=learned"):
        story["sub"].monitors.enable("drift", method="ks", thresholds=["ks=learned"])


def test_a_learned_threshold_without_enough_reference_chunks_is_refused(story: dict) -> None:
    with pytest.raises(Exception, match="learned"):
        # 10 reference chunks of 100 rows, each below min_records: no chunk gives accuracy a value
        story["sub"].monitors.enable("quality", min_records=150, thresholds=["accuracy=learned"])


# -- the command line ------------------------------------------------------------------------------


def test_cli_evaluate_chunk_by_prints_one_row_per_chunk_and_learned_thresholds_from_the_cli(story: dict, cli) -> None:  # type: ignore[no-untyped-def]
    cli("monitor", "enable", "loans", "quality", "--min-records", "50", "--threshold", "accuracy=learned")
    shown = cli("evaluate", "loans", "--chunk-by", "1d").stdout
    assert "chunked evaluation" in shown and "(5 chunks)" in shown  # 600 records, 144 a day
    out = json.loads(cli("evaluate", "loans", "--chunk-by", "size=100", "--json").stdout)
    assert out["chunking"] == {"by": "size", "size": 100} and [c["records"] for c in out["chunks"]] == [100] * 6
    accuracy = [m for m in out["measurements"] if m["metric"] == "accuracy"]
    assert [m["chunk"] for m in accuracy] == list(range(6))
    assert out["learned"]["quality"]["reference_chunking"] == {"by": "size", "size": 100}
    bad = cli("evaluate", "loans", "--chunk-by", "size=0", ok=False)
    assert bad.exit_code != 0 and "size must be a whole number" in (bad.stdout + bad.stderr)
    history = json.loads(cli("measurements", "loans", "--metric", "accuracy", "--json").stdout)
    assert {h["chunk"] for h in history} == set(range(6))


def test_the_report_plots_the_newest_chunked_evaluation_with_its_learned_band(story: dict) -> None:
    from openmart.report.html import render

    sub = story["sub"]
    sub.monitors.enable("quality", min_records=50, thresholds={"accuracy": "learned"})
    sub.evaluate()  # a plain evaluation: the history chart, no chunk rows in it
    result = sub.evaluate(chunk_by="size=100")
    page = render(sub)
    assert "Chunks: the newest chunked evaluation" in page and f"evaluation {result.evaluation_id}" in page
    assert "learned band" in page and "quality.accuracy" in page
