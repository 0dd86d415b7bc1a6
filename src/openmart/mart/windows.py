"""The window an evaluation looks at — a time range and/or the newest N records — as relations
the mart can scan, and the two fast ways of bringing rows of one out of PostgreSQL.

A :class:`Relation` is a query kept opaque to the layers above: monitors get one from
:func:`payload` or :func:`labelled` and hand it back to the aggregate functions of
:mod:`openmart.mart.stats`, so counting and binning happen in PostgreSQL and only aggregates
(or the few columns a metric needs) cross the wire. No SQL text leaves ``mart/``.

Functions that run a query take a connection: a SQLAlchemy ``Connection`` (its driver
connection is used, in the same transaction) or a psycopg2 connection.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy.engine import Connection

from openmart.errors import ValidationError
from openmart.mart.identifiers import quote


def driver(conn: Any) -> Any:
    """The psycopg2 connection under ``conn`` (itself when it is one already)."""
    return conn.connection.driver_connection if isinstance(conn, Connection) else conn


class Tables(Protocol):
    """A subscription's record tables (a ``SubscriptionRecord``, a ``SubscriptionContext``)."""

    @property
    def payload_table(self) -> str: ...
    @property
    def feedback_table(self) -> str: ...
    @property
    def reference_table(self) -> str: ...


PRODUCTION = "production"
LABELLED_SETS = ("training", "validation")


@dataclass(frozen=True)
class Window:
    """A record set: the records an evaluation measures (migration 0009's evaluation store).

    ``production`` (the default): payload records (and their feedback) by scoring time, of one
    model ``version`` (None: every version), the newest ``last`` when set. ``training`` and
    ``validation``: a labelled set of the reference table, of one version (no time range: the
    rows have none). ``baseline`` is the set drift compares with (None: the subscription's
    reference, whose profile is stored)."""

    since: datetime | None = None
    until: datetime | None = None
    last: int | None = None
    environment: str = PRODUCTION
    version: str | None = None
    baseline: Window | None = None
    #: a chunk's bounds on the record order (docs/chunks.md): rows whose key is > ``after_key``
    #: and <= ``until_key``. The key is ``(scoring_timestamp, scoring_id)`` for production and
    #: ``(record_id,)`` for a labelled set; None: unbounded on that side.
    after_key: tuple[Any, ...] | None = None
    until_key: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.environment not in (PRODUCTION, *LABELLED_SETS):
            raise ValidationError(
                f"environment {self.environment!r}: choose production, training or validation", value=self.environment
            )
        if self.labelled_set and (self.since is not None or self.until is not None):
            raise ValidationError(
                f"a {self.environment} set has no scoring times: give its version, not since/until",
                column="since",
            )

    @property
    def labelled_set(self) -> bool:
        """A training or validation set (rows of the reference table), not production traffic."""
        return self.environment != PRODUCTION

    def describe(self) -> str:
        """``production v2 2026-11-01..2026-11-08`` and the like, for messages and reports."""
        parts = [self.environment, f"v{self.version}" if self.version is not None else "all versions"]
        if self.since is not None or self.until is not None:
            a = self.since.isoformat(timespec="seconds") if self.since else "…"
            b = self.until.isoformat(timespec="seconds") if self.until else "…"
            parts.append(f"{a}..{b}")
        if self.last is not None:
            parts.append(f"last {self.last}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "last": self.last,
        }
        if self.environment != PRODUCTION or self.version is not None:
            out["environment"] = self.environment
            out["version"] = self.version
        if self.baseline is not None:
            out["baseline"] = self.baseline.to_dict()
        for name in ("after_key", "until_key"):
            key = getattr(self, name)
            if key is not None:
                out[name] = [v.isoformat() if isinstance(v, datetime) else v for v in key]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Window:
        def when(v: Any) -> datetime | None:
            return datetime.fromisoformat(v) if isinstance(v, str) else v

        base = data.get("baseline")
        return cls(
            since=when(data.get("since")),
            until=when(data.get("until")),
            last=data.get("last"),
            environment=data.get("environment") or PRODUCTION,
            version=data.get("version"),
            baseline=cls.from_dict(base) if base else None,
            after_key=_key(data.get("after_key")),
            until_key=_key(data.get("until_key")),
        )

    def table(self, tables: Tables | str) -> str:
        """The table the set's records are in. A plain table name (a payload table: the form
        plug-ins written before record sets use) serves production windows only."""
        if isinstance(tables, str):
            if self.labelled_set:
                raise ValidationError(
                    f"a {self.environment} set is read from the reference table: pass the subscription's context"
                )
            return tables
        return tables.reference_table if self.labelled_set else tables.payload_table

    def _where(
        self, column: str, version_column: str = "asset_revision", key: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        where, params = [], {}
        where += self._key_bounds(key or column, params)
        if self.since is not None:
            where.append(f"{column} >= %(w_since)s")
            params["w_since"] = self.since
        if self.until is not None:
            where.append(f"{column} < %(w_until)s")
            params["w_until"] = self.until
        if self.version is not None:
            where.append(f"{version_column} = %(w_version)s")
            params["w_version"] = self.version
        return (" WHERE " + " AND ".join(where)) if where else "", params

    def _key_bounds(self, key: str, params: dict[str, Any]) -> list[str]:
        """Row-value comparisons on the record order: a chunk's rows (half-open: after, until]."""
        out = []
        for name, op, bound in (("after", ">", self.after_key), ("until", "<=", self.until_key)):
            if bound is None:
                continue
            names = [f"%(w_{name}_{i})s" for i in range(len(bound))]
            params.update({f"w_{name}_{i}": v for i, v in enumerate(bound)})
            out.append(f"({key}) {op} ({', '.join(names)})" if len(bound) > 1 else f"{key} {op} {names[0]}")
        return out

    def _set_sql(self, table: str, columns: str) -> tuple[str, dict[str, Any]]:
        where, params = self._where("record_id")
        cond = "environment = %(w_env)s"
        where = f"{where} AND {cond}" if where else f" WHERE {cond}"
        params["w_env"] = self.environment
        sql = f"SELECT {columns} FROM {quote(table)}{where}"
        if self.last is not None:
            sql += " ORDER BY record_id DESC LIMIT %(w_last)s"
            params["w_last"] = int(self.last)
        return sql, params

    def payload_sql(self, table: str, columns: str = "*") -> tuple[str, dict[str, Any]]:
        """The records in the window (the newest ``last`` of them when set): payload records of
        ``table``, or, for a labelled set, its rows of ``table`` (the reference table)."""
        if self.labelled_set:
            return self._set_sql(table, columns)
        where, params = self._where("scoring_timestamp", key="scoring_timestamp, scoring_id")
        sql = f"SELECT {columns} FROM {quote(table)}{where}"
        if self.last is not None:
            sql += " ORDER BY scoring_timestamp DESC LIMIT %(w_last)s"
            params["w_last"] = int(self.last)
        return sql, params

    def labelled_sql(self, feedback: str, payload: str, columns: str) -> tuple[str, dict[str, Any]]:
        """Feedback records in the window, each with its payload twin's columns when it has one
        (``p.``) — a feedback record falls in the window by its payload's scoring time, or by
        the time it was recorded when it stands alone; its version is its twin's, else its own."""
        where, params = self._where(
            "coalesce(p.scoring_timestamp, f.recorded_at)",
            "coalesce(p.asset_revision, f.asset_revision)",
            key="coalesce(p.scoring_timestamp, f.recorded_at), f.scoring_id",
        )
        sql = (
            f"SELECT {columns} FROM {quote(feedback)} f LEFT JOIN {quote(payload)} p "
            f"ON p.scoring_id = f.scoring_id{where}"
        )
        if self.last is not None:
            sql += " ORDER BY coalesce(p.scoring_timestamp, f.recorded_at) DESC LIMIT %(w_last)s"
            params["w_last"] = int(self.last)
        return sql, params


def _key(value: Any) -> tuple[Any, ...] | None:
    if value is None:
        return None
    return tuple(datetime.fromisoformat(v) if i == 0 and isinstance(v, str) else v for i, v in enumerate(value))


@dataclass(frozen=True)
class Relation:
    """Rows the mart can scan (a window of a record table, a sample of one): pass it back to
    :mod:`openmart.mart.stats`. ``temporary`` relations live on the connection that made them."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)
    temporary: bool = False

    def query(self, select: str, extra: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """``select`` over the relation's rows (aliased ``w``), with the parameters to run it."""
        return select.replace("{w}", f"({self.sql}) w"), {**self.params, **(extra or {})}


def payload(window: Window, tables: Tables | str) -> Relation:
    """The window's records, every column: payload records, or a labelled set's rows."""
    return Relation(*window.payload_sql(window.table(tables)))


def labelled(
    window: Window,
    tables: Tables | str,
    payload_table: str | None = None,
    *,
    joined: Sequence[str] = (),
    feedback: Sequence[str] = (),
    present: Sequence[str] = (),
) -> Relation:
    """The window's labelled records: feedback records (production), or a labelled set's rows.
    ``joined`` columns are taken from the payload twin when there is one, from the feedback
    record otherwise; ``feedback`` columns from the feedback record (the label). Each keeps its
    own name. Rows where a ``present`` column is NULL are left out. The older form
    ``labelled(window, feedback_table, payload_table, ...)`` serves production windows."""
    if isinstance(tables, str):
        if window.labelled_set or payload_table is None:
            raise ValidationError("labelled(): pass the subscription's context (or feedback and payload table names)")
        tables = _Named(payload_table=payload_table, feedback_table=tables, reference_table="")
    if window.labelled_set:
        names = list(dict.fromkeys([*joined, *feedback]))
        sql, params = window.payload_sql(tables.reference_table, ", ".join(quote(c) for c in names) or "record_id")
    else:
        cols = [f"coalesce(p.{quote(c)}, f.{quote(c)}) AS {quote(c)}" for c in joined]
        cols += [f"f.{quote(c)} AS {quote(c)}" for c in feedback if c not in joined]
        sql, params = window.labelled_sql(tables.feedback_table, tables.payload_table, ", ".join(cols) or "f.record_id")
    if present:
        sql = f"SELECT * FROM ({sql}) l WHERE " + " AND ".join(f"{quote(c)} IS NOT NULL" for c in present)
    return Relation(sql, params)


@dataclass(frozen=True)
class _Named:
    payload_table: str
    feedback_table: str
    reference_table: str


def reference_window(reference_version: str | None) -> Window:
    """THE reference as a record set: the training set of the reference version."""
    return Window(environment="training", version=reference_version)


def fetch_arrow(
    conn: Any, sql: str, params: Mapping[str, Any], types: Mapping[str, pa.DataType] | None = None
) -> pa.Table:
    """Run a query through ``COPY (...) TO STDOUT`` and parse it with Arrow's multi-threaded CSV
    reader: much faster than fetching a million tuples through the DB-API."""
    with driver(conn).cursor() as cur:
        query = cur.mogrify(sql, dict(params)).decode()
        buf = io.BytesIO()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)", buf)
    buf.seek(0)
    if buf.getbuffer().nbytes == 0:
        return pa.table({})
    convert = pacsv.ConvertOptions(
        column_types=dict(types or {}), strings_can_be_null=True, quoted_strings_can_be_null=False
    )
    return pacsv.read_csv(buf, convert_options=convert)


def fetch_frame(conn: Any, sql: str, params: Mapping[str, Any]) -> pd.DataFrame:
    with driver(conn).cursor() as cur:
        cur.execute(sql, dict(params))
        names = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=names)


def columns(
    conn: Any, relation: Relation, names: Sequence[str], types: Mapping[str, pa.DataType] | None = None
) -> pd.DataFrame:
    """Some columns of a relation's rows, fetched whole. With ``types`` (every column's Arrow type)
    through COPY and Arrow's CSV reader, several times faster on a million rows than the DB-API;
    arrays arrive as their text form (``{1,2}``)."""
    sql, params = relation.query(f"SELECT {', '.join('w.' + quote(c) for c in names)} FROM {{w}}")
    if types is None:
        return fetch_frame(conn, sql, params)
    table = fetch_arrow(conn, sql, params, {c: types[c] for c in names})
    if table.num_columns == 0:  # no rows: COPY wrote nothing, not even the header
        return pd.DataFrame(
            {c: pd.Series(dtype="float64" if pa.types.is_floating(types[c]) else "object") for c in names}
        )
    return table.to_pandas()


def newest_scoring_ids(conn: Any, window: Window, tables: Tables, n: int) -> list[str]:
    """The scoring ids of the window's newest ``n`` payload records (none for a labelled set)."""
    if window.labelled_set:
        return []
    sql, params = window.payload_sql(tables.payload_table, "scoring_id, scoring_timestamp")
    frame = fetch_frame(
        conn, f"SELECT scoring_id FROM ({sql}) w ORDER BY scoring_timestamp DESC LIMIT %(e_n)s", {**params, "e_n": n}
    )
    return [str(v) for v in frame["scoring_id"].tolist()]


def set_rows(
    conn: Any, window: Window, tables: Tables, columns: Sequence[str], limit: int | None = None
) -> pd.DataFrame:
    """Some columns of a record set's rows, in stored order (the first ``limit``): a labelled
    set's, or production records' (by scoring time)."""
    order = "w.record_id" if window.labelled_set else "w.scoring_timestamp, w.scoring_id"
    sql, params = window.payload_sql(window.table(tables))
    sql = f"SELECT {', '.join('w.' + quote(c) for c in columns)} FROM ({sql}) w ORDER BY {order}"
    if limit is not None:
        sql += " LIMIT %(r_limit)s"
        params["r_limit"] = int(limit)
    return fetch_frame(conn, sql, params)


def reference_rows(conn: Any, tables: Tables | str, columns: Sequence[str], limit: int | None = None) -> pd.DataFrame:
    """Rows of THE reference (some columns, the first ``limit`` stored): the training set of the
    reference version, as the mart says now. ``tables``: the subscription's context, or its
    reference table's name."""
    table = tables if isinstance(tables, str) else tables.reference_table
    with driver(conn).cursor() as cur:
        cur.execute("SELECT reference_version FROM subscriptions WHERE reference_table = %s", (table,))
        found = cur.fetchone()
    version = found[0] if found else None
    where = "environment = 'training' AND asset_revision IS NOT DISTINCT FROM %(r_version)s"
    sql = f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)} WHERE {where} ORDER BY record_id"
    params: dict[str, Any] = {"r_version": version}
    if limit is not None:
        sql += " LIMIT %(r_limit)s"
        params["r_limit"] = int(limit)
    return fetch_frame(conn, sql, params)
