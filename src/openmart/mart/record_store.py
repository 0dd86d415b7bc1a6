"""A subscription's record tables (payload, feedback, reference), behind typed functions.

Each function takes the SQLAlchemy connection of the caller's transaction, so one user operation
composes them into one transaction: subscribing writes the row, the tables, the reference and its
profile together; replacing a reference swaps rows and profile together or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Connection

from openmart.errors import ValidationError
from openmart.mart import subscriptions, versions
from openmart.mart.identifiers import quote
from openmart.mart.records import Environment, RecordKind, accepted_columns, copy_into, prepare, select_sql, to_frame
from openmart.mart.records import environment as records_environment
from openmart.mart.subscriptions import SubscriptionRecord

TIME_COLUMN = {RecordKind.PAYLOAD: "scoring_timestamp", RecordKind.FEEDBACK: "recorded_at", RecordKind.REFERENCE: None}


class OnDuplicate(StrEnum):
    """What logging does with a record whose scoring id the table holds already."""

    REFUSE = "refuse"  # the whole input is refused, naming the record (the default: nothing doubles)
    REPLACE = "replace"  # the stored record is replaced by the new one (a corrected label)


def on_duplicate_mode(value: OnDuplicate | str) -> OnDuplicate:
    try:
        return OnDuplicate(value)
    except ValueError:
        raise ValidationError(
            f"on_duplicate {value!r}: choose {' or '.join(m.value for m in OnDuplicate)}", value=value
        ) from None


def driver(conn: Connection) -> Any:
    """The psycopg2 connection under ``conn``, in the same transaction (COPY needs it)."""
    return conn.connection.driver_connection


def log_batches(
    conn: Connection,
    record: SubscriptionRecord,
    kind: RecordKind,
    batches: Iterable[Any],
    *,
    on_duplicate: OnDuplicate | str = OnDuplicate.REFUSE,
    allow_extra_columns: bool = False,
    progress: Callable[[int], None] | None = None,
    labelled_set: tuple[Environment, str | None] | None = None,
    version: str | None = None,
) -> tuple[list[pa.Array | None], int]:
    """Validate and COPY each batch into the kind's table, in the caller's transaction (all of
    them or, on a bad record, none: the caller rolls back). Returns the batches' payload scoring
    ids and the row count. ``progress`` gets each batch's row count. A column the table has no
    place for is refused by name, or dropped with ``allow_extra_columns``. Payload and feedback
    records get their model version (:func:`openmart.mart.versions.stamp`): ``version`` is given
    to those without an ``asset_revision`` of their own; reference records the ``labelled_set``
    (environment, version) they belong to (default: training, current)."""
    mode = on_duplicate_mode(on_duplicate)
    if version is not None:
        if kind is RecordKind.REFERENCE:
            raise ValidationError("reference records belong to a labelled set: load them with environment and version")
        version = versions.check_version(version)
    table = record.table(kind)
    accepted = set(accepted_columns(kind, record.schema))
    raw = driver(conn)
    all_ids: list[pa.Array | None] = []
    rows = 0
    for data in batches:
        try:
            frame = to_frame(data, record.schema)
            extra = [c for c in frame.columns if c not in accepted]
            if extra and len(frame) and not allow_extra_columns:  # an empty batch is refused as empty
                raise ValidationError(
                    f"{kind} batch: column {str(extra[0])!r} is not one of the subscription's"
                    + (f" (also {[str(c) for c in extra[1:]]})" if len(extra) > 1 else "")
                    + "; drop it, or log with allow_extra_columns=True (--allow-extra-columns)",
                    column=str(extra[0]),
                )
            arrow, ids = prepare(kind, frame.drop(columns=extra) if extra else frame, record.schema)
            if kind is RecordKind.REFERENCE:
                target = labelled_set or (Environment.TRAINING, record.asset_revision)
                if target[1] is not None:
                    versions.register(raw, record.id, target[1], "user")
                arrow = _tag_set(arrow, target)
            else:
                if version is not None:
                    arrow = _with_version(kind, arrow, version)
                arrow = versions.stamp(raw, record.id, arrow)
            if mode is OnDuplicate.REPLACE and "scoring_id" in arrow.column_names:
                _delete_ids(raw, table, arrow.column("scoring_id"))
            copy_into(raw, table, arrow, kind)
        except ValidationError as exc:
            hint = ""
            if exc.column == "scoring_id" and "already stored" in str(exc) and mode is OnDuplicate.REFUSE:
                hint = " (to replace stored records: --replace, or on_duplicate='replace')"
            if (rows and exc.row is not None) or hint:  # name the record by its place in the whole input
                place = f" [record {rows + exc.row} of the input]" if rows and exc.row is not None else ""
                raise ValidationError(
                    f"{exc}{place}{hint}",
                    row=rows + exc.row if exc.row is not None else None,
                    column=exc.column,
                    value=exc.value,
                ) from exc
            raise
        all_ids.append(ids)
        rows += arrow.num_rows
        if progress:
            progress(arrow.num_rows)
    return all_ids, rows


def _with_version(kind: RecordKind, arrow: pa.Table, version: str) -> pa.Table:
    """Records without a version get ``version``; one that carries another is refused by name
    (two versions for one record is a mistake, not a choice to make silently)."""
    given = pa.array([version] * arrow.num_rows, pa.string())
    if "asset_revision" not in arrow.column_names:
        return arrow.append_column("asset_revision", given)
    column = arrow.column("asset_revision")
    other = pc.and_kleene(pc.is_valid(column), pc.not_equal(column, version))
    if pc.any(other).as_py():
        row = int(pc.index(other, True).as_py())
        raise ValidationError(
            f"{kind} record {row}, column 'asset_revision': it says version {column[row].as_py()!r}, "
            f"not the {version!r} the records are logged as",
            row=row,
            column="asset_revision",
            value=column[row].as_py(),
        )
    return arrow.set_column(
        arrow.schema.get_field_index("asset_revision"), "asset_revision", pc.coalesce(column, given)
    )


def _delete_ids(raw: Any, table: str, ids: pa.ChunkedArray) -> None:
    given = [i for i in ids.to_pylist() if i is not None]
    if given:
        with raw.cursor() as cur:
            cur.execute(f"DELETE FROM {quote(table)} WHERE scoring_id = ANY(%(ids)s)", {"ids": given})


def _tag_set(arrow: pa.Table, labelled_set: tuple[Environment, str | None]) -> pa.Table:
    env, version = labelled_set
    n = arrow.num_rows
    arrow = arrow.append_column("environment", pa.array([str(env)] * n, pa.string()))
    return arrow.append_column("asset_revision", pa.array([version] * n, pa.string()))


def set_filter(labelled_set: tuple[Environment | str, str | None]) -> tuple[str, dict[str, Any]]:
    """The WHERE condition selecting one labelled set of a reference table."""
    env, version = labelled_set
    return "environment = %(set_env)s AND asset_revision IS NOT DISTINCT FROM %(set_version)s", {
        "set_env": str(env),
        "set_version": version,
    }


def reference_set(record: SubscriptionRecord) -> tuple[Environment, str | None]:
    """THE reference: the training set of the reference version."""
    return Environment.TRAINING, record.reference_version


def replace_set(
    conn: Connection,
    record: SubscriptionRecord,
    frame: pd.DataFrame,
    profile_of: Callable[[pd.DataFrame], Mapping[str, Any]],
    *,
    environment: Environment | str = Environment.TRAINING,
    version: str | None = None,
    allow_extra_columns: bool = False,
) -> int:
    """One labelled set (``environment`` of ``version``, default: training of the current version)
    becomes ``frame``, in the caller's transaction: a refused row rolls back the whole swap and the
    old set stays as it was. A training set becomes THE reference (its profile ``profile_of(frame)``,
    made once the rows are accepted) when it is the current version's, the reference's own
    version's, or the subscription has no reference yet."""
    env = records_environment(environment)
    if env is Environment.PRODUCTION:
        raise ValidationError("production records are payload and feedback: log them, not as a labelled set")
    subscriptions.lock(conn, record.id)
    fresh = subscriptions.by_id(conn, record.id)  # the current version and reference as of this lock
    version = fresh.asset_revision if version is None else versions.check_version(version)
    where, params = set_filter((env, version))
    with driver(conn).cursor() as cur:
        # DELETE, not TRUNCATE: readers of the old set keep their snapshot until the swap commits
        cur.execute(f"DELETE FROM {quote(record.reference_table)} WHERE {where}", params)
    _, rows = log_batches(
        conn,
        fresh,
        RecordKind.REFERENCE,
        [frame],
        allow_extra_columns=allow_extra_columns,
        labelled_set=(env, version),
    )
    becomes_reference = env is Environment.TRAINING and (
        version in (fresh.asset_revision, fresh.reference_version) or fresh.reference_version is None
    )
    if becomes_reference:
        subscriptions.set_reference_profile(conn, record.id, profile_of(frame), version=version)
    return rows


def replace_reference(
    conn: Connection,
    record: SubscriptionRecord,
    frame: pd.DataFrame,
    profile_of: Callable[[pd.DataFrame], Mapping[str, Any]],
    *,
    allow_extra_columns: bool = False,
) -> int:
    """The current version's training set becomes ``frame`` (and THE reference): see :func:`replace_set`."""
    return replace_set(conn, record, frame, profile_of, allow_extra_columns=allow_extra_columns)


def use_reference(
    conn: Connection,
    record: SubscriptionRecord,
    version: str,
    profile_of: Callable[[pd.DataFrame], Mapping[str, Any]],
) -> int:
    """The training set of ``version`` becomes THE reference (its profile recomputed); its rows."""
    version = versions.check_version(version)
    subscriptions.lock(conn, record.id)
    frame = read(conn, record, RecordKind.REFERENCE, labelled_set=(Environment.TRAINING, version))
    if frame.empty:
        raise ValidationError(f"subscription {record.name!r} has no training set of version {version!r}")
    subscriptions.set_reference_profile(conn, record.id, profile_of(frame), version=version)
    return len(frame)


def labelled_sets(conn: Connection, record: SubscriptionRecord) -> list[tuple[str, str | None, int]]:
    """The labelled sets stored: (environment, version, records), by version then environment."""
    with driver(conn).cursor() as cur:
        cur.execute(
            f"SELECT environment, asset_revision, count(*) FROM {quote(record.reference_table)} "
            "GROUP BY 1, 2 ORDER BY 2, 1"
        )
        return [(str(e), v, int(n)) for e, v, n in cur.fetchall()]


def count_set(conn: Connection, record: SubscriptionRecord, labelled_set: tuple[Environment | str, str | None]) -> int:
    """How many records one labelled set holds."""
    where, params = set_filter(labelled_set)
    with driver(conn).cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {quote(record.reference_table)} WHERE {where}", params)
        return int(cur.fetchone()[0])


def count(conn: Connection, table: str) -> int:
    with driver(conn).cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {quote(table)}")
        return int(cur.fetchone()[0])


def count_ids(conn: Connection, table: str, scoring_ids: Iterable[Any]) -> int:
    """How many of these scoring ids the table holds (the truth, read from the mart)."""
    ids = [str(i) for i in scoring_ids]
    with driver(conn).cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {quote(table)} WHERE scoring_id = ANY(%(ids)s)", {"ids": ids})
        return int(cur.fetchone()[0])


def read(
    conn: Connection,
    record: SubscriptionRecord,
    kind: RecordKind,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
    newest_first: bool = False,
    labelled_set: tuple[Environment | str, str | None] | None = None,
) -> pd.DataFrame:
    """Records of one table as a DataFrame, oldest first (numeric features as numbers). Reference
    records are one labelled set's (default: THE reference), without the set's tag columns unless
    ``columns`` names them."""
    kind = RecordKind(kind)
    where = None
    if kind is RecordKind.REFERENCE:
        where = set_filter(labelled_set or reference_set(record))
        if columns is None:
            columns = ["record_id", *accepted_columns(kind, record.schema)]
    sql, params = select_sql(
        record.table(kind),
        time_column=TIME_COLUMN[kind],
        since=since,
        until=until,
        limit=limit,
        columns=columns,
        newest_first=newest_first,
        where=where,
    )
    with driver(conn).cursor() as cur:
        cur.execute(sql, params)
        names = [d[0] for d in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=names)
    for col in record.schema.numeric_features:
        if col in frame.columns:
            frame[col] = pd.to_numeric(frame[col])
    return frame


#: the order records are paged in: unique, so a cursor (the last row's values of these) is stable
PAGE_ORDER = {
    RecordKind.PAYLOAD: ("scoring_timestamp", "scoring_id"),
    RecordKind.FEEDBACK: ("record_id",),
    RecordKind.REFERENCE: ("record_id",),
}


def page(
    conn: Connection,
    record: SubscriptionRecord,
    kind: RecordKind,
    *,
    limit: int,
    after: Sequence[Any] | None = None,
    offset: int = 0,
) -> tuple[pd.DataFrame, int]:
    """One page of a record table in :data:`PAGE_ORDER`: the rows after the cursor ``after`` (the
    last row's values of the order's columns) or after ``offset`` rows, and the table's total."""
    order = PAGE_ORDER[RecordKind(kind)]
    table = quote(record.table(kind))
    cols = ", ".join(quote(c) for c in order)
    sql = f"SELECT * FROM {table}"
    params: dict[str, Any] = {"limit": int(limit), "offset": int(offset)}
    if after is not None:
        if len(after) != len(order):
            raise ValidationError(f"cursor: expected {len(order)} values, got {len(after)}", column="cursor")
        marks = ", ".join(f"%(after_{i})s" for i in range(len(order)))
        sql += f" WHERE ({cols}) > ({marks})"
        params.update({f"after_{i}": v for i, v in enumerate(after)})
    sql += f" ORDER BY {cols} LIMIT %(limit)s OFFSET %(offset)s"
    with driver(conn).cursor() as cur:
        cur.execute(sql, params)
        names = [d[0] for d in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=names)
        cur.execute(f"SELECT count(*) FROM {table}")
        total = int(cur.fetchone()[0])
    return frame, total


# -- DB-API level, for capture's writer thread and the spool (no SQLAlchemy on the hot path) ------


def in_transaction(connection_factory: Callable[[], Any], work: Callable[[Any], int]) -> int:
    """Run ``work`` on a fresh DB-API connection in one transaction: committed, or rolled back."""
    conn = connection_factory()
    try:
        done = work(conn)
        conn.commit()
        return done
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()


def insert_idempotent(conn: Any, table_name: str, table: pa.Table) -> int:
    """COPY into a temporary table, then insert what is not stored yet (by scoring_id)."""
    staging = f"_openmart_stage_{uuid.uuid4().hex[:12]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE {quote(staging)} (LIKE {quote(table_name)} INCLUDING DEFAULTS) ON COMMIT DROP")
    copy_into(conn, staging, table, RecordKind.PAYLOAD)
    cols = ", ".join(quote(c) for c in table.column_names)
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {quote(table_name)} ({cols}) SELECT {cols} FROM {quote(staging)} "
            "ON CONFLICT (scoring_id) DO NOTHING"
        )
        return cur.rowcount


def find(conn: Connection, table: str, scoring_id: str, columns: Sequence[str]) -> tuple[Any, ...] | None:
    """One record's ``columns`` by its scoring id, or None."""
    cols = ", ".join(quote(c) for c in columns)
    with driver(conn).cursor() as cur:
        cur.execute(f"SELECT {cols} FROM {quote(table)} WHERE scoring_id = %s", (scoring_id,))
        return cur.fetchone()
