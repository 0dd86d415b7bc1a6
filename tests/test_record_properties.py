"""Property-based tests of record validation: whatever frame a caller hands over is either
stored exactly (read back equal) or refused whole with a ValidationError naming the record and
the column; never another exception, never a partial write.

Examples are kept modest (CI has two loaded cores): 80 per property, no deadline;
OPENMART_PROPERTY_EXAMPLES=2000 runs deeper."""

from __future__ import annotations

import math
import os
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import openmart
from openmart.errors import ValidationError
from openmart.mart.records import RecordKind, as_text, prepare
from openmart.schema import Column, ColumnKind, ProblemType, SubscriptionSchema

SCHEMA = SubscriptionSchema(
    features=(Column("x", ColumnKind.NUMERIC), Column("c", ColumnKind.CATEGORICAL)),
    label="y",
    problem_type=ProblemType.BINARY,
    class_labels=(0, 1),
)
PROPERTIES = settings(
    max_examples=int(os.environ.get("OPENMART_PROPERTY_EXAMPLES", "80")),  # more for a deeper local run
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# values a careless or hostile caller may put in any cell
odd_values = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.sampled_from([float("inf"), float("-inf"), 1e308, -0.0, 2**63, -(2**70), True, False]),
    st.text(max_size=8),
    st.sampled_from(["n/a", "", " ", "1e5", "0x10", "\x00", "a\x00b", "\ud800", "$\\foo$", "é", "NaN", "-inf"]),
    st.lists(st.floats(allow_nan=True), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.binary(max_size=4),
    st.datetimes().map(pd.Timestamp),
)
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64), st.integers(-(2**52), 2**52))
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    """Mostly well-formed frames (so that storing is exercised), about half with something wrong:
    odd cells, missing or repeated columns, extra columns (which are ignored)."""
    n = draw(st.integers(0, 6))
    dirty = draw(st.booleans())
    nullable = {"x", "c", "probability", "scoring_id", "response_time"}
    pools = {
        "x": numbers,
        "c": st.one_of(texts, numbers),
        "prediction": st.sampled_from([0, 1, 0.0, 1.0]),
        "probability": st.floats(0, 1),
        "scoring_id": st.uuids().map(str),
        "scoring_timestamp": st.datetimes(
            min_value=pd.Timestamp("1970-01-02").to_pydatetime(), max_value=pd.Timestamp("2200-01-01").to_pydatetime()
        ).map(lambda t: t.isoformat()),
        "response_time": st.floats(0, 1e6),
    }
    columns: dict[Any, list[Any]] = {}
    for name, good in pools.items():
        if dirty and draw(st.integers(0, 9)) == 0:
            continue  # a column left out
        if name != "prediction" and name != "x" and draw(st.integers(0, 3)) == 0:
            continue  # optional columns are often absent
        values = [draw(st.one_of(good, st.none()) if name in nullable else good) for _ in range(n)]
        if dirty and n and draw(st.booleans()):
            values[draw(st.integers(0, n - 1))] = draw(odd_values)
        columns[name] = values
    for extra in draw(st.lists(st.sampled_from(["extra", "y", 0, "X", "c "]), max_size=2, unique=True)):
        columns[extra] = [draw(odd_values) for _ in range(n)]
    try:  # pandas' own inference, as a caller's frame has it
        frame = pd.DataFrame(columns, index=pd.RangeIndex(n))
    except (ValueError, TypeError, UnicodeError):  # pandas cannot infer (a lone surrogate): object columns
        frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items()}, index=pd.RangeIndex(n))
    if dirty and draw(st.integers(0, 9)) == 0 and len(frame.columns) >= 2:  # a column name repeated
        frame.columns = [frame.columns[0], *frame.columns[:-1]]
    return frame


def refused_by_name(exc: ValidationError, frame: pd.DataFrame) -> None:
    """The refusal names what is wrong: a record and a column, or the whole batch's column."""
    message = str(exc)
    assert "\n" not in message.strip(), message
    if len(frame) == 0:
        assert "empty" in message
        return
    assert exc.column is not None and repr(str(exc.column)) in message, message
    assert (exc.row is not None and f"record {exc.row}" in message) or "batch" in message, message


@PROPERTIES
@given(frame=frames())
def test_prepare_accepts_or_refuses_by_name(frame: pd.DataFrame) -> None:
    try:
        table, ids = prepare(RecordKind.PAYLOAD, frame, SCHEMA)
    except ValidationError as exc:
        event("refused")
        refused_by_name(exc, frame)
        return
    event("accepted")
    assert table.num_rows == len(frame)
    assert ids is not None and len(set(ids.to_pylist())) == len(frame)
    x = table.column("x").to_pylist()
    assert all(v is None or math.isfinite(v) for v in x)


def _expected_number(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _expected_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return as_text(value)


@pytest.fixture
def sub(mart: openmart.Mart) -> openmart.Subscription:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {"x": rng.normal(size=50), "c": rng.choice(["a", "b"], 50), "y": rng.integers(0, 2, 50)},
    )
    return mart.subscriptions.add("props", reference=ref, label="y", problem_type="binary")


@PROPERTIES
@given(frame=frames())
def test_logging_stores_exactly_or_nothing(sub: openmart.Subscription, frame: pd.DataFrame) -> None:
    if "scoring_id" in frame.columns and frame.columns.is_unique:  # ids new to the table (repeats kept)
        salt = uuid.uuid4().hex[:8]
        ids = [f"{v}-{salt}" if isinstance(v, str) else v for v in frame["scoring_id"].astype(object)]
        frame["scoring_id"] = pd.Series(ids, index=frame.index, dtype=object)
    before = sub.payload.count()
    try:
        ids = sub.payload.log(frame)
    except ValidationError as exc:
        event("refused")
        refused_by_name(exc, frame)
        assert sub.payload.count() == before  # refused whole
        return
    event("stored")
    assert sub.payload.count() == before + len(frame)
    back = sub.payload.read().set_index("scoring_id").loc[list(ids)]
    for pos, sid in enumerate(ids):
        row = back.loc[sid]
        want_x = _expected_number(frame["x"].iloc[pos])
        got_x = None if pd.isna(row["x"]) else float(row["x"])
        assert got_x == want_x or (want_x is not None and got_x == pytest.approx(want_x, rel=0, abs=0)), (want_x, got_x)
        want_c = _expected_text(frame["c"].iloc[pos]) if "c" in frame.columns else None
        got_c = None if row["c"] is None or (isinstance(row["c"], float) and math.isnan(row["c"])) else row["c"]
        assert got_c == want_c, (want_c, got_c)
        assert float(row["prediction"]) == float(frame["prediction"].iloc[pos])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)
openscale_like = st.one_of(
    json_values,
    st.fixed_dictionaries({"fields": json_values, "values": json_values}),
    st.fixed_dictionaries(
        {"request": st.fixed_dictionaries({"fields": json_values, "values": json_values})},
        optional={"response": json_values, "scoring_id": json_values},
    ),
    st.lists(st.fixed_dictionaries({"request": json_values}), min_size=1, max_size=2),
    st.lists(st.dictionaries(st.sampled_from(["x", "c", "prediction", "probability"]), json_values), max_size=3),
)


@PROPERTIES
@given(data=openscale_like)
def test_any_json_shape_is_read_or_refused(data: Any) -> None:
    """Records as JSON-like data (OpenScale's shapes, or anything): a ValidationError or a table."""
    try:
        table, _ = prepare(RecordKind.PAYLOAD, data, SCHEMA)
    except ValidationError as exc:
        event("refused")
        assert "\n" not in str(exc).strip()
        return
    event("accepted")
    assert table.num_rows > 0
