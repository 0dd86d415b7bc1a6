"""The mart's side of capture: its identity, set-aside records and capture events.

Every statement here runs on a DB-API connection the caller owns (and commits), so the capture
writer can put a batch, its set-aside records and an event in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2.extras
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from openmart.mart import models

SOURCE_EXCHANGE = "exchange"  # a raw request/response pair seen by the capture proxy
SOURCE_RECORD = "record"  # one record handed to capture from Python (``sub.score``)


@dataclass(frozen=True)
class SetAside:
    """One captured record (or exchange) the mart could not take as it was, and why."""

    scoring_id: str
    source: str
    reason: str
    request: bytes | None = None
    response: bytes | None = None
    record: bytes | None = None
    scoring_timestamp: datetime | None = None
    response_time: float | None = None
    id: int | None = None  # set once it is in the mart
    set_aside_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """For listings: sizes and a readable preview, never the whole raw bodies."""

        def preview(raw: bytes | None) -> str | None:
            if raw is None:
                return None
            text = raw[:200].decode("utf-8", "backslashreplace")
            return text + ("..." if len(raw) > 200 else "")

        return {
            "id": self.id,
            "scoring_id": self.scoring_id,
            "source": self.source,
            "reason": self.reason,
            "scoring_timestamp": self.scoring_timestamp.isoformat() if self.scoring_timestamp else None,
            "set_aside_at": self.set_aside_at.isoformat() if self.set_aside_at else None,
            "request": preview(self.request),
            "response": preview(self.response),
            "record": preview(self.record),
        }


def mart_id(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.select(models.MartIdentity.mart_id)).scalar_one())


_COLUMNS = (
    "subscription_id",
    "scoring_id",
    "source",
    "reason",
    "request",
    "response",
    "record",
    "scoring_timestamp",
    "response_time",
)


def _binary(value: bytes | None) -> Any:
    return psycopg2.Binary(value) if value is not None else None


def insert_set_aside(conn: Any, subscription_id: int, items: Sequence[SetAside]) -> int:
    """Keep ``items``; one already kept under its scoring id is not kept twice. Returns how many
    rows were added."""
    if not items:
        return 0
    rows = [
        (
            subscription_id,
            i.scoring_id,
            i.source,
            i.reason,
            _binary(i.request),
            _binary(i.response),
            _binary(i.record),
            i.scoring_timestamp,
            i.response_time,
        )
        for i in items
    ]
    with conn.cursor() as cur:
        result = psycopg2.extras.execute_values(
            cur,
            f"INSERT INTO capture_set_aside ({', '.join(_COLUMNS)}) VALUES %s "
            "ON CONFLICT (subscription_id, scoring_id) DO NOTHING RETURNING id",
            rows,
            fetch=True,
        )
    return len(result)


def read_set_aside(engine: Engine, subscription_id: int, *, limit: int | None = None) -> list[SetAside]:
    t = models.CaptureSetAside
    q = sa.select(t).where(t.subscription_id == subscription_id).order_by(t.id)
    if limit is not None:
        q = q.limit(limit)
    with sa.orm.Session(engine) as s:
        return [
            SetAside(
                r.scoring_id,
                r.source,
                r.reason,
                r.request,
                r.response,
                r.record,
                r.scoring_timestamp,
                r.response_time,
                r.id,
                r.set_aside_at,
            )
            for r in s.scalars(q)
        ]


def count_set_aside(engine: Engine, subscription_id: int) -> int:
    t = models.CaptureSetAside
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(t.subscription_id == subscription_id)).scalar_one())


def delete_set_aside(conn: Any, ids: Iterable[int]) -> None:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM capture_set_aside WHERE id = ANY(%s)", (list(ids),))


def update_reasons(conn: Any, reasons: dict[int, str]) -> None:
    if not reasons:
        return
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "UPDATE capture_set_aside AS s SET reason = v.reason FROM (VALUES %s) AS v(id, reason) WHERE s.id = v.id",
            list(reasons.items()),
        )


def insert_event(conn: Any, subscription_id: int, kind: str, counts: dict[str, Any], message: str) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO capture_events (subscription_id, kind, counts, message) VALUES (%s, %s, %s, %s)",
            (subscription_id, kind, json.dumps(counts), message),
        )


def read_events(engine: Engine, subscription_id: int) -> list[dict[str, Any]]:
    t = models.CaptureEvent
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.subscription_id == subscription_id).order_by(t.id)).mappings().all()
    return [{**dict(r), "at": r["at"].isoformat()} for r in rows]
