"""Background payload capture: the caller never waits for the log write, and nothing accepted
is lost.

Captured records go on an in-memory queue; a writer thread takes them in batches, validates
them, and COPYs them into the payload table. When the database is away, the batch goes to the
durable :class:`~openmart.scoring.spool.Spool` instead, and the writer drains the spool into
the mart once the database answers again (idempotently, so exactly once).
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import psycopg2
import sqlalchemy as sa

from openmart.errors import OpenmartError, ValidationError
from openmart.mart.records import RecordKind, copy_into, prepare
from openmart.scoring.spool import Spool, insert_idempotent

if TYPE_CHECKING:
    from openmart.api import Subscription

log = logging.getLogger(__name__)
_DB_DOWN = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DBAPIError,
)


@dataclass(frozen=True)
class Exchange:
    """One request/response pair seen by the capture proxy, parsed later, off the hot path."""

    scoring_id: str
    timestamp: pd.Timestamp
    response_time_ms: float
    request: bytes
    response: bytes


#: turns raw exchanges into payload records (features, prediction, probability, scoring_id, ...)
ExchangeParser = Callable[[Sequence[Exchange]], pd.DataFrame]


@dataclass
class CaptureStats:
    accepted: int = 0
    stored: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)


def _raw(item: pd.DataFrame | Exchange) -> dict[str, Any]:
    """A captured item as JSON, exactly as it arrived (exchanges' bodies base64-encoded)."""
    if isinstance(item, Exchange):
        return {
            "scoring_id": item.scoring_id,
            "timestamp": item.timestamp.isoformat(),
            "response_time_ms": item.response_time_ms,
            "request_b64": base64.b64encode(item.request).decode(),
            "response_b64": base64.b64encode(item.response).decode(),
        }
    return {"records": json.loads(item.to_json(orient="records", date_format="iso"))}


class PayloadCapture:
    def __init__(
        self,
        sub: Subscription,
        *,
        spool_dir: Path | None = None,
        parser: ExchangeParser | None = None,
        max_batch: int = 2000,
        flush_interval: float = 0.1,
        retry_interval: float = 0.5,
    ) -> None:
        self._sub = sub
        self._engine = sub.mart.engine
        self._parser = parser
        self._queue: queue.Queue[pd.DataFrame | Exchange | None] = queue.Queue()
        self._max_batch = max_batch
        self._flush_interval = flush_interval
        self._retry_interval = retry_interval
        self.spool = Spool(spool_dir or sub.mart.settings.spool_dir)
        self.stats = CaptureStats()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name=f"openmart-capture-{sub.name}", daemon=True)
        self._thread.start()

    # -- producer side (hot path: no I/O) -------------------------------------------------------
    def submit(self, records: pd.DataFrame) -> None:
        """Queue payload records (they carry their scoring_id)."""
        self._enqueue(records, len(records))

    def submit_exchange(self, exchange: Exchange) -> None:
        self._enqueue(exchange, 1)

    def submit_durable(self, exchange: Exchange) -> concurrent.futures.Future[None]:
        """Durable mode: the returned future resolves once the exchange is on disk (fsync'd,
        group-committed with its neighbours), so the answer may go back. Never raises: when the
        disk refuses, the exchange is kept like any other and the future still resolves."""
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.submit_exchange(exchange)
        fut.set_result(None)
        return fut

    def note_failure(self, kind: str) -> None:
        """A request the deployment did not answer (``refused``, ``timeout``, ``upstream_5xx``,
        ``bad_response``): counted and reported, never stored as payload."""
        self.stats.failures[kind] = self.stats.failures.get(kind, 0) + 1

    @property
    def accepting(self) -> bool:
        """False when the operator asked to refuse traffic (503) while capture cannot keep what
        it answers (mart and spool both failing)."""
        return True

    def health(self) -> dict[str, Any]:
        """What the proxy's health endpoint shows: status ``ok`` or ``degraded`` and the counts."""
        st = self.stats
        return {
            "status": "ok",
            "answered": st.accepted,
            "stored": st.stored,
            "spooled": st.spooled,
            "set_aside": st.rejected,
            "dropped": 0,
            "failures": dict(st.failures),
        }

    def _enqueue(self, item: pd.DataFrame | Exchange, n: int) -> None:
        with self._idle:
            self._pending += 1
        self.stats.accepted += n
        self._queue.put(item)

    # -- control ---------------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued is stored or spooled; True when it was."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def drain_spool(self) -> int:
        """Write spooled batches now; returns how many records were stored."""
        stored = self.spool.drain(self._sub.name, self._engine.raw_connection, self._sub.payload.table)
        self.stats.replayed += stored
        return stored

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)

    # -- writer thread ---------------------------------------------------------------------------
    def _take_batch(self) -> tuple[list[pd.DataFrame | Exchange], bool]:
        items: list[pd.DataFrame | Exchange] = []
        try:
            first = self._queue.get(timeout=self._retry_interval)
        except queue.Empty:
            return items, False
        if first is None:
            return items, True
        items.append(first)
        deadline = time.monotonic() + self._flush_interval
        while len(items) < self._max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=max(left, 0)) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return items, True
            items.append(item)
        return items, False

    def _run(self) -> None:
        last_drain = 0.0
        stop = False
        while not stop:
            items, stop = self._take_batch()
            if items:
                self._write(items)
                with self._idle:
                    self._pending -= len(items)
                    self._idle.notify_all()
            if time.monotonic() - last_drain > self._retry_interval and self.spool.files(self._sub.name):
                last_drain = time.monotonic()
                try:
                    self.drain_spool()
                except _DB_DOWN:
                    pass  # still away; try again later
                except Exception as exc:  # keep the writer alive whatever happens
                    log.exception("draining the spool failed")
                    self.stats.errors.append(str(exc))

    def _frame(self, items: list[pd.DataFrame | Exchange]) -> pd.DataFrame:
        frames = [i for i in items if isinstance(i, pd.DataFrame)]
        exchanges = [i for i in items if isinstance(i, Exchange)]
        if exchanges:
            if self._parser is None:
                raise OpenmartError("raw exchanges captured, but no parser was given")
            frames.append(self._parser(exchanges))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _write(self, items: list[pd.DataFrame | Exchange]) -> None:
        try:
            frame = self._frame(items)
            arrow, _ = prepare(RecordKind.PAYLOAD, frame, self._sub.schema)
        except (ValidationError, OpenmartError, ValueError, KeyError) as exc:
            # the deployment's own answer did not fit the schema: keep the raw items, say why
            self.stats.rejected += len(items)
            self.stats.errors.append(str(exc))
            path = self.spool.reject(self._sub.name, [_raw(i) for i in items], str(exc))
            log.error("captured payload rejected (kept in %s): %s", path, exc)
            return
        try:
            conn = self._engine.raw_connection()
        except _DB_DOWN:
            self._to_spool(arrow)
            return
        try:
            if self.spool.files(self._sub.name):
                # while a spool is pending, a replayed batch may overlap: insert idempotently
                insert_idempotent(conn, self._sub.payload.table, arrow)
            else:
                copy_into(conn, self._sub.payload.table, arrow, RecordKind.PAYLOAD)
            conn.commit()
            self.stats.stored += arrow.num_rows
        except _DB_DOWN:
            self._to_spool(arrow)
        except ValidationError as exc:
            # a duplicate scoring id (e.g. a client retried with the same id): store the rest once
            try:
                conn.rollback()
                self.stats.stored += insert_idempotent(conn, self._sub.payload.table, arrow)
                conn.commit()
            except _DB_DOWN:
                self._to_spool(arrow)
            except Exception:
                self.stats.errors.append(str(exc))
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _to_spool(self, arrow: Any) -> None:
        self.spool.put(self._sub.name, arrow)
        self.stats.spooled += arrow.num_rows
