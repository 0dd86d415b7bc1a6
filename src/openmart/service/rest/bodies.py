"""Request bodies as batches of records for :meth:`RecordStore.log_batches`.

- ``application/json``: a list of records, ``{"records": [...]}``, OpenScale's
  ``{"fields": [...], "values": [[...]]}`` (or a list of those: one batch each), or OpenScale
  payload records (``{"request": ..., "response": ...}``). Read whole (JSON has no record
  boundaries to stream on), then handed over as it is: the mart names a bad record by its index.
- ``application/x-ndjson`` (or ``application/jsonl``): one record per line, read incrementally
  from the request stream into batches of :data:`BATCH_ROWS`.
- ``text/csv``: a header line, then records, read incrementally by pandas' C parser from the
  request stream into batches of :data:`BATCH_ROWS` (only an empty field is missing, as the CLI
  reads files).

Record numbers in errors count from 0 over the whole body.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pandas as pd

from openmart.errors import ValidationError
from openmart.inputs import _no_constants, _no_duplicate_keys  # the CLI's own strictness for files

BATCH_ROWS = 10_000
JSON_TYPES = ("application/json", "text/json")
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")
CSV_TYPES = ("text/csv", "application/csv")


class UnsupportedBody(Exception):
    """A content type no reader takes (answered 415)."""


def media_type(content_type: str | None) -> str:
    """``json``, ``ndjson`` or ``csv`` for a Content-Type header (none: JSON)."""
    mt = (content_type or "application/json").split(";")[0].strip().lower()
    if mt in JSON_TYPES or mt.endswith("+json"):
        return "json"
    if mt in NDJSON_TYPES:
        return "ndjson"
    if mt in CSV_TYPES:
        return "csv"
    raise UnsupportedBody(
        f"Content-Type {mt!r} is not one openmart reads: use application/json, application/x-ndjson or text/csv"
    )


def _strict_loads(text: bytes | str, where: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{where} is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{where} is not UTF-8 text") from None
    except ValueError as exc:
        raise ValidationError(f"{where}: {exc}") from None


# a key written with blanks before its colon: the quick key count below would miss it
_SPACED_KEY_END = re.compile(rb'"[ \t\r\n]+:')


def loads(text: bytes | str, where: str = "the body") -> Any:
    """Strict JSON: a repeated key or NaN/Infinity is refused, as the CLI refuses them in files.

    Fast: orjson parses (several times faster than ``json`` on records of numbers) and refuses
    NaN/Infinity itself; a repeated key, which every parser folds silently, is found by counting
    ``":`` in the body and in orjson's own compact writing of what it parsed. Each key adds one
    to both counts (the body's when no key has blanks before its colon); quotes inside strings
    add the same to both, written ``\\"`` in each (a body writing one as ``\\u0022`` is read
    strictly). A repeated key adds to the body's count only. So equal counts prove no key was
    repeated; any other body is parsed again by the standard library with a duplicate check,
    which names the repeated key (``tests/test_service_bodies.py`` checks both agree on any JSON)."""
    raw = text.encode() if isinstance(text, str) else text
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _strict_loads(raw, where)  # names the error's line and column, as the CLI does
    quick = not _SPACED_KEY_END.search(raw) and b"\\u0022" not in raw
    if quick and raw.count(b'":') == orjson.dumps(data).count(b'":'):
        return data
    return _strict_loads(raw, where)


def _fields_values(data: Any) -> bool:
    return isinstance(data, dict) and "fields" in data and "values" in data and "request" not in data


def json_batches(data: Any) -> list[Any]:
    """The batches a parsed JSON body holds (see the module's docstring for the shapes)."""
    if isinstance(data, dict):
        if set(data) == {"records"}:
            data = data["records"]
            if not isinstance(data, list):
                raise ValidationError(
                    f'"records" must be a list of records (got a JSON {type(data).__name__})', column="records"
                )
        elif _fields_values(data) or "request" in data:
            return [data]
        else:
            raise ValidationError(
                'a JSON object body must be {"records": [...]} or OpenScale\'s {"fields": [...], "values": [[...]]} '
                f"(got keys {sorted(data)[:10]})"
            )
    if not isinstance(data, list):
        raise ValidationError(f"the body is a JSON {type(data).__name__}; send a list of records")
    if not data:
        raise ValidationError("the body holds no records")
    if all(_fields_values(d) for d in data):
        return list(data)  # several {"fields", "values"}: one batch each, numbered on across them
    return [data]


class _Stream(io.RawIOBase):
    """A file over an iterator of byte chunks (the request body), for pandas' CSV reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = chunk
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def csv_batches(chunks: Iterator[bytes], batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """CSV records from the body's chunks, ``batch_rows`` at a time (bounded memory)."""
    stream = io.BufferedReader(_Stream(chunks), buffer_size=1 << 16)
    header = _csv_header(stream)
    rows = 0
    try:
        reader = pd.read_csv(
            stream,
            names=header,  # read here: pandas would rename a repeated column ("a.1") rather than refuse it
            header=None,
            chunksize=batch_rows,
            encoding="utf-8",
            # only empty cells are missing: "n/a" in a numeric column must be reported, not guessed
            keep_default_na=False,
            na_values=[""],
            index_col=False,
        )
        with reader:
            for frame in reader:
                if len(frame):
                    rows += len(frame)
                    yield frame
    except pd.errors.EmptyDataError:
        raise ValidationError("the CSV body is empty (no header)") from None
    except pd.errors.ParserError as exc:
        text = _first_line(exc)
        # the parser counts lines after the header, which was read apart: line N is record N - 1
        found = re.search(r"in line (\d+)", text)
        if found:
            record = int(found.group(1)) - 1
            raise ValidationError(f"the CSV body's record {record} cannot be read: {text}", row=record) from None
        raise ValidationError(f"the CSV body cannot be read after record {rows}: {text}") from None
    except UnicodeDecodeError:
        raise ValidationError(f"the CSV body is not UTF-8 text (after record {rows})") from None
    if rows == 0:
        raise ValidationError("the CSV body holds no records (only a header)")


def _csv_header(stream: io.BufferedReader) -> list[str]:
    """The header line, checked: every column named, and named once."""
    try:
        line = stream.readline().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("the CSV body is not UTF-8 text (its header)") from None
    if not line.strip():
        raise ValidationError("the CSV body is empty (no header)")
    try:
        header = next(csv.reader([line]))
    except csv.Error as exc:
        raise ValidationError(f"the CSV body's header cannot be read: {exc}") from None
    seen: set[str] = set()
    for i, name in enumerate(header, start=1):
        if not name.strip():
            raise ValidationError(f"the CSV header's column {i} has no name", column=str(i))
        if name in seen:
            raise ValidationError(f"the CSV header names column {name!r} twice", column=name)
        seen.add(name)
    return header


def ndjson_batches(chunks: Iterator[bytes], batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """JSON lines from the body's chunks, ``batch_rows`` records at a time; a line that is not a
    JSON object is refused naming its record (and line)."""
    pending = b""
    records: list[dict[str, Any]] = []
    line = 0
    index = 0

    def parse(raw: bytes) -> dict[str, Any] | None:
        nonlocal line, index
        line += 1
        if not raw.strip():
            return None
        where = f"record {index} (line {line})"
        try:
            record = loads(raw, where)
        except ValidationError as exc:
            raise ValidationError(str(exc), row=index) from None
        if not isinstance(record, dict):
            raise ValidationError(
                f"{where} is a JSON {type(record).__name__}, not an object of field values", row=index
            )
        index += 1
        return record

    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            record = parse(raw)
            if record is not None:
                records.append(record)
                if len(records) >= batch_rows:
                    yield pd.DataFrame.from_records(records)
                    records = []
    record = parse(pending)
    if record is not None:
        records.append(record)
    if records:
        yield pd.DataFrame.from_records(records)
    elif index == 0:
        raise ValidationError("the body holds no records")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


Reader = Callable[[Iterator[bytes]], Iterator[pd.DataFrame]]
STREAMED: dict[str, Reader] = {"csv": csv_batches, "ndjson": ndjson_batches}
