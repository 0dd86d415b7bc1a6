"""Record files: CSV (and TSV, gzipped CSV), JSON lines, JSON (OpenScale ``{"fields", "values"}``,
OpenScale payload records, or an array of records) and Parquet.

A file is either read whole and faithfully, or refused with ONE line naming the file, the line
(or row) and, where there is one, the column: an :class:`InputError`. Nothing is guessed:

- text is UTF-8 (with or without a byte-order mark); UTF-16 and UTF-32 with a byte-order mark
  are recognised; any other encoding must be given (``encoding=``, the CLI's ``--encoding``);
- a CSV row with more fields than the header is refused; one with fewer (a "short row") too,
  unless ``allow_short_rows`` (its missing fields are then empty, i.e. NULL);
- a header naming a column twice, or a column without a name, is refused;
- JSON's non-standard ``NaN``/``Infinity`` and an object repeating a key are refused; a JSON-lines
  record lacking a key the others have is a short row;
- an empty file, or one with a header and no records, is refused.

Validating the values against a subscription's schema is the mart's job
(:func:`openmart.mart.records.prepare`); :meth:`RecordFile.located` turns its errors, which
name a record by position, into ones naming the file and line.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from openmart import arguments
from openmart.errors import ValidationError

CHUNK_ROWS = 100_000
FORMATS = ".csv, .tsv, .csv.gz, .jsonl, .ndjson, .json, .parquet or .pq"


class InputError(ValidationError):
    """A file could not be read as records; the message names the file and where in it."""


def file_format(path: Path) -> str:
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        return "parquet"
    if suffixes.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if suffixes.endswith(".json"):
        return "json"
    if suffixes.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        return "csv"
    raise InputError(f"{path}: unknown file type {path.suffix!r} (use {FORMATS})")


def _short(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"key {dup!r} appears twice in one object")
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (write null for a missing value; infinite numbers are refused)")


def _json_loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)


@dataclass
class RecordFile:
    """One input file. ``encoding``: None reads UTF-8, or what a byte-order mark says."""

    path: Path
    encoding: str | None = None
    allow_short_rows: bool = False
    kind: str = field(init=False)
    _columns: list[str] | None = field(default=None, init=False, repr=False)
    #: JSON lines: the line each record came from (records are numbered from 0 in file order)
    _lines: array = field(default_factory=lambda: array("q"), init=False, repr=False)
    #: JSON: how records are named ("values[3]", "payload 3", "record 3")
    _json_rows: str = field(default="record", init=False, repr=False)
    #: the columns :meth:`records` dropped (with ``allow_extra_columns``)
    dropped: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.encoding is not None:
            self.encoding = arguments.encoding(self.encoding, "--encoding")
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory, not a file")
        self.kind = file_format(self.path)
        try:
            with self.path.open("rb"):
                pass
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be read ({exc.strerror})") from None
        if self.path.stat().st_size == 0:
            raise InputError(f"{self.path}: the file is empty")

    # -- encodings ------------------------------------------------------------------------------

    @property
    def _compressed(self) -> bool:
        return self.path.suffix.lower() == ".gz"

    def _binary(self) -> IO[bytes]:
        return gzip.open(self.path, "rb") if self._compressed else self.path.open("rb")  # type: ignore[return-value]

    @property
    def text_encoding(self) -> str:
        """The encoding the text is read with: the given one, else what its byte-order mark says,
        else UTF-8."""
        try:
            with self._binary() as fh:
                head = fh.read(4)
        except (OSError, EOFError) as exc:
            raise InputError(f"{self.path}: cannot be read ({exc})") from None
        if self.encoding is not None:
            # a UTF-8 file with a byte-order mark read "as utf-8": the mark is not part of the text
            return "utf-8-sig" if self.encoding == "utf-8" and head.startswith(codecs.BOM_UTF8) else self.encoding
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            return "utf-32"
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        return "utf-8"

    def _text(self) -> IO[str]:
        return io.TextIOWrapper(self._binary(), encoding=self.text_encoding, newline="")

    def _decode_error(self) -> InputError:
        """Where the text stops being valid in its encoding: line and byte (slow path, on error)."""
        enc = self.text_encoding
        hint = "give the file's encoding with --encoding (e.g. --encoding latin-1 or cp1252)"
        if codecs.lookup(enc).name in {"utf-16", "utf-32"} or "16" in enc or "32" in enc:
            decoder = codecs.getincrementaldecoder(enc)()
            offset, lines = 0, 1
            with self._binary() as fh:
                for block in iter(lambda: fh.read(1 << 16), b""):
                    try:
                        lines += decoder.decode(block).count("\n")
                    except UnicodeDecodeError as exc:
                        return InputError(f"{self.path}: near line {lines}, byte {offset + exc.start}: not {enc} text")
                    offset += len(block)
            return InputError(f"{self.path}: the text ends in the middle of a character (not {enc} text)")
        with self._binary() as fh:
            for number, raw in enumerate(fh, start=1):
                if number == 1 and enc == "utf-8-sig":
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                try:
                    raw.decode(enc)
                except UnicodeDecodeError as exc:
                    byte = raw[exc.start : exc.start + 1].hex()
                    what = "UTF-8" if enc.startswith("utf-8") else enc
                    return InputError(
                        f"{self.path}: line {number}, byte {exc.start + 1}: not {what} text (byte 0x{byte})"
                        + (f"; {hint}" if self.encoding is None else "")
                    )
        return InputError(f"{self.path}: not {enc} text; {hint}")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Errors of the parsers, as one line naming the file."""
        try:
            yield
        except InputError:
            raise
        except UnicodeError:
            raise self._decode_error() from None
        except (EOFError, gzip.BadGzipFile, OSError) as exc:
            raise InputError(f"{self.path}: cannot be read ({exc})") from None

    # -- the public surface ---------------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """The columns the file holds (CSV: its header, checked)."""
        if self._columns is None:
            if self.kind == "csv":
                self._columns = self._csv_header()
            elif self.kind == "parquet":
                self._columns = self._parquet_columns()
            else:
                first = next(self.chunks(), None)
                self._columns = [str(c) for c in first.columns] if first is not None else []
        return self._columns

    def chunks(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
        """The records in chunks (bounded memory for CSV, JSON lines and Parquet)."""
        reader = {"csv": self._csv_chunks, "parquet": self._parquet_chunks, "jsonl": self._jsonl_chunks}.get(
            self.kind, self._json_chunks
        )
        rows = 0
        with self._reading():
            for chunk in reader(chunk_rows):
                if len(chunk):
                    rows += len(chunk)
                    yield chunk
        if rows == 0:
            raise InputError(f"{self.path}: no records" + (" (only a header)" if self.kind == "csv" else ""))

    def read(self, accepted: Sequence[str] | None = None, *, allow_extra_columns: bool = False) -> pd.DataFrame:
        """The whole file (see :meth:`records` for ``accepted``)."""
        parts = list(self.records(accepted, allow_extra_columns=allow_extra_columns))
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)

    def records(
        self,
        accepted: Sequence[str] | None = None,
        *,
        allow_extra_columns: bool = False,
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[pd.DataFrame]:
        """The records in chunks; with ``accepted`` (the columns the reader takes), a column
        outside it is refused by name, or with ``allow_extra_columns`` dropped (see
        :attr:`dropped`)."""
        extra: list[str] | None = None
        for chunk in self.chunks(chunk_rows):
            if accepted is not None and extra is None:
                extra = unknown_columns([str(c) for c in chunk.columns], accepted)
                if extra and not allow_extra_columns:
                    raise InputError(
                        f"{self.path}: column {extra[0]!r} is not one the subscription takes"
                        + (f" (nor {extra[1:6]}{'...' if len(extra) > 6 else ''})" if len(extra) > 1 else "")
                        + f"; it takes {list(accepted)[:20]}; pass --allow-extra-columns to drop such columns",
                        column=extra[0],
                    )
                self.dropped = extra
            yield chunk.drop(columns=extra) if extra else chunk

    def count(self) -> int | None:
        """How many records, cheaply, for a progress bar (None when it would cost a read)."""
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            with contextlib.suppress(Exception):
                return int(pq.ParquetFile(self.path).metadata.num_rows)
            return None
        if self._compressed or self.kind == "json" or self.text_encoding not in ("utf-8", "utf-8-sig"):
            return None
        with self.path.open("rb") as fh:
            lines = sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 20), b""))
        return max(lines - (1 if self.kind == "csv" else 0), 0)

    def where(self, row: int) -> str:
        """Where record ``row`` (counted from 0 over the whole file) is: ``line N`` or ``row N``."""
        if self.kind == "csv":
            line = self._csv_line_of(row)
            return f"line {line}" if line is not None else f"row {row}"
        if self.kind == "jsonl" or (self.kind == "json" and len(self._lines)):
            return f"line {self._lines[row]}" if 0 <= row < len(self._lines) else f"record {row}"
        if self.kind == "json":
            return f"{self._json_rows}[{row}]" if self._json_rows == "values" else f"{self._json_rows} {row}"
        return f"row {row}"

    @contextlib.contextmanager
    def located(self, *, whole_file: bool = False) -> Iterator[None]:
        """Errors of whoever consumes the records, named by file and line (one line). Errors
        about no one record keep their text, or with ``whole_file`` (all of them are about this
        file: its columns, say) are prefixed with the file's name."""
        try:
            yield
        except InputError:
            raise
        except ValidationError as exc:
            if exc.row is None or isinstance(exc.row, bool) or not isinstance(exc.row, int):
                if whole_file:
                    raise InputError(f"{self.path}: {exc}", column=exc.column, value=exc.value) from None
                raise
            where = self.where(exc.row)
            raise InputError(f"{self.path}: {where}: {exc}", row=exc.row, column=exc.column, value=exc.value) from None

    # -- CSV ------------------------------------------------------------------------------------

    @property
    def _delimiter(self) -> str:
        return "\t" if ".tsv" in "".join(self.path.suffixes).lower() else ","

    def _csv_header(self) -> list[str]:
        with self._reading(), self._text() as fh:
            try:
                reader = csv.reader(fh, delimiter=self._delimiter)
                header = next((r for r in reader if r), None)
            except csv.Error as exc:
                raise InputError(f"{self.path}: line 1: not CSV ({exc})") from None
        if header is None:
            raise InputError(f"{self.path}: the file is empty (no header)")
        if any("\x00" in name for name in header):
            raise InputError(
                f"{self.path}: line 1: the header holds NUL characters (UTF-16 without a byte-order mark?); "
                "give the file's encoding with --encoding (e.g. --encoding utf-16-le)"
            )
        seen: dict[str, int] = {}
        for i, name in enumerate(header, start=1):
            if not name.strip():
                raise InputError(f"{self.path}: line 1: column {i} of the header has no name", column=str(i))
            if name in seen:
                raise InputError(
                    f"{self.path}: line 1: column {name!r} appears twice in the header (columns {seen[name]} and {i})",
                    column=name,
                )
            seen[name] = i
        return header

    def _csv_structure(self) -> None:
        """Every row has as many fields as the header (short rows too, unless allowed): a fast
        pass by Arrow's parser over one column; the location comes from the slow pass."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        header = self.columns
        bad: list[tuple[int, int]] = []

        def handler(row: Any) -> str:
            if self.allow_short_rows and row.actual_columns < row.expected_columns:
                return "skip"
            bad.append((row.expected_columns, row.actual_columns))
            return "error"

        enc = self.text_encoding
        try:
            stream = pa.input_stream(str(self.path), compression="detect")
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(
                    encoding="utf8" if enc in ("utf-8", "utf-8-sig") else enc, block_size=1 << 24
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=self._delimiter, newlines_in_values=True, invalid_row_handler=handler
                ),
                convert_options=pacsv.ConvertOptions(
                    include_columns=[header[0]], column_types={header[0]: pa.string()}, check_utf8=False
                ),
            )
            for _ in reader:
                pass
        except (pa.ArrowInvalid, pa.ArrowException, ValueError) as exc:
            if isinstance(exc, UnicodeError):
                raise
            raise self._csv_problem(str(exc)) from None

    def _csv_problem(self, fallback: str) -> InputError:
        """The first row that breaks the file's structure, by line (slow path, on error)."""
        header = self.columns
        try:
            with self._text() as fh:
                reader = csv.reader(fh, delimiter=self._delimiter)
                next(r for r in reader if r)
                line = reader.line_num
                for row in reader:
                    start, line = line + 1, reader.line_num
                    if not row:
                        continue  # a blank line: skipped, as the parsers do
                    if len(row) > len(header):
                        return InputError(
                            f"{self.path}: line {start}: {len(row)} fields, but the header names {len(header)} "
                            f"columns (extra value {_short(row[len(header)])})",
                            column=None,
                        )
                    if len(row) < len(header) and "\n" in row[-1] and next(reader, None) is None:
                        return InputError(
                            f"{self.path}: line {start}: a quoted field opens here and is never closed "
                            "(it runs to the end of the file)"
                        )
                    if len(row) < len(header) and not self.allow_short_rows:
                        return InputError(
                            f"{self.path}: line {start}: a short row ({len(row)} fields for {len(header)} columns; "
                            f"column {header[len(row)]!r} has no value); fill it in, or pass --allow-short-rows "
                            "to read missing trailing fields as empty",
                            column=header[len(row)],
                        )
        except csv.Error as exc:
            return InputError(f"{self.path}: line {reader.line_num}: not CSV ({exc})")
        except UnicodeError:
            return self._decode_error()
        return InputError(f"{self.path}: not CSV ({fallback.splitlines()[0] if fallback else 'unreadable'})")

    def _csv_line_of(self, row: int) -> int | None:
        try:
            with self._text() as fh:
                reader = csv.reader(fh, delimiter=self._delimiter)
                next(r for r in reader if r)
                line, k = reader.line_num, -1
                for record in reader:
                    start, line = line + 1, reader.line_num
                    if not record:
                        continue
                    k += 1
                    if k == row:
                        return start
        except (csv.Error, UnicodeError, StopIteration):
            return None
        return None

    def _csv_chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        self._csv_structure()
        try:
            reader = pd.read_csv(
                self.path,
                chunksize=chunk_rows,
                sep=self._delimiter,
                encoding=self.text_encoding,
                # only empty cells are missing: "n/a" in a numeric column must be reported, not guessed
                keep_default_na=False,
                na_values=[""],
                index_col=False,
            )
            with reader:
                yield from reader
        except pd.errors.EmptyDataError:
            raise InputError(f"{self.path}: the file is empty (no header)") from None
        except pd.errors.ParserError as exc:
            raise self._csv_problem(str(exc)) from None

    # -- JSON -----------------------------------------------------------------------------------

    def _jsonl_chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        keys: list[str] | None = None
        known: set[str] = set()
        records: list[dict[str, Any]] = []
        self._lines = array("q")
        with self._text() as fh:
            for number, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    record = _json_loads(text.rstrip("\r\n"))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{self.path}: line {number}, column {exc.colno}: not JSON ({exc.msg})") from None
                except ValueError as exc:  # the hooks' refusals: a repeated key, NaN or Infinity
                    raise InputError(f"{self.path}: line {number}: {exc}") from None
                if not isinstance(record, dict):
                    raise InputError(
                        f"{self.path}: line {number}: a JSON {type(record).__name__}, not an object of field values"
                    )
                if keys is None:
                    keys, known = list(record), set(record)
                elif record.keys() != known:
                    missing = [k for k in keys if k not in record]
                    extra = [k for k in record if k not in known]
                    if extra:
                        raise InputError(
                            f"{self.path}: line {number}: key {extra[0]!r} is not in the first record "
                            f"(line {self._lines[0]}); every record must have the same keys",
                            column=extra[0],
                        )
                    if not self.allow_short_rows:
                        raise InputError(
                            f"{self.path}: line {number}: key {missing[0]!r} is missing (a short record; write "
                            "null for a missing value, or pass --allow-short-rows)",
                            column=missing[0],
                        )
                records.append(record)
                self._lines.append(number)
                if len(records) >= chunk_rows:
                    yield pd.DataFrame.from_records(records, columns=keys)
                    records = []
        if records:
            yield pd.DataFrame.from_records(records, columns=keys)

    def _json_chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        with self._text() as fh:
            text = fh.read()
        try:
            data = _json_loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # one object per line: JSON lines under a .json name
                yield from self._jsonl_chunks(chunk_rows)
                return
            raise InputError(f"{self.path}: line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg})") from None
        except ValueError as exc:
            raise InputError(f"{self.path}: not JSON ({exc})") from None
        self._lines = array("q")
        if isinstance(data, Mapping) and "fields" in data and "values" in data:
            self._json_rows = "values"
            yield self._fields_values(data)
        elif (isinstance(data, Mapping) and "request" in data) or (
            isinstance(data, list) and data and isinstance(data[0], Mapping) and "request" in data[0]
        ):
            from openmart.mart.records import openscale_payload_frame

            self._json_rows = "record"
            try:
                yield openscale_payload_frame(data if isinstance(data, list) else [data])
            except ValidationError as exc:
                raise InputError(f"{self.path}: {exc}", row=exc.row, column=exc.column) from None
        elif isinstance(data, list):
            self._json_rows = "record"
            yield self._array_of_records(data)
        elif isinstance(data, Mapping):
            self._json_rows = "record"
            yield self._array_of_records([data])
        else:
            raise InputError(
                f"{self.path}: a JSON {type(data).__name__}; expected records: an array of objects, "
                'JSON lines, or OpenScale\'s {"fields": [...], "values": [[...], ...]}'
            )

    def _fields_values(self, data: Mapping[str, Any]) -> pd.DataFrame:
        fields, values = data["fields"], data["values"]
        if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
            raise InputError(f'{self.path}: "fields" must be a list of column names (got {_short(fields)})')
        seen: set[str] = set()
        for name in fields:
            if name in seen:
                raise InputError(f'{self.path}: "fields": column {name!r} appears twice', column=name)
            seen.add(name)
        if not isinstance(values, list):
            raise InputError(f'{self.path}: "values" must be a list of rows (got {_short(values)})')
        for i, row in enumerate(values):
            if not isinstance(row, list):
                raise InputError(f"{self.path}: values[{i}]: a row must be a list of values (got {_short(row)})", row=i)
            if len(row) > len(fields):
                raise InputError(
                    f"{self.path}: values[{i}]: {len(row)} values for {len(fields)} fields (extra value "
                    f"{_short(row[len(fields)])})",
                    row=i,
                )
            if len(row) < len(fields) and not self.allow_short_rows:
                raise InputError(
                    f"{self.path}: values[{i}]: a short row ({len(row)} values for {len(fields)} fields; field "
                    f"{fields[len(row)]!r} has no value); use null for a missing value, or pass --allow-short-rows",
                    row=i,
                    column=fields[len(row)],
                )
        rows = [r + [None] * (len(fields) - len(r)) for r in values] if self.allow_short_rows else values
        return pd.DataFrame(rows, columns=fields) if rows else pd.DataFrame(columns=fields)

    def _array_of_records(self, data: Sequence[Any]) -> pd.DataFrame:
        keys: list[str] | None = None
        for i, record in enumerate(data):
            if not isinstance(record, Mapping):
                raise InputError(
                    f"{self.path}: record {i}: a JSON {type(record).__name__}, not an object of field values", row=i
                )
            if keys is None:
                keys = list(record)
            elif record.keys() != set(keys):
                extra = [k for k in record if k not in keys]
                missing = [k for k in keys if k not in record]
                if extra:
                    raise InputError(
                        f"{self.path}: record {i}: key {extra[0]!r} is not in record 0; every record must have "
                        "the same keys",
                        row=i,
                        column=extra[0],
                    )
                if not self.allow_short_rows:
                    raise InputError(
                        f"{self.path}: record {i}: key {missing[0]!r} is missing (write null for a missing value, "
                        "or pass --allow-short-rows)",
                        row=i,
                        column=missing[0],
                    )
        return pd.DataFrame.from_records(list(data), columns=keys)

    # -- Parquet --------------------------------------------------------------------------------

    def _parquet(self) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(f"{self.path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None

    def _parquet_columns(self) -> list[str]:
        names = list(self._parquet().schema_arrow.names)
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise InputError(f"{self.path}: column {name!r} appears twice", column=name)
            seen.add(name)
        return names

    def _parquet_chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        import pyarrow as pa

        self._parquet_columns()
        rows = 0
        try:
            for batch in self._parquet().iter_batches(batch_size=chunk_rows):
                frame = batch.to_pandas()
                rows += len(frame)
                yield frame
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(
                f"{self.path}: row {rows} onwards cannot be read (a damaged or truncated Parquet file: "
                f"{str(exc).splitlines()[0]})",
                row=rows,
            ) from None


def unknown_columns(columns: Sequence[str], accepted: Sequence[str]) -> list[str]:
    allowed = set(accepted)
    return [c for c in columns if c not in allowed]
