"""Model versions: the ``model_versions`` table, the subscription's current version, and the
stamping of records with their version as they are written (migration 0009).

A record's version is its ``asset_revision``. Records written without one get the subscription's
CURRENT version (``subscriptions.asset_revision``), read in the transaction that writes them: a
version started by another process (``openmart versions start``) applies to the next batch a
long-running proxy writes, with no restart. A version a record carries that the mart has not
seen (an endpoint that reports its model's revision, a user who logs ``asset_revision``) is
registered and becomes the current version: a new model version starts a new production set by
itself.

Stamping and starting are ordered by a per-subscription advisory lock (held shared by every
transaction that stamps records, exclusively by :func:`start`): a batch that read the old
version commits before the new version does, and a batch that reads after waits for it. So the
version of every record follows the order in which its batch and the start committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openmart.errors import NotFound, ValidationError
from openmart.mart import models
from openmart.mart.identifiers import quote

SOURCES = ("subscribe", "migration", "user", "records")
MAX_VERSION_LENGTH = 200


@dataclass(frozen=True)
class ModelVersion:
    version: str
    source: str
    started_at: datetime
    current: bool
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "source": self.source,
            "started_at": self.started_at.isoformat(),
            "current": self.current,
            "note": self.note,
        }


def check_version(value: Any, name: str = "version") -> str:
    """A version name: text, not empty, no control characters, at most 200 characters."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(f"{name} must be text (got {type(value).__name__})", column=name, value=value)
    text = str(value).strip()
    if not text or len(text) > MAX_VERSION_LENGTH or any(ord(ch) < 32 for ch in text):
        raise ValidationError(
            f"{name} {value!r}: give 1 to {MAX_VERSION_LENGTH} printable characters", column=name, value=value
        )
    return text


def _driver(conn: Any) -> Any:
    return conn.connection.driver_connection if isinstance(conn, Connection) else conn


def list_for(conn: Connection, subscription_id: int) -> list[ModelVersion]:
    """The subscription's versions, oldest first."""
    current = current_version(conn, subscription_id)
    rows = sa.orm.Session(bind=conn).scalars(
        sa.select(models.ModelVersion)
        .where(models.ModelVersion.subscription_id == subscription_id)
        .order_by(models.ModelVersion.started_at, models.ModelVersion.id)
    )
    return [ModelVersion(r.version, r.source, r.started_at, r.version == current, r.note) for r in rows]


def current_version(conn: Any, subscription_id: int) -> str | None:
    with _driver(conn).cursor() as cur:
        cur.execute("SELECT asset_revision FROM subscriptions WHERE id = %s", (subscription_id,))
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"no subscription with id {subscription_id}")
    return row[0]


def exists(conn: Any, subscription_id: int, version: str) -> bool:
    with _driver(conn).cursor() as cur:
        cur.execute(
            "SELECT 1 FROM model_versions WHERE subscription_id = %s AND version = %s", (subscription_id, version)
        )
        return cur.fetchone() is not None


def _version_lock(conn: Any, subscription_id: int, *, exclusive: bool) -> None:
    """The subscription's version lock, until the transaction ends. An advisory lock, not the
    subscription's row: capture must not wait for a long reference load that holds the row. Its
    key names the mart's schema (advisory locks are per database). Taken in a statement of its
    own, so the read that follows sees what committed while it waited."""
    take = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with _driver(conn).cursor() as cur:
        cur.execute(
            f"SELECT {take}(hashtextextended('openmart:version:' || current_schema() || ':' || %s, 0))",
            (str(subscription_id),),
        )


def register(conn: Any, subscription_id: int, version: str, source: str, note: str | None = None) -> bool:
    """Record the version (True when it is new; an existing one is left as it was)."""
    assert source in SOURCES, source
    with _driver(conn).cursor() as cur:
        cur.execute(
            "INSERT INTO model_versions (subscription_id, version, source, note) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (subscription_id, version) DO NOTHING RETURNING id",
            (subscription_id, version, source, note),
        )
        return cur.fetchone() is not None


def make_current(conn: Any, subscription_id: int, version: str) -> None:
    with _driver(conn).cursor() as cur:
        cur.execute("UPDATE subscriptions SET asset_revision = %s WHERE id = %s", (version, subscription_id))


def start(conn: Connection, subscription_id: int, version: Any, *, note: str | None = None) -> bool:
    """``version`` becomes the current version (registered if new; True when it was). Records
    written from now on without a version of their own belong to it."""
    name = check_version(version)
    # the version lock first, then the row (as stamping does): batches in flight commit first
    _version_lock(conn, subscription_id, exclusive=True)
    with _driver(conn).cursor() as cur:
        cur.execute("SELECT id FROM subscriptions WHERE id = %s FOR UPDATE", (subscription_id,))
        if cur.fetchone() is None:
            raise NotFound(f"no subscription with id {subscription_id}")
    new = register(conn, subscription_id, name, "user", note)
    make_current(conn, subscription_id, name)
    return new


def stamp(conn: Any, subscription_id: int, table: pa.Table) -> pa.Table:
    """The batch with every record's version: its own ``asset_revision``, else the current
    version. Versions the mart has not seen are registered; the last new one in the batch
    becomes the current version. In the caller's transaction (the one writing the batch), which
    holds the version lock shared until it ends."""
    _version_lock(conn, subscription_id, exclusive=False)
    current = current_version(conn, subscription_id)
    if "asset_revision" not in table.column_names:
        return table.append_column("asset_revision", pa.array([current] * table.num_rows, pa.string()))
    column = table.column("asset_revision")
    if column.null_count == 0 and current is not None and pc.all(pc.equal(column, current)).as_py():
        return table  # the usual case: every record of the current version
    given = [v for v in pc.unique(column.drop_null()).to_pylist() if v != current]
    newest = None
    for version in given:
        if register(conn, subscription_id, check_version(version, "asset_revision"), "records"):
            newest = version
    if newest is not None:
        make_current(conn, subscription_id, newest)
        current = newest
    if column.null_count:
        filled = pc.fill_null(column, pa.scalar(current, pa.string())) if current is not None else column
        table = table.set_column(table.schema.get_field_index("asset_revision"), "asset_revision", filled)
    return table


@dataclass(frozen=True)
class VersionCounts:
    """How many records a version has: production (payload, feedback) and labelled sets."""

    payload: int = 0
    feedback: int = 0
    training: int = 0
    validation: int = 0


def counts(conn: Any, payload_table: str, feedback_table: str, reference_table: str) -> dict[str | None, VersionCounts]:
    """Records per version in a subscription's three tables (one GROUP BY each)."""
    queries = (
        f"SELECT asset_revision, 'payload', count(*) FROM {quote(payload_table)} GROUP BY 1",
        f"SELECT asset_revision, 'feedback', count(*) FROM {quote(feedback_table)} GROUP BY 1",
        f"SELECT asset_revision, environment, count(*) FROM {quote(reference_table)} GROUP BY 1, 2",
    )
    found: dict[str | None, dict[str, int]] = {}
    with _driver(conn).cursor() as cur:
        for sql in queries:
            cur.execute(sql)
            for version, what, n in cur.fetchall():
                found.setdefault(version, {})[str(what)] = int(n)
    return {v: VersionCounts(**c) for v, c in found.items()}
