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
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy.engine import Connection

from openmart.mart.identifiers import quote


def driver(conn: Any) -> Any:
    """The psycopg2 connection under ``conn`` (itself when it is one already)."""
    return conn.connection.driver_connection if isinstance(conn, Connection) else conn


@dataclass(frozen=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None
    last: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "last": self.last,
        }

    def _where(self, column: str) -> tuple[str, dict[str, Any]]:
        where, params = [], {}
        if self.since is not None:
            where.append(f"{column} >= %(w_since)s")
            params["w_since"] = self.since
        if self.until is not None:
            where.append(f"{column} < %(w_until)s")
            params["w_until"] = self.until
        return (" WHERE " + " AND ".join(where)) if where else "", params

    def payload_sql(self, table: str, columns: str = "*") -> tuple[str, dict[str, Any]]:
        """The payload records in the window (the newest ``last`` of them when set)."""
        where, params = self._where("scoring_timestamp")
        sql = f"SELECT {columns} FROM {quote(table)}{where}"
        if self.last is not None:
            sql += " ORDER BY scoring_timestamp DESC LIMIT %(w_last)s"
            params["w_last"] = int(self.last)
        return sql, params

    def labelled_sql(self, feedback: str, payload: str, columns: str) -> tuple[str, dict[str, Any]]:
        """Feedback records in the window, each with its payload twin's columns when it has one
        (``p.``) — a feedback record falls in the window by its payload's scoring time, or by
        the time it was recorded when it stands alone."""
        where, params = self._where("coalesce(p.scoring_timestamp, f.recorded_at)")
        sql = (
            f"SELECT {columns} FROM {quote(feedback)} f LEFT JOIN {quote(payload)} p "
            f"ON p.scoring_id = f.scoring_id{where}"
        )
        if self.last is not None:
            sql += " ORDER BY coalesce(p.scoring_timestamp, f.recorded_at) DESC LIMIT %(w_last)s"
            params["w_last"] = int(self.last)
        return sql, params


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


def payload(window: Window, table: str) -> Relation:
    """The window's payload records, every column."""
    return Relation(*window.payload_sql(table))


def labelled(
    window: Window,
    feedback_table: str,
    payload_table: str,
    *,
    joined: Sequence[str] = (),
    feedback: Sequence[str] = (),
    present: Sequence[str] = (),
) -> Relation:
    """The window's feedback records. ``joined`` columns are taken from the payload twin when
    there is one, from the feedback record otherwise; ``feedback`` columns from the feedback
    record (the label). Each keeps its own name. Rows where a ``present`` column is NULL are
    left out."""
    cols = [f"coalesce(p.{quote(c)}, f.{quote(c)}) AS {quote(c)}" for c in joined]
    cols += [f"f.{quote(c)} AS {quote(c)}" for c in feedback if c not in joined]
    sql, params = window.labelled_sql(feedback_table, payload_table, ", ".join(cols) or "f.record_id")
    if present:
        sql = f"SELECT * FROM ({sql}) l WHERE " + " AND ".join(f"{quote(c)} IS NOT NULL" for c in present)
    return Relation(sql, params)


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


def columns(conn: Any, relation: Relation, names: Sequence[str]) -> pd.DataFrame:
    """Some columns of a relation's rows, fetched whole (for small windows only)."""
    sql, params = relation.query(f"SELECT {', '.join('w.' + quote(c) for c in names)} FROM {{w}}")
    return fetch_frame(conn, sql, params)


def newest_scoring_ids(conn: Any, window: Window, payload_table: str, n: int) -> list[str]:
    """The scoring ids of the window's newest ``n`` payload records."""
    sql, params = window.payload_sql(payload_table, "scoring_id, scoring_timestamp")
    frame = fetch_frame(
        conn, f"SELECT scoring_id FROM ({sql}) w ORDER BY scoring_timestamp DESC LIMIT %(e_n)s", {**params, "e_n": n}
    )
    return [str(v) for v in frame["scoring_id"].tolist()]


def reference_rows(conn: Any, reference_table: str, columns: Sequence[str], limit: int | None = None) -> pd.DataFrame:
    """Rows of a reference table (some columns, the first ``limit`` stored)."""
    sql = f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(reference_table)} ORDER BY record_id"
    params: dict[str, Any] = {}
    if limit is not None:
        sql += " LIMIT %(r_limit)s"
        params["r_limit"] = int(limit)
    return fetch_frame(conn, sql, params)
