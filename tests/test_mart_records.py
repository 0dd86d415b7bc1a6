"""The data mart's record tables through the Python API, against real PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.errors import AlreadyExists, IdentifierError, NotFound, ValidationError
from openmart.schema import ColumnKind, ProblemType

EVIL = 'x"; drop table bindings; --'


def reference_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "sex": rng.choice(["female", "male"], n),
            "income": rng.normal(50.0, 10.0, n),
            EVIL: rng.random(n),
            "label": rng.integers(0, 2, n),
        }
    )


def payload_frame(ref: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return ref.drop(columns="label").assign(prediction=ref["label"].to_numpy(), probability=rng.random(len(ref)))


@pytest.fixture
def sub(mart: openmart.Mart) -> openmart.Subscription:
    return mart.subscriptions.add("credit", reference=reference_frame(), label="label", problem_type="binary")


def test_schema_is_inferred_from_reference(sub: openmart.Subscription) -> None:
    s = sub.schema
    assert s.feature_names == ["age", "sex", "income", EVIL]
    assert s.column("sex").kind is ColumnKind.CATEGORICAL
    assert s.column("age").kind is ColumnKind.NUMERIC
    assert s.problem_type is ProblemType.BINARY
    assert s.class_labels == (0, 1)
    assert sub.reference.count() == 200


def test_overrides_and_class_label_validation(mart: openmart.Mart) -> None:
    ref = reference_frame()
    sub = mart.subscriptions.add(
        "o", reference=ref, label="label", problem_type="binary", categorical=["age"], meta=["income"]
    )
    assert sub.schema.column("age").kind is ColumnKind.CATEGORICAL
    assert [c.name for c in sub.schema.meta] == ["income"]
    assert "income" not in sub.schema.feature_names
    with pytest.raises(ValidationError, match="not declared class labels"):
        mart.subscriptions.add("p", reference=ref, label="label", problem_type="binary", class_labels=["no", "yes"])
    with pytest.raises(ValidationError, match="3 distinct values"):
        mart.subscriptions.add("q", reference=ref.assign(label=ref["age"] % 3), label="label", problem_type="binary")
    with pytest.raises(AlreadyExists):
        mart.subscriptions.add("o", reference=ref, label="label", problem_type="binary")
    with pytest.raises(IdentifierError):
        mart.subscriptions.add("bad name;", reference=ref, label="label", problem_type="binary")


def test_payload_log_generates_or_keeps_ids_and_reads_back(sub: openmart.Subscription) -> None:
    pay = payload_frame(reference_frame())
    ids = sub.payload.log(pay)
    assert len(ids) == len(pay) and ids.is_unique
    assert all(len(i) == 36 and i[14] == "4" for i in ids[:20])  # version-4 UUIDs
    given = pay.head(3).assign(scoring_id=["a", "b", "c"])
    assert list(sub.payload.log(given)) == ["a", "b", "c"]
    back = sub.payload.read()
    assert len(back) == len(pay) + 3
    row = back.set_index("scoring_id").loc["b"]
    assert row["sex"] == given.loc[1, "sex"]
    assert row["income"] == pytest.approx(given.loc[1, "income"])
    assert row[EVIL] == pytest.approx(given.loc[1, EVIL])
    assert row["probability"] == pytest.approx(given.loc[1, "probability"])
    assert len(sub.payload.read(limit=5)) == 5


def test_read_window_by_time(sub: openmart.Subscription) -> None:
    pay = payload_frame(reference_frame()).head(10)
    pay["scoring_timestamp"] = pd.date_range("2026-01-01", periods=10, freq="h", tz="UTC")
    sub.payload.log(pay)
    window = sub.payload.read(since="2026-01-01T03:00:00Z", until="2026-01-01T06:00:00Z")
    assert list(window["scoring_timestamp"].dt.hour) == [3, 4, 5]


def test_openscale_request_response_shape(sub: openmart.Subscription) -> None:
    record = {
        "scoring_id": "os-1",
        "response_time": 12.5,
        "request": {
            "fields": ["age", "income", EVIL],
            "values": [[30, 40.0, 0.1], [40, 60.0, 0.2]],
            "meta": {"fields": ["sex"], "values": [["female"]]},
        },
        "response": {
            "fields": ["age", "income", EVIL, "probability", "prediction"],
            "values": [[30, 40.0, 0.1, [0.2, 0.8], 1], [40, 60.0, 0.2, [0.9, 0.1], 0]],
        },
    }
    ids = sub.payload.log(record)
    assert list(ids) == ["os-1-1", "os-1-2"]
    back = sub.payload.read().set_index("scoring_id")
    assert back.loc["os-1-1", "probability"] == pytest.approx(0.8)
    assert back.loc["os-1-2", "prediction"] == 0
    assert back.loc["os-1-2", "sex"] == "female"
    assert back.loc["os-1-1", "response_time"] == pytest.approx(12.5)


def test_feedback_links_to_payload(sub: openmart.Subscription, mart: openmart.Mart) -> None:
    ref = reference_frame()
    ids = sub.payload.log(payload_frame(ref))
    fb = ref.head(50).assign(scoring_id=list(ids[:50]))
    assert sub.feedback.log(fb) == 50
    sub.feedback.log(ref.tail(5))  # standing alone, no scoring id
    joined = mart.sql(f"SELECT count(*) AS n FROM {sub.feedback.table} f JOIN {sub.payload.table} p USING (scoring_id)")
    assert joined["n"][0] == 50
    assert sub.feedback.count() == 55


@pytest.mark.parametrize(
    ("mutate", "row", "column", "message"),
    [
        (lambda f: f.drop(columns=["sex"]), 0, "sex", "column 'sex' is missing"),
        (
            lambda f: f.astype({"income": object}).assign(income=lambda d: d["income"].where(d.index != 7, "lots")),
            7,
            "income",
            "not a number",
        ),
        (
            lambda f: f.assign(scoring_id=[f"id{i}" for i in range(len(f) - 1)] + ["id3"]),
            len(reference_frame()) - 1,
            "scoring_id",
            "repeats within the batch",
        ),
        (lambda f: f.assign(prediction=f["prediction"].where(f.index != 4, 7)), 4, "prediction", "class labels"),
        (lambda f: f.assign(probability=f["probability"].where(f.index != 9, 1.5)), 9, "probability", r"\[0, 1\]"),
    ],
)
def test_bad_batch_is_refused_whole_and_named(sub: openmart.Subscription, mutate, row, column, message) -> None:
    good = payload_frame(reference_frame(seed=5), seed=5).head(20)
    sub.payload.log(good)
    bad = mutate(payload_frame(reference_frame()))
    with pytest.raises(ValidationError, match=message) as info:
        sub.payload.log(bad)
    assert info.value.row == row
    assert info.value.column == column
    assert f"record {row}" in str(info.value) or "all " in str(info.value)
    assert sub.payload.count() == 20  # nothing of the bad batch; the earlier batch untouched


def test_duplicate_of_stored_id_refused_whole(sub: openmart.Subscription) -> None:
    pay = payload_frame(reference_frame())
    ids = sub.payload.log(pay.head(10))
    again = pay.iloc[10:20].assign(scoring_id=[f"new{i}" for i in range(9)] + [ids[0]])
    with pytest.raises(ValidationError, match="already stored") as info:
        sub.payload.log(again)
    assert info.value.row == 9 and info.value.value == ids[0]
    assert sub.payload.count() == 10


def test_multi_batch_log_is_all_or_nothing(sub: openmart.Subscription) -> None:
    pay = payload_frame(reference_frame())
    bad = pay.iloc[100:].astype({"age": object})
    bad.iloc[3, bad.columns.get_loc("age")] = "old"
    with pytest.raises(ValidationError, match=r"record 103 of the input") as info:
        sub.payload.log_batches([pay.iloc[:100], bad])
    assert info.value.row == 103
    assert sub.payload.count() == 0


def test_unknown_subscription(mart: openmart.Mart) -> None:
    with pytest.raises(NotFound, match="no subscription named 'ghost'"):
        mart.subscriptions.get("ghost")


def test_hostile_feature_name_is_stored_not_executed(sub: openmart.Subscription, mart: openmart.Mart) -> None:
    sub.payload.log(payload_frame(reference_frame()).head(5))
    assert EVIL in sub.payload.read().columns
    assert len(mart.sql("SELECT * FROM bindings")) == 0  # the table is still there
    with pytest.raises(IdentifierError, match="63-byte"):
        mart.subscriptions.add(
            "long", reference=reference_frame().rename(columns={"age": "a" * 64}), label="label", problem_type="binary"
        )


def test_multiclass_and_regression_tables(mart: openmart.Mart) -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(size=60), "kind": rng.choice(["setosa", "versicolor", "virginica"], 60)})
    sub = mart.subscriptions.add("iris", reference=ref, label="kind", problem_type="multiclass")
    assert sub.schema.class_labels == ("setosa", "versicolor", "virginica")
    probs = rng.dirichlet([1, 1, 1], 60)
    ids = [f"r{i}" for i in range(60)]
    sub.payload.log(
        pd.DataFrame({"x": ref["x"], "prediction": ref["kind"], "probability": list(probs), "scoring_id": ids})
    )
    back = sub.payload.read().set_index("scoring_id").loc[ids]
    assert np.allclose(np.vstack(back["probability"].to_numpy()), probs)
    assert list(back["prediction"]) == list(ref["kind"])
    with pytest.raises(ValidationError, match="2 probabilities for 3 classes"):
        sub.payload.log(pd.DataFrame({"x": [1.0], "prediction": ["setosa"], "probability": [[0.5, 0.5]]}))
    reg = mart.subscriptions.add(
        "price",
        reference=pd.DataFrame({"x": rng.normal(size=20), "y": rng.normal(size=20)}),
        label="y",
        problem_type="regression",
    )
    assert reg.schema.probability is None and reg.schema.class_labels is None
    reg.payload.log(pd.DataFrame({"x": [1.0, 2.0], "prediction": [3.5, -1.0]}))
    assert list(reg.payload.read()["prediction"]) == [3.5, -1.0]


def test_reference_load_replaces(sub: openmart.Subscription) -> None:
    assert sub.reference.load(reference_frame(50)) == 50
    assert sub.reference.count() == 50


def test_subscription_remove_drops_tables(mart: openmart.Mart, sub: openmart.Subscription) -> None:
    table = sub.payload.table
    mart.subscriptions.remove("credit")
    assert (
        mart.sql(
            "SELECT count(*) AS n FROM pg_tables WHERE tablename = :t AND schemaname = current_schema()", {"t": table}
        )["n"][0]
        == 0
    )


def test_extra_columns_refused_by_name_or_dropped_when_allowed(sub: openmart.Subscription) -> None:
    payload = payload_frame(reference_frame(20)).assign(notes="free text")
    with pytest.raises(ValidationError, match="column 'notes' is not one of the subscription's"):
        sub.payload.log(payload)
    assert sub.payload.count() == 0
    ids = sub.payload.log(payload, allow_extra_columns=True)
    assert sub.payload.count() == 20 and sub.payload.count_ids(ids) == 20
    assert "notes" not in sub.payload.read().columns
