"""The ``scoring_requests`` table: one row per scoring request capture saw, answered or not (the
performance monitor's input), and its aggregates over a window, computed in PostgreSQL.

Rows are written by the capture writer in the transaction that writes their payload records, so
a payload record never exists without its request; ``request_id`` is unique per subscription and
every insert is ``ON CONFLICT DO NOTHING``, so a batch replayed from the spool or the journal is
counted once. Every function takes the caller's connection (SQLAlchemy or DB-API).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa

from openmart.errors import ValidationError
from openmart.mart.windows import Window, driver, fetch_frame

SOURCES = ("proxy", "score", "rest", "openscale")
PERCENTILES = (0.5, 0.95, 0.99)
#: date_bin's origin: buckets start on whole minutes, hours and days (UTC)
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RequestRow:
    """One scoring request: when it was answered, the HTTP status its client got, the records it
    held (0 when it was not decoded: a failed request), its body sizes and latency in ms."""

    at: datetime
    status: int
    records: int = 0
    request_bytes: int | None = None
    response_bytes: int | None = None
    latency_ms: float | None = None
    source: str = "proxy"
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["at"] = self.at.isoformat()
        return out


_FIELDS = tuple(f.name for f in fields(RequestRow))
_ARROW = pa.schema(
    [
        ("at", pa.timestamp("us", tz="UTC")),
        ("status", pa.int16()),
        ("records", pa.int32()),
        ("request_bytes", pa.int32()),
        ("response_bytes", pa.int32()),
        ("latency_ms", pa.float64()),
        ("source", pa.string()),
        ("request_id", pa.string()),
    ]
)


# -- from callers ------------------------------------------------------------------------------


def _integer(value: Any, name: str, row: int, low: int, high: int, *, optional: bool) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if optional:
            return None
        raise ValidationError(f"request {row}: field {name!r} is required", row=row, column=name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise ValidationError(f"request {row}: field {name!r} must be an integer; got {value!r}", row=row, column=name)
    if not low <= int(value) <= high:
        raise ValidationError(
            f"request {row}: field {name!r} must be in [{low}, {high}]; got {value!r}", row=row, column=name
        )
    return int(value)


def _timestamp(value: Any, row: int) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ValidationError(f"request {row}: field 'at' is not a time: {value!r}", row=row, column="at") from None
    if stamp is pd.NaT:
        return datetime.now(UTC)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()


def row_from(data: RequestRow | Mapping[str, Any], row: int = 0, *, source: str | None = None) -> RequestRow:
    """A request row from a mapping (``at`` defaults to now, ``records`` to 0, ``source`` to
    ``source``), each field checked; ValidationError names the request and the field."""
    if isinstance(data, RequestRow):
        return data
    if not isinstance(data, Mapping):
        raise ValidationError(f"request {row}: expected a mapping of fields; got {type(data).__name__}", row=row)
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ValidationError(
            f"request {row}: unknown field {unknown[0]!r} (known: {', '.join(_FIELDS)})", row=row, column=unknown[0]
        )
    src = data.get("source") or source
    if src not in SOURCES:
        raise ValidationError(
            f"request {row}: field 'source' must be one of {', '.join(SOURCES)}; got {src!r}", row=row, column="source"
        )
    latency = data.get("latency_ms")
    if latency is not None:
        if isinstance(latency, bool) or not isinstance(latency, int | float) or not 0 <= latency < math.inf:
            raise ValidationError(
                f"request {row}: field 'latency_ms' must be a number >= 0; got {latency!r}",
                row=row,
                column="latency_ms",
            )
        latency = float(latency)
    rid = data.get("request_id")
    if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= 64 or not rid.isprintable()):
        raise ValidationError(
            f"request {row}: field 'request_id' must be 1 to 64 printable characters", row=row, column="request_id"
        )
    big = 2**31 - 1
    return RequestRow(
        at=_timestamp(data.get("at"), row),
        status=_integer(data.get("status"), "status", row, 100, 599, optional=False) or 0,
        records=_integer(data.get("records", 0), "records", row, 0, big, optional=False) or 0,
        request_bytes=_integer(data.get("request_bytes"), "request_bytes", row, 0, big, optional=True),
        response_bytes=_integer(data.get("response_bytes"), "response_bytes", row, 0, big, optional=True),
        latency_ms=latency,
        source=str(src),
        request_id=rid,
    )


def rows_from(data: Iterable[RequestRow | Mapping[str, Any]] | pd.DataFrame, *, source: str) -> list[RequestRow]:
    """Rows from mappings, RequestRows or a DataFrame (one column per field)."""
    if isinstance(data, pd.DataFrame):
        frame = data.astype(object).where(data.notna(), None)
        data = frame.to_dict(orient="records")
    if isinstance(data, Mapping):
        raise ValidationError("requests: expected a list of requests, not one mapping")
    return [row_from(d, i, source=source) for i, d in enumerate(data)]


# -- writing -----------------------------------------------------------------------------------

#: each column travels as one text parameter, its values joined by a unit separator (NULL: empty),
#: split server-side: one statement, and little client CPU (the capture writer shares the GIL with
#: the proxy's event loop; adapting a list of datetimes costs ~20 us a row, this ~2)
_SEP = "\x1f"
_COLUMNS = (
    ("us", "bigint"),
    ("status", "smallint"),
    ("records", "integer"),
    ("request_bytes", "integer"),
    ("response_bytes", "integer"),
    ("latency_ms", "double precision"),
    ("source", "text"),
    ("request_id", "text"),
)
_INSERT = (
    "INSERT INTO scoring_requests (subscription_id, at, status, records, request_bytes, response_bytes, latency_ms, "
    "source, request_id) SELECT %(sub)s, timestamptz 'epoch' + u.us * interval '1 microsecond', u.status, u.records, "
    "u.request_bytes, u.response_bytes, u.latency_ms, u.source, u.request_id FROM unnest("
    + ", ".join(f"string_to_array(%({name})s, E'\\x1f', '')::{kind}[]" for name, kind in _COLUMNS)
    + ") AS u("
    + ", ".join(name for name, _ in _COLUMNS)
    + ") ON CONFLICT (subscription_id, request_id) DO NOTHING"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _micros(at: datetime) -> int:
    """Microseconds since the epoch (a naive time is UTC, as the mart reads it)."""
    return ((at if at.tzinfo is not None else at.replace(tzinfo=UTC)) - _EPOCH) // _US


def _joined(values: Iterable[Any]) -> str:
    return _SEP.join("" if v is None else repr(v) if isinstance(v, float) else str(v) for v in values)


def insert(conn: Any, subscription_id: int, rows: Sequence[RequestRow]) -> int:
    """Store ``rows`` in one statement; a request id stored already is skipped. Returns how many
    rows were added."""
    if not rows:
        return 0
    params: dict[str, Any] = {
        "sub": subscription_id,
        "us": _SEP.join(str(_micros(r.at)) for r in rows),
        **{name: _joined(getattr(r, name) for r in rows) for name, _ in _COLUMNS[1:]},
    }
    with driver(conn).cursor() as cur:
        cur.execute(_INSERT, params)
        return int(cur.rowcount)


def to_arrow(rows: Sequence[RequestRow]) -> pa.Table:
    """Rows as an Arrow table (the spool keeps them so, beside their payload batch)."""
    return pa.table({name: [getattr(r, name) for r in rows] for name in _FIELDS}, schema=_ARROW)


def from_arrow(table: pa.Table) -> list[RequestRow]:
    return [
        RequestRow(**{**d, "at": d["at"].astimezone(UTC) if d["at"] is not None else datetime.now(UTC)})
        for d in table.to_pylist()
    ]


# -- reading -----------------------------------------------------------------------------------


def _window(subscription_id: int, window: Window) -> tuple[str, dict[str, Any]]:
    """The window's requests of one subscription (the newest ``last`` when set)."""
    where, params = ["subscription_id = %(r_sub)s"], {"r_sub": subscription_id}
    if window.since is not None:
        where.append("at >= %(r_since)s")
        params["r_since"] = window.since
    if window.until is not None:
        where.append("at < %(r_until)s")
        params["r_until"] = window.until
    sql = "SELECT * FROM scoring_requests WHERE " + " AND ".join(where)
    if window.last is not None:
        sql += " ORDER BY at DESC, id DESC LIMIT %(r_last)s"
        params["r_last"] = int(window.last)
    return sql, params


_OK = "status BETWEEN 200 AND 299"
_PCT = "ARRAY[" + ", ".join(str(p) for p in PERCENTILES) + "]"


def _aggregates(prefix: str = "") -> str:
    return (
        f"count(*) AS requests, count(*) FILTER (WHERE NOT ({_OK})) AS errors, "
        f"count(*) FILTER (WHERE {_OK}) AS answered, "
        f"coalesce(sum(records) FILTER (WHERE {_OK}), 0) AS records, "
        f"percentile_cont({_PCT}) WITHIN GROUP (ORDER BY latency_ms) AS latency_ms, "
        f"percentile_cont({_PCT}) WITHIN GROUP (ORDER BY latency_ms / records) "
        f"FILTER (WHERE {_OK} AND records > 0) AS latency_per_record_ms, "
        "avg(latency_ms) AS latency_mean_ms, max(latency_ms) AS latency_max_ms, "
        "avg(request_bytes) AS request_bytes_mean, avg(response_bytes) AS response_bytes_mean, "
        "max(request_bytes) AS request_bytes_max, max(response_bytes) AS response_bytes_max, "
        "sum(request_bytes) AS request_bytes_total, sum(response_bytes) AS response_bytes_total"
    )


@dataclass(frozen=True)
class Aggregate:
    """A window's requests in figures (latencies in ms, sizes in bytes); percentiles are
    PostgreSQL's ``percentile_cont`` (linear interpolation), None where no row has the value."""

    requests: int
    errors: int
    answered: int
    records: int
    first_at: datetime | None
    last_at: datetime | None
    latency_ms: tuple[float, float, float] | None
    latency_per_record_ms: tuple[float, float, float] | None
    latency_mean_ms: float | None
    latency_max_ms: float | None
    request_bytes_mean: float | None
    response_bytes_mean: float | None
    request_bytes_max: int | None
    response_bytes_max: int | None
    request_bytes_total: int | None
    response_bytes_total: int | None
    peak_requests_per_minute: int


def _floats(values: Any) -> tuple[float, float, float] | None:
    if values is None or any(v is None for v in values):
        return None
    return (float(values[0]), float(values[1]), float(values[2]))


def _opt(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)


def aggregate(conn: Any, subscription_id: int, window: Window) -> Aggregate:
    """The window's counts, percentiles and sizes, in one query."""
    sql, params = _window(subscription_id, window)
    query = (
        f"WITH w AS ({sql}), m AS (SELECT count(*) AS n FROM w GROUP BY date_bin('1 minute', at, %(r_origin)s)) "
        f"SELECT {_aggregates()}, min(at) AS first_at, max(at) AS last_at, "
        "(SELECT coalesce(max(n), 0) FROM m) AS peak FROM w"
    )
    with driver(conn).cursor() as cur:
        cur.execute(query, {**params, "r_origin": _ORIGIN})
        names = [d[0] for d in cur.description]
        r = dict(zip(names, cur.fetchone(), strict=True))
    return Aggregate(
        requests=int(r["requests"]),
        errors=int(r["errors"]),
        answered=int(r["answered"]),
        records=int(r["records"]),
        first_at=r["first_at"],
        last_at=r["last_at"],
        latency_ms=_floats(r["latency_ms"]),
        latency_per_record_ms=_floats(r["latency_per_record_ms"]),
        latency_mean_ms=_opt(r["latency_mean_ms"], float),
        latency_max_ms=_opt(r["latency_max_ms"], float),
        request_bytes_mean=_opt(r["request_bytes_mean"], float),
        response_bytes_mean=_opt(r["response_bytes_mean"], float),
        request_bytes_max=_opt(r["request_bytes_max"], int),
        response_bytes_max=_opt(r["response_bytes_max"], int),
        request_bytes_total=_opt(r["request_bytes_total"], int),
        response_bytes_total=_opt(r["response_bytes_total"], int),
        peak_requests_per_minute=int(r["peak"]),
    )


def series(conn: Any, subscription_id: int, window: Window, bucket: timedelta) -> pd.DataFrame:
    """Per time bucket (aligned on whole minutes/hours/days, UTC): requests, errors, records,
    latency percentiles (ms) and mean sizes (bytes), oldest bucket first; empty buckets are absent."""
    sql, params = _window(subscription_id, window)
    query = (
        f"WITH w AS ({sql}) SELECT date_bin(%(r_step)s, at, %(r_origin)s) AS bucket, {_aggregates()} "
        "FROM w GROUP BY 1 ORDER BY 1"
    )
    frame = fetch_frame(conn, query, {**params, "r_step": bucket, "r_origin": _ORIGIN})
    out = frame.drop(columns=["latency_ms", "latency_per_record_ms"])
    for name in ("latency_ms", "latency_per_record_ms"):
        base = name.removesuffix("_ms")
        for i, p in enumerate(PERCENTILES):
            out[f"{base}_p{round(p * 100)}_ms"] = [None if v is None else float(v[i]) for v in frame[name]]
    for name in out.columns:
        if name != "bucket" and out[name].dtype == object:
            out[name] = pd.to_numeric(out[name])
    return out
