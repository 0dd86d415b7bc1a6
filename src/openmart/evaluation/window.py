"""The window an evaluation looks at, as SQL: a time range and/or the last N records.

Monitors build their aggregate queries over ``payload_window`` / ``labelled_window`` CTEs, so
counting and binning happen in PostgreSQL and only aggregates (or the few columns a metric
needs) cross the wire.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from openmart.mart.identifiers import quote


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


def fetch_arrow(
    raw_conn: Any, sql: str, params: dict[str, Any], types: dict[str, pa.DataType] | None = None
) -> pa.Table:
    """Run a query through ``COPY (...) TO STDOUT`` and parse it with Arrow's multi-threaded CSV
    reader: much faster than fetching a million tuples through the DB-API."""
    with raw_conn.cursor() as cur:
        query = cur.mogrify(sql, params).decode()
        buf = io.BytesIO()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)", buf)
    buf.seek(0)
    if buf.getbuffer().nbytes == 0:
        return pa.table({})
    convert = pacsv.ConvertOptions(column_types=types or {}, strings_can_be_null=True, quoted_strings_can_be_null=False)
    return pacsv.read_csv(buf, convert_options=convert)


def fetch_frame(raw_conn: Any, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    with raw_conn.cursor() as cur:
        cur.execute(sql, params)
        names = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=names)
