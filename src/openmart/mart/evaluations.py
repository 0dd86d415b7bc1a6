"""The ``evaluations`` and ``measurements`` tables, and the lock that serialises a subscription's
evaluations, behind typed functions.

Every function takes the SQLAlchemy connection of the caller's transaction: the evaluation
runner (:mod:`openmart.evaluation.runner`) composes them, so an evaluation's results — its
measurements, its alerts, the feedback it scored and its final status — commit together.

The lock is a session-level PostgreSQL advisory lock, one per subscription (and mart schema): it
belongs to the connection that took it and vanishes with it, so an evaluation whose process died
leaves no lock behind — its row, still ``running``, is then *abandoned*, and whoever takes the
lock next marks it so (:func:`sweep_abandoned`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from openmart.errors import MartError, NotFound
from openmart.mart import models
from openmart.mart.engine import advisory_key
from openmart.mart.windows import Window


class EvaluationStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"  # the runner caught an error: error_type and error_message say which
    ABANDONED = "abandoned"  # its process ended (killed, lost its connection) before it finished


ABANDONED_REASON = "the process running it ended before it finished (its evaluation lock was released)"


@dataclass(frozen=True)
class EvaluationRecord:
    """One row of ``evaluations``."""

    id: int
    subscription_id: int
    status: EvaluationStatus
    window_start: datetime | None
    window_end: datetime | None
    records: int | None
    summary: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    error_type: str | None
    error_message: str | None
    backend_pid: int | None
    runner: str | None
    scored_feedback: int
    kind: str = "monitoring"
    target: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    chunking: dict[str, Any] | None = None

    @property
    def error(self) -> str | None:
        return f"{self.error_type}: {self.error_message}" if self.error_type else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": str(self.status),
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "records": self.records,
            "scored_feedback": self.scored_feedback,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "runner": self.runner,
            "backend_pid": self.backend_pid,
            "summary": self.summary,
            "kind": self.kind,
            "target": self.target,
            "baseline": self.baseline,
            "chunking": self.chunking,
        }


class MeasurementLike(Protocol):
    """What a measurement row is made from (``openmart.evaluation.results.Measurement``)."""

    monitor: str
    metric: str
    value: float | None
    threshold: float | None
    threshold_type: str | None
    breached: bool
    feature: str | None
    group: str | None
    details: dict[str, Any] | None


def _record(row: models.Evaluation) -> EvaluationRecord:
    return EvaluationRecord(
        id=row.id,
        subscription_id=row.subscription_id,
        status=EvaluationStatus(row.status),
        window_start=row.window_start,
        window_end=row.window_end,
        records=row.records,
        summary=dict(row.summary or {}),
        started_at=row.started_at,
        finished_at=row.finished_at,
        error_type=row.error_type,
        error_message=row.error_message,
        backend_pid=row.backend_pid,
        runner=row.runner,
        scored_feedback=row.scored_feedback,
        kind=row.kind,
        target=row.target,
        baseline=row.baseline,
        chunking=row.chunking,
    )


# -- the subscription's evaluation lock ------------------------------------------------------------


def lock_key(conn: Connection, subscription_id: int) -> int:
    """The advisory lock key of a subscription's evaluations: advisory locks are per database,
    so the mart's schema is part of it."""
    schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    return advisory_key(f"evaluation:{subscription_id}", str(schema))


def try_lock(conn: Connection, key: int) -> bool:
    """Take the lock on this connection's session now, or say it is held elsewhere."""
    return bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one())


def lock(conn: Connection, key: int) -> None:
    """Wait for the lock (held by the session until :func:`unlock` or the connection ends)."""
    conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})


def unlock(conn: Connection, key: int) -> None:
    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})


def lock_holder(conn: Connection, key: int) -> int | None:
    """The backend pid holding the lock, if any (from ``pg_locks``)."""
    return conn.execute(
        sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((classid::bigint << 32) | objid::bigint) = :k"
        ),
        {"k": key},
    ).scalar()


# -- evaluations -----------------------------------------------------------------------------------


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sweep_abandoned(conn: Connection, subscription_id: int) -> list[int]:
    """Mark the subscription's ``running`` evaluations abandoned. Only call it holding the
    subscription's lock: then no live process runs any of them."""
    done = conn.execute(
        sa.update(models.Evaluation)
        .where(
            models.Evaluation.subscription_id == subscription_id,
            models.Evaluation.status == EvaluationStatus.RUNNING,
        )
        .values(
            status=EvaluationStatus.ABANDONED,
            finished_at=sa.func.now(),
            error_type=sa.func.coalesce(models.Evaluation.error_type, "Abandoned"),
            error_message=sa.func.coalesce(models.Evaluation.error_message, ABANDONED_REASON),
        )
        .returning(models.Evaluation.id)
    )
    return sorted(done.scalars())


KINDS = ("monitoring", "comparison", "chunked")


def start(
    conn: Connection,
    subscription_id: int,
    *,
    window_start: datetime | None,
    window_end: datetime | None,
    kind: str = "monitoring",
    target: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    chunking: Mapping[str, Any] | None = None,
) -> int:
    """A new ``running`` evaluation, stamped with this connection's backend pid and this process.
    ``kind``: monitoring (the stream against the reference), comparison (two record sets, no
    alerts), chunked (a window cut into chunks); ``target``/``baseline``: the record sets."""
    assert kind in KINDS, kind
    return int(
        conn.execute(
            sa.insert(models.Evaluation)
            .values(
                subscription_id=subscription_id,
                window_start=window_start,
                window_end=window_end,
                kind=kind,
                target=dict(target) if target is not None else None,
                baseline=dict(baseline) if baseline is not None else None,
                chunking=dict(chunking) if chunking is not None else None,
                status=EvaluationStatus.RUNNING,
                backend_pid=sa.func.pg_backend_pid(),
                runner=runner_name(),
            )
            .returning(models.Evaluation.id)
        ).scalar_one()
    )


def finish(
    conn: Connection,
    evaluation_id: int,
    *,
    summary: Mapping[str, Any],
    records: int | None,
    scored_feedback: int,
) -> None:
    """The evaluation finished: its status, summary and counts (with its results, in the
    caller's transaction). Refuses when the row is no longer ``running`` (swept as abandoned)."""
    done = conn.execute(
        sa.update(models.Evaluation)
        .where(models.Evaluation.id == evaluation_id, models.Evaluation.status == EvaluationStatus.RUNNING)
        .values(
            status=EvaluationStatus.FINISHED,
            summary=dict(summary),
            records=records,
            scored_feedback=scored_feedback,
            finished_at=sa.func.now(),
        )
    )
    if done.rowcount != 1:
        raise MartError(f"evaluation {evaluation_id} is no longer running (it was marked abandoned meanwhile)")


def fail(
    conn: Connection,
    evaluation_id: int,
    *,
    error_type: str,
    error_message: str,
    summary: Mapping[str, Any] | None = None,
    records: int | None = None,
) -> bool:
    """Record that the evaluation failed and why; False when it had already ended (finished,
    or abandoned by a sweep) and was left as it was."""
    values: dict[str, Any] = {
        "status": EvaluationStatus.FAILED,
        "error_type": error_type[:128],
        "error_message": error_message,
        "finished_at": sa.func.now(),
        "scored_feedback": 0,
    }
    if summary is not None:
        values["summary"] = dict(summary)
    if records is not None:
        values["records"] = records
    done = conn.execute(
        sa.update(models.Evaluation)
        .where(models.Evaluation.id == evaluation_id, models.Evaluation.status == EvaluationStatus.RUNNING)
        .values(**values)
    )
    return done.rowcount == 1


def get(conn: Connection, evaluation_id: int) -> EvaluationRecord:
    row = sa.orm.Session(bind=conn).get(models.Evaluation, evaluation_id)
    if row is None:
        raise NotFound(f"no evaluation {evaluation_id}")
    return _record(row)


def running(conn: Connection, subscription_id: int) -> EvaluationRecord | None:
    """The subscription's newest ``running`` evaluation, if any."""
    row = (
        sa.orm.Session(bind=conn)
        .scalars(
            sa.select(models.Evaluation)
            .where(
                models.Evaluation.subscription_id == subscription_id,
                models.Evaluation.status == EvaluationStatus.RUNNING,
            )
            .order_by(models.Evaluation.id.desc())
            .limit(1)
        )
        .first()
    )
    return _record(row) if row is not None else None


def list_for(
    conn: Connection, subscription_id: int, *, status: EvaluationStatus | str | None = None, limit: int | None = None
) -> list[EvaluationRecord]:
    """The subscription's evaluations, newest first."""
    q = sa.select(models.Evaluation).where(models.Evaluation.subscription_id == subscription_id)
    if status is not None:
        q = q.where(models.Evaluation.status == str(EvaluationStatus(status)))
    q = q.order_by(models.Evaluation.id.desc())
    if limit is not None:
        q = q.limit(limit)
    return [_record(r) for r in sa.orm.Session(bind=conn).scalars(q)]


def merge_summary(conn: Connection, evaluation_id: int, extra: Mapping[str, Any]) -> None:
    """Add keys to a finished evaluation's summary (a comparison's two evaluations name each
    other this way: ``summary["comparison"]``)."""
    e = models.Evaluation
    conn.execute(
        sa.update(e)
        .where(e.id == evaluation_id)
        .values(summary=e.summary.op("||")(sa.cast(sa.literal(dict(extra), JSONB), JSONB)))
    )


def comparisons(conn: Connection, subscription_id: int, *, limit: int = 3) -> list[EvaluationRecord]:
    """The subscription's newest finished comparisons, newest first: their TARGET evaluations
    (the baseline side of a comparison, ``summary.comparison.role = baseline``, is left out)."""
    e = models.Evaluation
    role = e.summary["comparison"]["role"].astext
    q = (
        sa.select(e)
        .where(
            e.subscription_id == subscription_id,
            e.kind == "comparison",
            e.status == EvaluationStatus.FINISHED,
            sa.or_(role.is_(None), role != "baseline"),
        )
        .order_by(e.id.desc())
        .limit(limit)
    )
    return [_record(r) for r in sa.orm.Session(bind=conn).scalars(q)]


def count_window(conn: Connection, tables: Any, window: Window) -> int:
    """How many records the window holds (payload records, or a labelled set's rows)."""
    sql, params = window.payload_sql(window.table(tables), "1")
    return int(conn.exec_driver_sql(f"SELECT count(*) FROM ({sql}) w", params).scalar_one())


# -- measurements ----------------------------------------------------------------------------------


def add_measurements(
    conn: Connection, evaluation_id: int, subscription_id: int, measurements: Sequence[MeasurementLike]
) -> list[int]:
    """Insert the evaluation's measurements in one statement; their ids, in the given order."""
    if not measurements:
        return []
    rows = [
        {
            "evaluation_id": evaluation_id,
            "subscription_id": subscription_id,
            "monitor": m.monitor,
            "metric": m.metric,
            "value": m.value,
            "threshold": m.threshold,
            "threshold_type": m.threshold_type,
            "breached": bool(m.breached),
            "feature": m.feature,
            "group": m.group,
            "details": m.details,
            # a chunked evaluation's measurements say which chunk (docs/chunks.md); others have none
            "chunk": getattr(m, "chunk", None),
            "chunk_start": getattr(m, "chunk_start", None),
            "chunk_end": getattr(m, "chunk_end", None),
            "chunk_records": getattr(m, "chunk_records", None),
        }
        for m in measurements
    ]
    ids = conn.execute(
        sa.insert(models.Measurement).returning(models.Measurement.id, sort_by_parameter_order=True), rows
    ).scalars()
    return [int(i) for i in ids]


def measurements_frame(
    conn: Connection,
    subscription_id: int,
    *,
    metric: str | None = None,
    monitor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    evaluation_id: int | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The subscription's measurements (only this metric / monitor / evaluation, measured in
    [since, until), when given), oldest first; ``limit``: the newest that many of them. Without
    ``evaluation_id``, the monitored stream's history (chunked evaluations' with their chunk
    columns): a comparison's measurements are read through its evaluation."""
    m = models.Measurement
    q = sa.select(m).where(m.subscription_id == subscription_id)
    if evaluation_id is None:
        others = sa.select(models.Evaluation.id).where(
            models.Evaluation.subscription_id == subscription_id, models.Evaluation.kind == "comparison"
        )
        q = q.where(m.evaluation_id.not_in(others))
    if metric:
        q = q.where(m.metric == metric)
    if monitor:
        q = q.where(m.monitor == monitor)
    if since is not None:
        q = q.where(m.measured_at >= since)
    if until is not None:
        q = q.where(m.measured_at < until)
    if evaluation_id is not None:
        q = q.where(m.evaluation_id == evaluation_id)
    if limit is not None:
        newest = q.order_by(m.id.desc()).limit(limit).subquery()
        return pd.read_sql_query(sa.select(newest).order_by(newest.c.id), conn)
    return pd.read_sql_query(q.order_by(m.id), conn)
