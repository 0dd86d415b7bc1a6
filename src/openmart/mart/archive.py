"""The archive: whole UTC days of a record table moved to Parquet files, with a manifest
(``archive_segments``, migration 0011), so that every record is in exactly one place.

One day of one table is archived in three steps:

1. **begin**: its segment row is inserted as ``writing`` (or a ``writing`` row left by a run that
   died is taken over; a ``complete`` one means there is nothing to do);
2. **copy**: the day's rows are read page by page (keyset order, COPY through Arrow) into a
   Parquet file written under a temporary name, flushed to disk and renamed into place, so a file
   under its final name is whole;
3. **commit**: in ONE transaction the day's rows are deleted from the table, the number deleted is
   checked against the number written (a record that arrived for that day in between makes them
   differ: the transaction rolls back and the day is copied again), and the segment becomes
   ``complete`` with its rows, bytes and SHA-256.

A crash before 3 commits leaves the rows in the table and the segment ``writing``: readers take
the table's rows and ignore the file, and the next run writes the file again. A crash after leaves
the rows in the file only. Archive runs of one subscription are serialised by an advisory lock.
The hourly ``traffic`` counts keep the archived records (they were served): the delete trigger's
decrement is added back in the same transaction.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from openmart import faults
from openmart.aggregates.specs import Pieces, Spec, merge_all
from openmart.errors import ValidationError
from openmart.mart import models
from openmart.mart.identifiers import quote
from openmart.mart.windows import Relation, driver, fetch_arrow

#: per kind: the time column that places a record in a day, and the table's key (keyset paging)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "payload": ("scoring_timestamp", ("scoring_timestamp", "scoring_id")),
    "feedback": ("recorded_at", ("record_id",)),
}
PAGE_ROWS = 200_000  # rows per COPY page and Parquet row group: bounded memory per day
COMMIT_ATTEMPTS = 3
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Segment:
    id: int
    kind: str
    period_start: datetime
    period_end: datetime
    location: str
    rows: int | None
    bytes: int | None
    sha256: str | None
    status: str
    completed_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


@dataclass
class ArchiveReport:
    archived: list[Segment]
    skipped_days: int  # already complete
    rows: int


def _kind(kind: str) -> tuple[str, tuple[str, ...]]:
    if kind not in KINDS:
        raise ValidationError(f"archive kind {kind!r}: choose payload or feedback", value=kind)
    return KINDS[kind]


# -- the policy -----------------------------------------------------------------------------------


def set_policy(conn: Connection, subscription_id: int, days: int | None) -> None:
    """Archive whole UTC days older than ``days`` days (None: keep every record hot)."""
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        raise ValidationError(f"archive after {days!r} days: give a whole number of days >= 1", value=days)
    conn.execute(
        sa.update(models.Subscription).where(models.Subscription.id == subscription_id).values(archive_after_days=days)
    )


def policy(conn: Connection, subscription_id: int) -> int | None:
    q = sa.select(models.Subscription.archive_after_days).where(models.Subscription.id == subscription_id)
    return conn.execute(q).scalar_one_or_none()


# -- the manifest ---------------------------------------------------------------------------------


def _segment(row: Any) -> Segment:
    return Segment(
        row.id,
        row.kind,
        row.period_start,
        row.period_end,
        row.location,
        row.rows,
        row.bytes,
        row.sha256,
        row.status,
        row.completed_at,
    )


def segments(
    conn: Connection, subscription_id: int, kind: str | None = None, *, complete: bool = True
) -> list[Segment]:
    """The subscription's segments, oldest day first (only complete ones unless told)."""
    s = models.ArchiveSegment
    q = sa.select(s).where(s.subscription_id == subscription_id)
    if kind is not None:
        _kind(kind)
        q = q.where(s.kind == kind)
    if complete:
        q = q.where(s.status == "complete")
    return [_segment(r) for r in sa.orm.Session(bind=conn).scalars(q.order_by(s.kind, s.period_start))]


def files(conn: Connection, subscription_id: int, kind: str) -> list[str]:
    """The Parquet files holding the subscription's archived records of ``kind``."""
    return [seg.location for seg in segments(conn, subscription_id, kind)]


def pieces(conn: Connection, subscription_id: int, table: str, kind: str, specs: Sequence[Spec]) -> Pieces:
    """Pieces over every record of the table: its hot rows (PostgreSQL) merged with its archived
    days (DuckDB over the files). Both reads share one snapshot, so a day completing meanwhile is
    counted once. ``conn`` must not be inside a transaction yet."""
    from openmart.mart.engines import duckdb_engine, postgres

    with driver(conn).cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    hot = postgres.run(conn, Relation(f"SELECT * FROM {quote(table)}"), specs)
    archived = files(conn, subscription_id, kind)
    return merge_all([hot, duckdb_engine.run(archived, specs)], specs)


def _begin(conn: Connection, subscription_id: int, kind: str, day: datetime, location: str) -> int | None:
    """The segment's id, ``writing`` (new, or left by a run that died); None when it is complete."""
    s = models.ArchiveSegment.__table__
    stmt = (
        sa.dialects.postgresql.insert(s)
        .values(subscription_id=subscription_id, kind=kind, period_start=day, period_end=day + DAY, location=location)
        .on_conflict_do_update(
            constraint="uq_archive_segments_period",
            set_={"location": location},
            where=s.c.status == "writing",
        )
        .returning(s.c.id)
    )
    return conn.execute(stmt).scalar_one_or_none()


# -- copying a day --------------------------------------------------------------------------------


def closed_days(conn: Connection, table: str, kind: str, before: datetime) -> list[datetime]:
    """The UTC days that hold records of the table and end at or before ``before``."""
    column, _ = _kind(kind)
    c = quote(column)
    sql = (
        f"SELECT DISTINCT date_trunc('day', {c}, 'UTC') AS day FROM {quote(table)} "
        f"WHERE {c} < date_trunc('day', %(before)s::timestamptz, 'UTC') ORDER BY 1"
    )
    with driver(conn).cursor() as cur:
        cur.execute(sql, {"before": before})
        return [r[0] for r in cur.fetchall()]


_ARROW = {
    "double precision": pa.float64(),
    "real": pa.float64(),
    "bigint": pa.int64(),
    "integer": pa.int64(),
    "smallint": pa.int64(),
    "boolean": pa.bool_(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
}


def _types(conn: Connection, table: str) -> dict[str, pa.DataType]:
    """Each column's Arrow type (text, arrays and anything else as their text form)."""
    sql = (
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %(t)s ORDER BY ordinal_position"
    )
    with driver(conn).cursor() as cur:
        cur.execute(sql, {"t": table})
        return {name: _ARROW.get(dtype, pa.string()) for name, dtype in cur.fetchall()}


def _write_day(conn: Connection, table: str, kind: str, day: datetime, path: Path) -> tuple[int, int, str]:
    """The day's rows into a Parquet file at ``path`` (whole or absent): rows, bytes, SHA-256."""
    column, key = _kind(kind)
    types = _types(conn, table)
    schema = pa.schema([(name, t) for name, t in types.items()])
    cols = ", ".join(quote(c) for c in types)
    order = ", ".join(quote(k) for k in key)
    base = f"SELECT {cols} FROM {quote(table)} WHERE {quote(column)} >= %(lo)s AND {quote(column)} < %(hi)s"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rows, after = 0, None
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            while True:
                params: dict[str, Any] = {"lo": day, "hi": day + DAY, "n": PAGE_ROWS}
                where = ""
                if after is not None:
                    where = f" AND ({order}) > ({', '.join(f'%(k{i})s' for i in range(len(key)))})"
                    params.update({f"k{i}": v for i, v in enumerate(after)})
                page = fetch_arrow(conn, f"{base}{where} ORDER BY {order} LIMIT %(n)s", params, types)
                if page.num_rows == 0:
                    break
                page = page.select(list(types)).cast(schema)
                writer.write_table(page, row_group_size=PAGE_ROWS)
                rows += page.num_rows
                last = page.slice(page.num_rows - 1).to_pylist()[0]
                after = tuple(last[k] for k in key)
                if page.num_rows < PAGE_ROWS:
                    break
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return rows, path.stat().st_size, digest.hexdigest()


def _commit(
    conn: Connection, segment_id: int, table: str, kind: str, day: datetime, written: tuple[int, int, str]
) -> bool:
    """Delete the day's rows and complete the segment, if the rows deleted are the rows written."""
    column, _ = _kind(kind)
    c = quote(column)
    rows, size, sha = written
    with driver(conn).cursor() as cur:
        cur.execute("SELECT status FROM archive_segments WHERE id = %(id)s FOR UPDATE", {"id": segment_id})
        if cur.fetchone()[0] != "writing":
            return False
        # the hours of the rows deleted, to give back to traffic what its delete trigger takes away
        cur.execute(
            f"WITH gone AS (DELETE FROM {quote(table)} WHERE {c} >= %(lo)s AND {c} < %(hi)s RETURNING {c} AS t) "
            "SELECT date_trunc('hour', t, 'UTC'), count(*) FROM gone GROUP BY 1",
            {"lo": day, "hi": day + DAY},
        )
        hours = cur.fetchall()
        deleted = sum(n for _, n in hours)
        if deleted != rows:
            raise _Moved(deleted, rows)
        faults.point("archive:deleted")
        if kind == "payload" and hours:
            cur.execute(
                "UPDATE traffic AS t SET records = t.records + g.n FROM unnest(%(h)s::timestamptz[], %(n)s::bigint[]) "
                "AS g(hour, n) WHERE t.subscription_id = (SELECT id FROM subscriptions WHERE payload_table = %(tb)s) "
                "AND t.hour = g.hour",
                {"h": [h for h, _ in hours], "n": [n for _, n in hours], "tb": table},
            )
        cur.execute(
            "UPDATE archive_segments SET status = 'complete', rows = %(r)s, bytes = %(b)s, sha256 = %(s)s, "
            "completed_at = now() WHERE id = %(id)s",
            {"r": rows, "b": size, "s": sha, "id": segment_id},
        )
    return True


class _Moved(Exception):
    """Records of the day arrived or left between the copy and the delete: copy it again."""

    def __init__(self, deleted: int, written: int) -> None:
        super().__init__(f"{deleted} rows to delete, {written} written")


def _lock(conn: Connection, subscription_id: int) -> None:
    """One archive run per subscription at a time (session lock: held across the steps' transactions)."""
    with driver(conn).cursor() as cur:
        cur.execute(
            "SELECT pg_advisory_lock(hashtext(current_schema() || ':archive'), %(id)s)", {"id": subscription_id}
        )


def _unlock(conn: Connection, subscription_id: int) -> None:
    with driver(conn).cursor() as cur:
        cur.execute(
            "SELECT pg_advisory_unlock(hashtext(current_schema() || ':archive'), %(id)s)", {"id": subscription_id}
        )


def location(root: Path, schema: str, subscription: str, kind: str, day: datetime) -> Path:
    return root / schema / subscription / kind / f"{day.astimezone(UTC):%Y-%m-%d}.parquet"


def run(
    engine: Engine,
    schema: str,
    subscription_id: int,
    subscription: str,
    tables: dict[str, str],
    root: Path,
    before: datetime,
    *,
    kinds: Sequence[str] = ("payload", "feedback"),
    on_day: Callable[[str, datetime, int, int], object] | None = None,
) -> ArchiveReport:
    """Archive every closed day before ``before`` of the subscription's tables of ``kinds``."""
    report = ArchiveReport([], 0, 0)
    with engine.connect() as lock_conn:
        _lock(lock_conn, subscription_id)
        lock_conn.commit()
        try:
            for kind in kinds:
                table = tables[kind]
                with engine.connect() as conn:
                    days = closed_days(conn, table, kind, before)
                for i, day in enumerate(days):
                    if on_day is not None:
                        on_day(kind, day, i, len(days))
                    path = location(root, schema, subscription, kind, day)
                    segment = _archive_day(engine, subscription_id, table, kind, day, path)
                    if segment is None:
                        report.skipped_days += 1
                    else:
                        report.archived.append(segment)
                        report.rows += segment.rows or 0
        finally:
            _unlock(lock_conn, subscription_id)
            lock_conn.commit()
    return report


def _archive_day(
    engine: Engine, subscription_id: int, table: str, kind: str, day: datetime, path: Path
) -> Segment | None:
    with engine.begin() as conn:
        segment_id = _begin(conn, subscription_id, kind, day, str(path))
    if segment_id is None:
        return None
    for attempt in range(COMMIT_ATTEMPTS):
        with engine.connect() as conn:
            written = _write_day(conn, table, kind, day, path)
            conn.rollback()
        faults.point("archive:written")
        try:
            with engine.begin() as conn:
                if not _commit(conn, segment_id, table, kind, day, written):
                    return None
        except _Moved:
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            continue
        with engine.connect() as conn:
            s = models.ArchiveSegment
            row = sa.orm.Session(bind=conn).scalars(sa.select(s).where(s.id == segment_id)).one()
            return _segment(row)
    return None
