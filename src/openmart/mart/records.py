"""Per-subscription record tables (payload, feedback, reference): their DDL, the bulk-COPY
ingest path, and reads.

The ingest path is the hot path: a batch is validated column by column (vectorised, never row
by row), turned into Arrow arrays, serialised to CSV by Arrow in bounded chunks, and streamed
into ``COPY ... FROM STDIN`` in one transaction. A bad batch is refused whole, with the row,
column and value named; nothing of it is written.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import psycopg2.errors
import pyarrow as pa
import pyarrow.csv as pacsv

from openmart import arguments
from openmart.errors import ValidationError
from openmart.mart import pgbinary
from openmart.mart.identifiers import quote
from openmart.schema import Column, ColumnKind, ProblemType, SubscriptionSchema

CHUNK_ROWS = 65_536  # Arrow serialises this many rows at a time: bounds the extra memory per batch


class RecordKind(StrEnum):
    PAYLOAD = "payload"
    FEEDBACK = "feedback"
    REFERENCE = "reference"


class Environment(StrEnum):
    """Where a set of records comes from: the model's training and validation data (labelled
    sets, in the reference table), or its traffic (payload and feedback)."""

    TRAINING = "training"
    VALIDATION = "validation"
    PRODUCTION = "production"


LABELLED_ENVIRONMENTS = (Environment.TRAINING, Environment.VALIDATION)
LABELLED_SQL = ", ".join(f"'{e}'" for e in LABELLED_ENVIRONMENTS)
#: the version a subscription starts with when none is given
INITIAL_VERSION = "1"


def environment(value: Environment | str) -> Environment:
    try:
        return Environment(str(value).lower())
    except ValueError:
        raise ValidationError(
            f"environment {value!r}: choose {', '.join(e.value for e in Environment)}", value=value
        ) from None


def table_name(kind: RecordKind, subscription_id: int) -> str:
    return f"{kind}_{subscription_id}"


# -- DDL ------------------------------------------------------------------------------------------


def create_table_sql(kind: RecordKind, table: str, schema: SubscriptionSchema) -> list[str]:
    q = quote
    inputs = [f"{q(c.name)} {c.sql_type}" for c in schema.input_columns]
    out_type = schema.output_sql_type
    outputs = [f"{q(schema.prediction)} {out_type}"]
    if schema.probability:
        outputs.append(f"{q(schema.probability)} {schema.probability_sql_type}")
    label = [f"{q(schema.label)} {out_type}"]
    if kind is RecordKind.PAYLOAD:
        cols = [
            "scoring_id text PRIMARY KEY",
            "scoring_timestamp timestamptz NOT NULL DEFAULT now()",
            "asset_revision text",
            "response_time double precision",
            *inputs,
            *outputs,
        ]
        index = f"CREATE INDEX {q(table + '_ts')} ON {q(table)} (scoring_timestamp)"
    elif kind is RecordKind.FEEDBACK:
        cols = [
            "record_id bigserial PRIMARY KEY",
            "scoring_id text",
            "recorded_at timestamptz NOT NULL DEFAULT now()",
            "asset_revision text",
            *inputs,
            *label,
            *outputs,
        ]
        # one label per scored record: re-logging replaces it or is refused, never doubles it
        index = f"CREATE UNIQUE INDEX {q(table + '_sid')} ON {q(table)} (scoring_id)"
    else:
        # the labelled sets: every environment's and version's rows, each tagged (migration 0009)
        cols = [
            "record_id bigserial PRIMARY KEY",
            f"environment text NOT NULL DEFAULT 'training' CHECK (environment IN ({LABELLED_SQL}))",
            "asset_revision text",
            *inputs,
            *label,
            *outputs,
        ]
        index = f"CREATE INDEX {q(table + '_set')} ON {q(table)} (environment, asset_revision)"
    stmts = [f"CREATE TABLE {q(table)} (\n  " + ",\n  ".join(cols) + "\n)"]
    return stmts + ([index] if index else [])


def traffic_trigger_sql(table: str, subscription_id: int) -> list[str]:
    """The triggers that keep ``traffic`` (records per hour) true for a payload table: statement
    level, over the statement's transition tables, so a COPY of a million rows adds one row per
    hour it spans (migration 0008 made the functions)."""
    q, sid = quote(table), int(subscription_id)
    return [
        f"CREATE TRIGGER openmart_traffic_in AFTER INSERT ON {q} REFERENCING NEW TABLE AS new_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION openmart_traffic_inserted('{sid}')",
        f"CREATE TRIGGER openmart_traffic_out AFTER DELETE ON {q} REFERENCING OLD TABLE AS old_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION openmart_traffic_deleted('{sid}')",
        f"CREATE TRIGGER openmart_traffic_moved AFTER UPDATE ON {q} REFERENCING OLD TABLE AS old_rows "
        f"NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION openmart_traffic_updated('{sid}')",
    ]


# -- input normalisation --------------------------------------------------------------------------


def _openscale_frame(fields: Any, values: Any, where: str) -> pd.DataFrame:
    """OpenScale's ``{"fields": [...], "values": [[...], ...]}``: every row as long as ``fields``,
    each field named once."""
    if isinstance(fields, str | bytes) or not isinstance(fields, Sequence):
        raise ValidationError(f"{where}: 'fields' must be a list of column names (got {type(fields).__name__})")
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ValidationError(f"{where}: 'values' must be a list of rows (got {type(values).__name__})")
    names = list(fields)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValidationError(f"{where}: 'fields' holds {name!r}, not a column name")
    dup = next((n for k, n in enumerate(names) if n in names[:k]), None)
    if dup is not None:
        raise ValidationError(f"{where}: field {dup!r} appears twice", column=dup)
    rows = list(values)
    for i, row in enumerate(rows):
        if isinstance(row, str | bytes | Mapping) or not isinstance(row, Sequence):
            raise ValidationError(f"{where}: record {i} is a {type(row).__name__}, not a list of values", row=i)
        if len(row) != len(names):
            which = "a short row" if len(row) < len(names) else "too many values"
            raise ValidationError(
                f"{where}: record {i} has {len(row)} values for {len(names)} fields ({which})",
                row=i,
                column=names[min(len(row), len(names) - 1)] if names else None,
            )
    return pd.DataFrame([list(r) for r in rows], columns=names) if rows else pd.DataFrame(columns=names)


def _openscale_shape(data: Any) -> bool:
    return (isinstance(data, Mapping) and "request" in data) or (
        isinstance(data, Sequence)
        and not isinstance(data, str | bytes)
        and len(data) > 0
        and isinstance(data[0], Mapping)
        and "request" in data[0]
    )


def openscale_payload_frame(data: Any) -> pd.DataFrame:
    """OpenScale payload records (one, or a list): ``{"request": {"fields", "values", "meta"?},
    "response": {"fields", "values"}, "scoring_id"?, "response_time"?, "scoring_timestamp"?}``."""
    records = [data] if isinstance(data, Mapping) else list(data)
    return pd.concat([_openscale_record(d, i) for i, d in enumerate(records)], ignore_index=True)


def to_frame(data: Any, schema: SubscriptionSchema | None = None) -> pd.DataFrame:
    """Accept a DataFrame, a list of record dicts, OpenScale's ``{"fields", "values"}``, or
    OpenScale's payload shape (see :func:`openscale_payload_frame`); anything else, or a
    malformed one of these, is refused with a :class:`ValidationError` naming the record."""
    if isinstance(data, pd.DataFrame):
        return data
    if _openscale_shape(data):
        return openscale_payload_frame(data)
    if isinstance(data, Mapping) and "fields" in data and "values" in data:
        return _openscale_frame(data["fields"], data["values"], "records")
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if data and not all(isinstance(r, Mapping) for r in data):
            bad = next(i for i, r in enumerate(data) if not isinstance(r, Mapping))
            raise ValidationError(f"record {bad} is not an object of field values", row=bad)
        try:
            return pd.DataFrame.from_records(list(data))
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"records cannot be read as a table ({exc})") from None
    raise ValidationError(
        f"cannot read records from a {type(data).__name__}: give a DataFrame, a list of "
        "records, or OpenScale's {'request': ..., 'response': ...}"
    )


def _part(record: Mapping[str, Any], key: str, where: str, *, required: bool) -> Mapping[str, Any] | None:
    part = record.get(key)
    if part is None or (not required and not part):
        if required:
            raise ValidationError(f"{where}: '{key}' is missing")
        return None
    if not isinstance(part, Mapping) or "fields" not in part or "values" not in part:
        raise ValidationError(f"{where}: '{key}' must be an object with 'fields' and 'values'")
    return part


def _openscale_record(record: Any, i: int) -> pd.DataFrame:
    where = f"payload {i}"
    if not isinstance(record, Mapping):
        raise ValidationError(f"{where} is a {type(record).__name__}, not an OpenScale payload record", row=i)
    request = _part(record, "request", where, required=True)
    assert request is not None
    frame = _openscale_frame(request["fields"], request["values"], f"{where} request")
    meta = _part(request, "meta", f"{where} request", required=False)
    if meta:
        meta_frame = _openscale_frame(meta["fields"], meta["values"], f"{where} request.meta")
        if len(meta_frame) == 1 and len(frame) > 1:
            meta_frame = pd.concat([meta_frame] * len(frame), ignore_index=True)
        if len(meta_frame) != len(frame):
            raise ValidationError(f"{where}: request.meta has {len(meta_frame)} rows for {len(frame)} request rows")
        clash = [c for c in meta_frame.columns if c in frame.columns]
        if clash:
            raise ValidationError(f"{where}: field {clash[0]!r} is in both request and request.meta", column=clash[0])
        frame = pd.concat([frame, meta_frame.set_axis(frame.index)], axis=1)
    response = _part(record, "response", where, required=False)
    if response:
        out = _openscale_frame(response["fields"], response["values"], f"{where} response")
        if len(out) != len(frame):
            raise ValidationError(f"{where}: response has {len(out)} rows for {len(frame)} request rows", row=i)
        out = out.drop(columns=[c for c in out.columns if c in frame.columns])
        frame = pd.concat([frame, out.set_axis(frame.index)], axis=1)
    sid = record.get("scoring_id")
    if sid is not None:
        # OpenScale: a multi-row request logged under one id becomes <id>-1 ... <id>-n
        frame["scoring_id"] = record_ids(str(sid), len(frame))
    if "response_time" in record:
        frame["response_time"] = record["response_time"]
    if "scoring_timestamp" in record:
        frame["scoring_timestamp"] = record["scoring_timestamp"]
    return frame


def accepted_columns(kind: RecordKind, schema: SubscriptionSchema) -> list[str]:
    """The columns a record of this kind may carry: the schema's, and the kind's own."""
    own = {
        RecordKind.PAYLOAD: ["scoring_id", "scoring_timestamp", "asset_revision", "response_time"],
        RecordKind.FEEDBACK: ["scoring_id", "recorded_at", "asset_revision"],
        RecordKind.REFERENCE: [],
    }[kind]
    label = [] if kind is RecordKind.PAYLOAD else [schema.label]  # a payload table has no label column
    outputs = label + [schema.prediction] + ([schema.probability] if schema.probability else [])
    return own + [c.name for c in schema.input_columns] + outputs


# -- validation into Arrow columns ---------------------------------------------------------------


def _where(kind: RecordKind, frame: pd.DataFrame, pos: int) -> str:
    label = frame.index[pos]
    extra = "" if isinstance(frame.index, pd.RangeIndex) and label == pos else f" (index {label!r})"
    return f"{kind} record {pos}{extra}"


def _fail(kind: RecordKind, frame: pd.DataFrame, pos: int, column: str, value: Any, why: str) -> ValidationError:
    return ValidationError(
        f"{_where(kind, frame, pos)}, column {column!r}: {why} (value {value!r})", row=pos, column=column, value=value
    )


def _numeric(kind: RecordKind, frame: pd.DataFrame, name: str) -> pa.Array:
    series = frame[name]
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
    else:
        coerced = pd.to_numeric(series, errors="coerce")
        bad = coerced.isna().to_numpy() & series.notna().to_numpy()
        if bad.any():
            pos = int(np.argmax(bad))
            raise _fail(kind, frame, pos, name, series.iloc[pos], "not a number")
        values = coerced.to_numpy(dtype="float64", na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        pos = int(np.argmax(infinite))
        raise _fail(kind, frame, pos, name, series.iloc[pos], "not a finite number")
    return pa.array(values, type=pa.float64(), from_pandas=True)  # NaN -> NULL


def as_text(value: Any) -> str:
    """The text a category is stored as: integral floats lose their '.0' (1.0 -> '1'), as
    PostgreSQL prints a double 1 cast to text, so the same category always has one spelling."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


_NOT_TEXT = (bytes, bytearray, memoryview, Mapping, list, tuple, set, np.ndarray)


def _text(kind: RecordKind, frame: pd.DataFrame, name: str) -> pa.Array:
    """A text column: strings as they are, numbers in their canonical spelling (:func:`as_text`);
    bytes, lists, objects and text that is not valid Unicode are refused by name."""
    series = frame[name]
    if isinstance(series.dtype, pd.StringDtype) or series.dtype == object:
        try:  # the fast path: text throughout (NaN/None as NULL)
            return pa.array(series, type=pa.string(), from_pandas=True)
        except (pa.ArrowException, UnicodeError):
            pass  # found and named below
    obj = series.astype(object)
    mask = obj.isna().to_numpy() if len(obj) else np.zeros(0, dtype=bool)
    strings: list[str | None] = []
    for pos, (v, m) in enumerate(zip(obj.tolist(), mask, strict=True)):
        if m:
            strings.append(None)
            continue
        if isinstance(v, _NOT_TEXT):
            raise _fail(kind, frame, pos, name, v, f"a {type(v).__name__}, not a single value")
        if isinstance(v, float | np.floating) and not np.isfinite(v):
            raise _fail(kind, frame, pos, name, v, "not a finite number")
        text = as_text(v)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(kind, frame, pos, name, v, "not valid Unicode text (a lone surrogate)") from None
        strings.append(text)
    return pa.array(strings, type=pa.string())


def _outputs(kind: RecordKind, frame: pd.DataFrame, name: str, schema: SubscriptionSchema) -> pa.Array:
    arr = _numeric(kind, frame, name) if schema.outputs_numeric else _text(kind, frame, name)
    if schema.class_labels is not None:
        allowed = pa.array(list(schema.class_labels), type=arr.type)
        ok = pa.compute.is_in(arr, value_set=allowed).to_numpy(zero_copy_only=False)
        bad = ~ok & frame[name].notna().to_numpy()
        if bad.any():
            pos = int(np.argmax(bad))
            raise _fail(
                kind,
                frame,
                pos,
                name,
                frame[name].iloc[pos],
                f"not one of the subscription's class labels {list(schema.class_labels)}",
            )
    return arr


def _probability(kind: RecordKind, frame: pd.DataFrame, name: str, schema: SubscriptionSchema) -> pa.Array:
    series = frame[name]
    n_classes = len(schema.class_labels or ())
    if schema.problem_type is ProblemType.MULTICLASS:
        literals: list[str | None] = []
        for pos, v in enumerate(series.tolist()):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                literals.append(None)
                continue
            try:
                probs = [float(p) for p in v]
            except (TypeError, ValueError):
                raise _fail(kind, frame, pos, name, v, "not a list of class probabilities") from None
            if len(probs) != n_classes:
                raise _fail(kind, frame, pos, name, v, f"has {len(probs)} probabilities for {n_classes} classes")
            if not all(0.0 <= p <= 1.0 for p in probs):  # NaN fails this too
                raise _fail(kind, frame, pos, name, v, "a probability must be a finite number in [0, 1]")
            literals.append("{" + ",".join(repr(p) for p in probs) + "}")
        return pa.array(literals, type=pa.string())
    if (
        series.dtype == object
        and len(series)
        and isinstance(series.dropna().iloc[0] if series.notna().any() else None, list | tuple | np.ndarray)
    ):
        # OpenScale logs both class probabilities for binary: keep the positive class's
        for pos, v in enumerate(series.tolist()):
            if isinstance(v, list | tuple | np.ndarray) and len(v) != n_classes:
                raise _fail(kind, frame, pos, name, v, f"has {len(v)} probabilities for {n_classes} classes")
        series = series.map(lambda v: v[-1] if isinstance(v, list | tuple | np.ndarray) else v)
        frame = frame.assign(**{name: series})
    arr = _numeric(kind, frame, name)
    values = arr.to_numpy(zero_copy_only=False)
    bad = (values < 0) | (values > 1)
    if bad.any():
        pos = int(np.argmax(bad))
        raise _fail(kind, frame, pos, name, series.iloc[pos], "a probability must lie in [0, 1]")
    return arr


def record_ids(scoring_id: str, n: int) -> list[str]:
    """The scoring ids of the ``n`` records of one request or captured event: the id itself for
    one record, ``<id>-1 ... <id>-n`` for several (OpenScale's convention; the one place it is written)."""
    return [scoring_id] if n == 1 else [f"{scoring_id}-{k}" for k in range(1, n + 1)]


def new_scoring_ids(n: int) -> pa.Array:
    """n random (version 4) UUIDs as text, made vectorised: uuid.uuid4() in a loop costs seconds
    per million."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = hexdigits[raw >> 4]
    nibbles[:, 1::2] = hexdigits[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for dst, src in (
        (slice(0, 8), slice(0, 8)),
        (slice(9, 13), slice(8, 12)),
        (slice(14, 18), slice(12, 16)),
        (slice(19, 23), slice(16, 20)),
        (slice(24, 36), slice(20, 32)),
    ):
        out[:, dst] = nibbles[:, src]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))


def _scoring_ids(kind: RecordKind, frame: pd.DataFrame, required: bool) -> pa.Array | None:
    if "scoring_id" not in frame.columns:
        return new_scoring_ids(len(frame)) if required else None
    ids = _text(kind, frame, "scoring_id")
    if required:
        missing = ids.is_null().to_numpy(zero_copy_only=False)
        if missing.any():  # keep what was given, generate the rest
            generated = new_scoring_ids(int(missing.sum())).to_pylist()
            filled = ids.to_pylist()
            it = iter(generated)
            ids = pa.array([next(it) if m else v for v, m in zip(filled, missing, strict=True)], pa.string())
        dup = pd.Series(ids.to_numpy(zero_copy_only=False)).duplicated().to_numpy()
        if dup.any():
            pos = int(np.argmax(dup))
            raise _fail(kind, frame, pos, "scoring_id", ids[pos].as_py(), "scoring_id repeats within the batch")
    return ids


def _timestamps(kind: RecordKind, frame: pd.DataFrame, column: str) -> pa.Array | None:
    if column not in frame.columns:
        return None
    series = frame[column]
    parsed = (
        pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
        if not pd.api.types.is_datetime64_any_dtype(series.dtype)
        else series
    )
    bad = parsed.isna().to_numpy() & series.notna().to_numpy()
    if bad.any():
        pos = int(np.argmax(bad))
        raise _fail(kind, frame, pos, column, series.iloc[pos], "not a timestamp")
    if column in ("scoring_timestamp", "recorded_at"):  # NOT NULL columns with a default
        missing = series.isna().to_numpy()
        if missing.any():
            pos = int(np.argmax(missing))
            raise _fail(
                kind, frame, pos, column, None, "the timestamp is missing (leave the column out to stamp records now)"
            )
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize("UTC")
    # PostgreSQL keeps microseconds: finer parts are cut, not refused
    return pa.array(parsed.dt.tz_convert("UTC").dt.floor("us"), type=pa.timestamp("us", tz="UTC"), from_pandas=True)


def prepare(kind: RecordKind, data: Any, schema: SubscriptionSchema) -> tuple[pa.Table, pa.Array | None]:
    """Validate a batch and build the Arrow table to COPY; returns it and the payload scoring ids."""
    frame = to_frame(data, schema)
    if len(frame) == 0:
        raise ValidationError(f"{kind} batch is empty")
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise ValidationError(f"{kind} batch: column {dup!r} appears twice", column=str(dup))
    required = list(schema.feature_names)
    if kind is RecordKind.PAYLOAD:
        required.append(schema.prediction)
    else:
        required.append(schema.label)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"{kind} batch (all {len(frame)} records): column {missing[0]!r} is missing"
            + (f" (also {missing[1:]})" if len(missing) > 1 else ""),
            row=0,
            column=missing[0],
        )

    columns: dict[str, pa.Array] = {}
    ids = _scoring_ids(kind, frame, required=kind is RecordKind.PAYLOAD)
    if ids is not None:
        columns["scoring_id"] = ids
    if kind is RecordKind.PAYLOAD:
        for col in ("scoring_timestamp",):
            ts = _timestamps(kind, frame, col)
            if ts is not None:
                columns[col] = ts
        if "asset_revision" in frame.columns:
            columns["asset_revision"] = _text(kind, frame, "asset_revision")
        if "response_time" in frame.columns:
            columns["response_time"] = _numeric(kind, frame, "response_time")
    if kind is RecordKind.FEEDBACK:
        ts = _timestamps(kind, frame, "recorded_at")
        if ts is not None:
            columns["recorded_at"] = ts
        if "asset_revision" in frame.columns:
            columns["asset_revision"] = _text(kind, frame, "asset_revision")
    for col in schema.input_columns:
        if col.name not in frame.columns:
            continue  # only meta columns may be absent (checked above)
        columns[col.name] = _column(kind, frame, col)
    if kind is not RecordKind.PAYLOAD:
        columns[schema.label] = _outputs(kind, frame, schema.label, schema)
    if schema.prediction in frame.columns:
        columns[schema.prediction] = _outputs(kind, frame, schema.prediction, schema)
    if schema.probability and schema.probability in frame.columns:
        columns[schema.probability] = _probability(kind, frame, schema.probability, schema)
    if kind is RecordKind.PAYLOAD:
        missing_prediction = columns[schema.prediction].is_null().to_numpy(zero_copy_only=False)
        if missing_prediction.any():
            pos = int(np.argmax(missing_prediction))
            raise _fail(kind, frame, pos, schema.prediction, None, "the prediction is missing")
    for name, arr in columns.items():
        if pa.types.is_string(arr.type):
            _no_nul(kind, frame, name, arr)
    table = pa.table(columns)
    if schema.problem_type is ProblemType.MULTICLASS and schema.probability in columns:
        # array literals ('{0.1,0.9}') are text to PostgreSQL's CSV parser only
        i = table.schema.get_field_index(schema.probability)
        table = table.cast(table.schema.set(i, table.schema.field(i).with_metadata({pgbinary.TEXT_LITERAL: b"1"})))
    return table, ids


def _no_nul(kind: RecordKind, frame: pd.DataFrame, name: str, arr: pa.Array) -> None:
    """PostgreSQL text cannot hold a NUL byte: refuse the record by name rather than lose it."""
    hits = pa.compute.match_substring(arr, "\x00").fill_null(False).to_numpy(zero_copy_only=False)
    if hits.any():
        pos = int(np.argmax(hits))
        raise _fail(
            kind, frame, pos, name, arr[pos].as_py(), "text holds a NUL byte (\\x00), which PostgreSQL cannot store"
        )


def _column(kind: RecordKind, frame: pd.DataFrame, col: Column) -> pa.Array:
    if col.kind is ColumnKind.NUMERIC:
        return _numeric(kind, frame, col.name)
    return _text(kind, frame, col.name)


# -- COPY ----------------------------------------------------------------------------------------


def _csv_chunks(table: pa.Table) -> Iterator[bytes]:
    options = pacsv.WriteOptions(include_header=False)
    for start in range(0, table.num_rows, CHUNK_ROWS):
        sink = io.BytesIO()
        pacsv.write_csv(table.slice(start, CHUNK_ROWS), sink, options)
        yield sink.getvalue()


class _ChunkStream(io.RawIOBase):
    """A read-only file over a generator of byte chunks, produced on demand (bounded memory)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


_KEY_DETAIL = re.compile(r"Key \((?P<col>.+?)\)=\((?P<val>.*)\) already exists")


def copy_into(connection: Any, table: str, arrow: pa.Table, kind: RecordKind) -> None:
    """COPY the prepared table in; the caller owns the transaction (commit or rollback)."""
    cols = ", ".join(quote(c) for c in arrow.column_names)
    binary = pgbinary.encodable(arrow)
    stream = pgbinary.chunks(arrow, CHUNK_ROWS) if binary else _csv_chunks(arrow)
    sql = f"COPY {quote(table)} ({cols}) FROM STDIN WITH (FORMAT {'binary' if binary else 'csv'})"
    with connection.cursor() as cur:
        try:
            cur.copy_expert(sql, _ChunkStream(stream), size=1 << 20)
        except psycopg2.errors.UniqueViolation as exc:
            match = _KEY_DETAIL.search(exc.diag.message_detail or "")
            value = match.group("val") if match else None
            pos = None
            if value is not None and "scoring_id" in arrow.column_names:
                hits = np.flatnonzero(arrow.column("scoring_id").to_numpy(zero_copy_only=False) == value)
                pos = int(hits[0]) if len(hits) else None
            where = f"{kind} record {pos}" if pos is not None else f"{kind} batch"
            raise ValidationError(
                f"{where}, column 'scoring_id': a record with this scoring_id is already stored (value {value!r})",
                row=pos,
                column="scoring_id",
                value=value,
            ) from exc
        except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
            detail = " ".join((exc.diag.message_primary or str(exc)).split())
            column = exc.diag.column_name
            raise ValidationError(
                f"{kind} batch refused by PostgreSQL" + (f", column {column!r}" if column else "") + f": {detail}",
                column=column,
            ) from exc


def select_sql(
    table: str,
    *,
    time_column: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
    columns: Sequence[str] | None = None,
    newest_first: bool = False,
    where: tuple[str, dict[str, Any]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The query reading a record table; the arguments are checked here, for every caller
    (ValidationError naming the argument and its valid values)."""
    since, until = arguments.time_window(since, until)
    limit = arguments.optional_integer(limit, "limit", minimum=0)
    columns = arguments.names(columns, "columns")
    cols = "*" if columns is None else ", ".join(quote(c) for c in columns)
    sql = f"SELECT {cols} FROM {quote(table)}"
    conditions, params = [], {}
    if where is not None:  # a condition the mart wrote (a labelled set's), with its parameters
        conditions.append(where[0])
        params.update(where[1])
    if time_column and since is not None:
        conditions.append(f"{quote(time_column)} >= %(since)s")
        params["since"] = since
    if time_column and until is not None:
        conditions.append(f"{quote(time_column)} < %(until)s")
        params["until"] = until
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    order = quote(time_column) if time_column else "record_id"
    sql += f" ORDER BY {order} {'DESC' if newest_first else 'ASC'}"
    if limit is not None:
        sql += " LIMIT %(limit)s"
        params["limit"] = int(limit)
    return sql, params
