"""Cutting a record set into chunks (issue #17, docs/chunks.md): the chunking spec and the one
query that computes every chunk's bounds.

Three ways, as NannyML's chunkers:

* ``period`` (``1d``, ``6h``, ``1w``, ``15m``): calendar-aligned UTC buckets of
  ``scoring_timestamp`` (``date_bin`` from a Monday midnight, so ``1w`` buckets start on Mondays
  like ``date_trunc('week')``); only buckets that hold records are chunks.
* ``size`` (``size=500``): N records per chunk in record order; the incomplete last chunk is kept
  (NannyML's default, ``incomplete='keep'``).
* ``number`` (``number=10``): K chunks whose sizes differ by at most one (``ntile``). NannyML's
  ``CountBasedChunker`` instead cuts ``n // K`` records per chunk and keeps the remainder as a
  K+1-th chunk; ``ntile`` gives exactly the K chunks asked for.

Record order is ``(scoring_timestamp, scoring_id)`` for production records (a total order:
``scoring_id`` is unique) and ``record_id`` for a labelled set (which has no times, so it has no
period chunks). Each chunk becomes a :class:`~openmart.mart.windows.Window` bounded by keys
(``after_key`` < key <= ``until_key``): the monitors read a chunk like any other window, and the
chunks tile the window exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from openmart.errors import ValidationError
from openmart.mart.windows import Tables, Window, fetch_frame

BY = ("period", "size", "number")
_PERIOD = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: a Monday midnight UTC: week buckets start on Mondays (ISO weeks, as date_trunc('week'))
_ORIGIN = datetime.fromisoformat("2000-01-03T00:00:00+00:00")


@dataclass(frozen=True)
class Chunking:
    """How a window is cut: ``by`` period (``period`` such as ``1d``), size (``size`` records
    per chunk) or number (``number`` chunks)."""

    by: str
    period: str | None = None
    size: int | None = None
    number: int | None = None

    @classmethod
    def parse(cls, spec: Chunking | str | dict[str, Any]) -> Chunking:
        """``1d``, ``period=6h``, ``size=500``, ``number=10`` (or a :meth:`to_dict` mapping)."""
        if isinstance(spec, Chunking):
            return spec
        if isinstance(spec, dict):
            by = str(spec.get("by"))
            value = spec.get(by)
            return cls.parse(f"{by}={value}")
        text = str(spec).strip()
        name, sep, value = text.partition("=")
        if not sep:
            name, value = "period", text
        name, value = name.strip().lower(), value.strip()
        if name == "period":
            if not _PERIOD.match(value):
                raise ValidationError(
                    f"chunk by {text!r}: a period is a number and a unit m, h, d or w (15m, 6h, 1d, 1w)",
                    column="chunk_by",
                    value=text,
                )
            return cls("period", period=value.lower())
        if name in ("size", "number"):
            try:
                n = int(value)
            except ValueError:
                n = 0
            if n < 1:
                raise ValidationError(
                    f"chunk by {text!r}: {name} must be a whole number >= 1", column="chunk_by", value=text
                )
            return cls(name, size=n) if name == "size" else cls(name, number=n)
        raise ValidationError(
            f"chunk by {text!r}: write a period (1d, 6h, 1w), size=N or number=K", column="chunk_by", value=text
        )

    @property
    def interval(self) -> timedelta:
        m = _PERIOD.match(self.period or "")
        assert m, self.period
        return timedelta(**{_UNITS[m[2].lower()]: int(m[1])})

    def describe(self) -> str:
        if self.by == "period":
            return f"period {self.period}"
        return f"{self.size} records per chunk" if self.by == "size" else f"{self.number} chunks"

    def to_dict(self) -> dict[str, Any]:
        value = {"period": self.period, "size": self.size, "number": self.number}[self.by]
        return {"by": self.by, self.by: value}


@dataclass(frozen=True)
class ChunkBounds:
    """One chunk: its index, the keys of its first and last record, the scoring times it spans
    (a period chunk: its calendar bucket; a count chunk: its first and last record's times;
    None for a labelled set) and its record count."""

    index: int
    first_key: tuple[Any, ...]
    last_key: tuple[Any, ...]
    start: datetime | None
    end: datetime | None
    records: int


def boundaries(conn: Any, tables: Tables, window: Window, chunking: Chunking) -> list[ChunkBounds]:
    """The window's chunks, oldest first, computed in one query (window functions over the
    window's keys). A window with ``last`` is cut within its newest ``last`` records."""
    if chunking.by == "period" and window.labelled_set:
        raise ValidationError(
            f"a {window.environment} set has no scoring times: chunk it by size or number, not by period",
            column="chunk_by",
        )
    params: dict[str, Any]
    if window.labelled_set:
        inner, params = replace(window, last=None).payload_sql(tables.reference_table, "record_id AS k")
        order = "k"
        time_cols = "NULL::timestamptz AS t"
    else:
        inner, params = replace(window, last=None).payload_sql(
            tables.payload_table, "scoring_timestamp AS t, scoring_id AS k"
        )
        order = "t, k"
        time_cols = "t"
    rows = f"SELECT {time_cols}, k FROM ({inner}) r"
    if window.last is not None:
        desc = ", ".join(f"{c} DESC" for c in order.split(", "))
        rows = f"SELECT * FROM ({rows}) r ORDER BY {desc} LIMIT %(c_last)s"
        params["c_last"] = int(window.last)
    if chunking.by == "period":
        bucket = "date_bin(%(c_interval)s, t, %(c_origin)s)"
        params |= {"c_interval": chunking.interval, "c_origin": _ORIGIN}
        numbered = (
            f"SELECT t, k, dense_rank() OVER (ORDER BY {bucket}) - 1 AS chunk, {bucket} AS bucket FROM ({rows}) r"
        )
        span = "min(bucket) AS c_start, min(bucket) + %(c_interval)s AS c_end"
    else:
        if chunking.by == "size":
            expr = f"(row_number() OVER (ORDER BY {order}) - 1) / %(c_n)s"
            params["c_n"] = int(chunking.size or 1)
        else:
            expr = f"ntile(%(c_n)s) OVER (ORDER BY {order}) - 1"
            params["c_n"] = int(chunking.number or 1)
        numbered = f"SELECT t, k, {expr} AS chunk FROM ({rows}) r"
        span = "min(t) AS c_start, max(t) AS c_end"
    desc = ", ".join(f"{c} DESC" for c in order.split(", "))
    sql = (
        f"SELECT chunk, {span}, count(*) AS records, "
        f"(array_agg(t ORDER BY {order}))[1] AS first_t, (array_agg(k ORDER BY {order}))[1] AS first_k, "
        f"(array_agg(t ORDER BY {desc}))[1] AS last_t, (array_agg(k ORDER BY {desc}))[1] AS last_k "
        f"FROM ({numbered}) n GROUP BY chunk ORDER BY chunk"
    )
    frame = fetch_frame(conn, sql, params)
    out = []
    for row in frame.itertuples(index=False):
        first = (int(row.first_k),) if window.labelled_set else (row.first_t, str(row.first_k))
        last = (int(row.last_k),) if window.labelled_set else (row.last_t, str(row.last_k))
        out.append(
            ChunkBounds(
                int(row.chunk),
                first,
                last,
                None if window.labelled_set else row.c_start,
                None if window.labelled_set else row.c_end,
                int(row.records),
            )
        )
    return out


def floor_key(conn: Any, tables: Tables, window: Window) -> tuple[Any, ...] | None:
    """For a window with ``last``: the key of the newest record just outside it (the
    ``last + 1``-th newest), so its first chunk starts right after it; None when there is none."""
    if window.last is None:
        return None
    if window.labelled_set:
        inner, params = replace(window, last=None).payload_sql(tables.reference_table, "record_id AS k")
        sql = f"SELECT NULL AS t, k FROM ({inner}) r ORDER BY k DESC OFFSET %(c_last)s LIMIT 1"
    else:
        inner, params = replace(window, last=None).payload_sql(
            tables.payload_table, "scoring_timestamp AS t, scoring_id AS k"
        )
        sql = f"SELECT t, k FROM ({inner}) r ORDER BY t DESC, k DESC OFFSET %(c_last)s LIMIT 1"
    frame = fetch_frame(conn, sql, {**params, "c_last": int(window.last)})
    if frame.empty:
        return None
    row = frame.iloc[0]
    return (int(row["k"]),) if window.labelled_set else (row["t"], str(row["k"]))


def chunk_windows(window: Window, bounds: list[ChunkBounds], floor: tuple[Any, ...] | None = None) -> list[Window]:
    """Each chunk as a window: the parent's set (environment, version, time range, baseline)
    bounded by keys, after the previous chunk's last record (the first chunk: after ``floor``,
    see :func:`floor_key`) and up to its own last record. The parent's ``last`` is replaced by
    the keys, so each chunk holds exactly its records."""
    out = []
    for i, b in enumerate(bounds):
        after = bounds[i - 1].last_key if i else floor
        out.append(replace(window, last=None, after_key=after, until_key=b.last_key))
    return out
