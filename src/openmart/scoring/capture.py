"""Background payload capture: the caller never waits for the log write, and nothing answered
is lost.

Captured items (raw exchanges from the proxy, or scored DataFrames) go on an in-memory queue; a
writer thread takes them in batches and keeps every record in the first sink that takes it:

1. the mart (COPY, or an idempotent insert while older records may still be on their way);
2. the spool on disk, when the mart does not answer; drained into the mart when it does;
3. a bounded memory buffer, when the disk refuses too (read-only, full); retried every
   ``retry_interval``. Only past ``max_buffered`` records is anything dropped, and then it is
   counted, logged at error level, shown by :meth:`PayloadCapture.health` and written to the
   mart's ``capture_events`` once it answers.

Each batch's scoring requests (``scoring_requests``: answered or not, for the performance
monitor) go the same way in the same transaction or spool file as its records; a failed request
(no records) is queued on its own with :meth:`PayloadCapture.submit_request`.

A record that does not fit the schema (or an exchange that cannot be decoded) is set aside, on
its own, with its raw exchange and the reason, in ``capture_set_aside`` (or the spool's
``aside/`` folder while the mart is away); ``openmart capture replay`` stores it later.

The writer never dies: every failure is handled per batch and per record, and an unexpected
exception is logged and its batch kept like any other.

The one window: in the default mode an exchange sits in memory between its answer and the
writer taking it (about ``flush_interval``); a SIGKILL then loses it. ``durable=True`` closes
that window with the write-ahead :class:`~openmart.scoring.journal.Journal`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg2
import pyarrow as pa
import sqlalchemy as sa

from openmart.context import HasContext, SubscriptionContext, context_of
from openmart.errors import ValidationError
from openmart.mart import scoring_requests, versions
from openmart.mart.capture_store import SOURCE_RECORD, SetAside, insert_event, insert_set_aside
from openmart.mart.records import RecordKind, copy_into
from openmart.mart.scoring_requests import RequestRow
from openmart.scoring import journal
from openmart.scoring.intake import (
    Exchange,
    ExchangeDecoder,
    Intake,
    IntakeBuilder,
    Item,
    concat,
    exchange_aside,
    exchange_request,
)
from openmart.scoring.spool import insert_idempotent, spool_of

__all__ = ["CaptureStats", "Exchange", "PayloadCapture"]

log = logging.getLogger(__name__)
_DB_DOWN = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DBAPIError,
)


@dataclass
class CaptureStats:
    accepted: int = 0  # exchanges or records handed to capture (answered)
    stored: int = 0  # records in the mart (directly, or drained from the spool)
    spooled: int = 0  # records written to the spool (later drained: counted in stored too)
    set_aside: int = 0  # exchanges or records kept aside with a reason
    dropped: int = 0  # past the memory bound, with mart and disk both failing
    requests: int = 0  # scoring request rows handed to capture
    requests_stored: int = 0  # request rows in the mart (directly, or drained from the spool)
    requests_spooled: int = 0
    requests_dropped: int = 0  # past the memory bound, as records
    errors: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def note_error(self, message: str) -> None:
        self.errors.append(message)
        del self.errors[:-20]  # the newest few are enough for a health page


_Token = journal.Segment | None
_Queued = Item | Intake | RequestRow


class _Buffered:
    """What mart and disk both refused, kept in memory until one of them takes it."""

    __slots__ = ("table", "aside", "tokens", "requests")

    def __init__(
        self, table: pa.Table | None, aside: list[SetAside], tokens: list[_Token], requests: list[RequestRow]
    ) -> None:
        self.table, self.aside, self.tokens, self.requests = table, aside, tokens, requests

    @property
    def records(self) -> int:
        return (self.table.num_rows if self.table is not None else 0) + len(self.aside)


class PayloadCapture:
    def __init__(
        self,
        sub: SubscriptionContext | HasContext,
        *,
        spool_dir: Path | None = None,
        decoder: ExchangeDecoder | None = None,
        durable: bool = False,
        max_batch: int = 2000,
        flush_interval: float = 0.1,
        retry_interval: float = 0.5,
        max_buffered: int = 100_000,
    ) -> None:
        sub = context_of(sub)
        self._sub_id = sub.id
        self._sub_name = sub.name
        self._engine = sub.engine
        self._table = sub.payload_table
        self._intake = IntakeBuilder(sub.schema, decoder=decoder)
        self._queue: queue.SimpleQueue[tuple[_Queued, _Token] | None] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._flush_interval = flush_interval
        self._retry_interval = retry_interval
        self._max_buffered = max_buffered
        self.spool = spool_of(sub, spool_dir)
        folder = self.spool.folder
        self.stats = CaptureStats()
        self._buffer: collections.deque[_Buffered] = collections.deque()
        self._buffered = 0
        self._buffered_requests = 0
        self._unreported_drops = 0
        self._idle = threading.Condition()
        self._pending = 0
        self._closed = False
        self._journal_dir = folder / "journal"
        if decoder is not None:  # exchanges a durable proxy answered before it died
            for ex, segment in journal.recover(self._journal_dir):
                self._enqueue(ex, 1, segment)
        self.journal = journal.Journal(self._journal_dir, self._from_journal) if durable else None
        self._thread = threading.Thread(target=self._run, name=f"openmart-capture-{sub.name}", daemon=True)
        self._thread.start()

    # -- producer side (hot path: no I/O) -------------------------------------------------------
    def submit(self, records: pd.DataFrame) -> None:
        """Queue payload records (they carry their scoring_id)."""
        self._enqueue(records, len(records))

    def submit_exchange(self, exchange: Exchange) -> None:
        self._enqueue(exchange, 1)

    def submit_intake(self, intake: Intake) -> None:
        """Queue records validated already (``sub.score`` validates on the caller's thread)."""
        self._enqueue(intake, intake.rows + len(intake.set_aside))

    def submit_request(self, row: RequestRow) -> None:
        """Queue the request row of a request that produced no exchange (a failed one)."""
        with self._idle:
            self._pending += 1
        self.stats.requests += 1
        self._queue.put((row, None))

    def submit_durable(self, exchange: Exchange) -> concurrent.futures.Future[None]:
        """Durable mode: the returned future resolves once the exchange is on disk (fsync'd,
        group-committed with its neighbours), so the answer may go back. Never fails: when the
        disk refuses, the exchange is kept like any other and the future still resolves."""
        if self.journal is None:
            self.submit_exchange(exchange)
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            done.set_result(None)
            return done
        with self._idle:
            self._pending += 1  # counted now, so a flush() waits for the journal too
        return self.journal.append(exchange)

    def _from_journal(self, exchange: Exchange, segment: _Token) -> None:
        self.stats.accepted += 1
        self._queue.put((exchange, segment))

    def _enqueue(self, item: _Queued, n: int, token: _Token = None) -> None:
        with self._idle:
            self._pending += 1
        self.stats.accepted += n
        self._queue.put((item, token))

    def note_failure(self, kind: str) -> None:
        """A request the deployment did not answer (``refused``, ``timeout``, ``upstream_5xx``,
        ``bad_response``): counted and reported, never stored as payload."""
        self.stats.failures[kind] = self.stats.failures.get(kind, 0) + 1

    # -- state -----------------------------------------------------------------------------------
    @property
    def degraded(self) -> bool:
        """Capture cannot keep what it is given right now (mart and disk both refuse), or it
        dropped records the mart has not been told of yet."""
        return bool(self._buffer) or self._unreported_drops > 0

    @property
    def accepting(self) -> bool:
        """False while degraded: a proxy told to refuse traffic then answers 503."""
        return not self.degraded

    def health(self) -> dict[str, Any]:
        """What the proxy's health endpoint shows: status ``ok`` or ``degraded`` and the counts."""
        st = self.stats
        return {
            "status": "degraded" if self.degraded else "ok",
            "subscription": self._sub_name,
            "answered": st.accepted,
            "stored": st.stored,
            "spooled": st.spooled,
            "set_aside": st.set_aside,
            "buffered": self._buffered,
            "dropped": st.dropped,
            "durable": self.journal is not None,
            "failures": dict(st.failures),
            "requests": {
                "seen": st.requests,
                "stored": st.requests_stored,
                "spooled": st.requests_spooled,
                "dropped": st.requests_dropped,
            },
            "errors": list(st.errors[-5:]),
        }

    # -- control ---------------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued is stored, spooled, set aside or buffered; True when it was."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def drain_spool(self) -> int:
        """Write spooled batches and set-aside records now; returns how many records were stored."""
        before = self.spool.requests_stored
        try:
            stored = self.spool.drain(self._engine.raw_connection, self._table)
        finally:
            self.stats.requests_stored += self.spool.requests_stored - before
        self.spool.drain_aside(self._engine.raw_connection, self._sub_id)
        self.stats.stored += stored
        return stored

    def close(self, timeout: float = 30.0) -> None:
        """Keep everything given so far (mart, else spool), then stop the writer. What neither
        takes by then is counted as dropped and logged at error level."""
        if self._closed:
            return
        self._closed = True
        if self.journal is not None:
            self.journal.close()
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)
        self._retry_buffer()
        if self._buffer:
            lost = sum(b.records for b in self._buffer)
            self._drop_requests(sum(len(b.requests) for b in self._buffer), "capture stopped")
            self._drop(lost, "capture stopped while mart and spool both refused")
            self._buffer.clear()
            self._buffered = 0
            self._buffered_requests = 0

    # -- writer thread ---------------------------------------------------------------------------
    def _take_batch(self) -> tuple[list[tuple[_Queued, _Token]], bool]:
        items: list[tuple[_Queued, _Token]] = []
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
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return items, True
            items.append(item)
        return items, False

    def _run(self) -> None:
        last_retry = 0.0
        stop = False
        while not stop:
            items, stop = self._take_batch()
            if items:
                try:
                    self._process(items)
                except Exception as exc:  # never reached by design; the writer must survive anyway
                    log.exception("capture writer: unexpected failure")
                    self.stats.note_error(f"{type(exc).__name__}: {exc}")
                finally:
                    with self._idle:
                        self._pending -= len(items)
                        self._idle.notify_all()
            if time.monotonic() - last_retry > self._retry_interval:
                last_retry = time.monotonic()
                try:
                    self._housekeeping()
                except Exception as exc:
                    log.exception("capture writer: housekeeping failed")
                    self.stats.note_error(f"{type(exc).__name__}: {exc}")

    def _process(self, items: list[tuple[_Queued, _Token]]) -> None:
        tokens = [t for _, t in items]
        ready = [i for i, _ in items if isinstance(i, Intake)]
        requests = [i for i, _ in items if isinstance(i, RequestRow)]
        raw = [i for i, _ in items if not isinstance(i, Intake | RequestRow)]
        try:
            if raw:
                ready.append(self._intake.build(raw))
        except Exception as exc:  # a bug in decoding or validation: keep every item raw, say why
            log.exception("capture: building the batch failed")
            reason = f"internal error: {type(exc).__name__}: {exc}"
            undecoded = [exchange_request(i, 0) for i in raw if isinstance(i, Exchange)]
            ready.append(Intake(None, [_raw_aside(i, reason) for i in raw], undecoded))
        self.stats.requests += sum(len(r.requests) for r in ready)
        requests += [q for r in ready for q in r.requests]
        table = concat([r.table for r in ready if r.table is not None])
        self._keep(table, [a for r in ready for a in r.set_aside], tokens, requests)

    def _keep(
        self, table: pa.Table | None, aside: list[SetAside], tokens: list[_Token], requests: list[RequestRow]
    ) -> None:
        """Mart, else spool, else memory; ``tokens`` (journal segments) are released once kept."""
        if self._buffer:  # keep order: older buffered records go first
            self._retry_buffer()
        if table is None and not aside and not requests:
            self._release(tokens)
            return
        if not self._buffer and self._to_mart(table, aside, requests):
            self._release(tokens)
            return
        if not self._buffer and self._to_spool(table, aside, requests):
            self._release(tokens)
            return
        self._to_memory(_Buffered(table, aside, tokens, requests))

    def _to_mart(self, table: pa.Table | None, aside: list[SetAside], requests: list[RequestRow]) -> bool:
        try:
            conn = self._engine.raw_connection()
        except _DB_DOWN:
            return False
        drops = self._unreported_drops
        try:
            stored = self._store(conn, table) if table is not None else 0
            # in the payload's transaction: a record never exists without its request
            requests_added = scoring_requests.insert(conn, self._sub_id, requests) if requests else 0
            if aside:
                insert_set_aside(conn, self._sub_id, aside)
            if drops:
                self._report_drops(conn, drops)
            conn.commit()
        except _DB_DOWN:
            with contextlib.suppress(Exception):
                conn.rollback()
            return False
        except Exception as exc:  # refused by PostgreSQL itself: keep the batch on disk, say why
            with contextlib.suppress(Exception):
                conn.rollback()
            log.error("the mart refused a captured batch (kept in the spool): %s", exc)
            self.stats.note_error(str(exc))
            return False
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        self._unreported_drops -= drops
        self.stats.stored += stored
        self.stats.requests_stored += requests_added
        self.stats.set_aside += len(aside)
        return True

    def _store(self, conn: Any, table: pa.Table) -> int:
        # each record's model version: its own, else the current one, read in this transaction
        if not self.spool.files():
            try:
                copy_into(conn, self._table, versions.stamp(conn, self._sub_id, table), RecordKind.PAYLOAD)
                return table.num_rows
            except ValidationError:
                # a record stored already (a journal replayed after a crash, a client's retry):
                # store the rest, once
                conn.rollback()
        return insert_idempotent(conn, self._table, versions.stamp(conn, self._sub_id, table))

    def _to_spool(self, table: pa.Table | None, aside: list[SetAside], requests: list[RequestRow]) -> bool:
        try:
            if table is not None or requests:
                self.spool.put(table, requests)
            if aside:
                self.spool.put_aside(aside)
        except OSError as exc:
            # a batch written before the failure stays in the spool; the whole is buffered again
            # and the idempotent drain stores it once
            log.error("capture spool %s refused a batch: %s", self.spool.folder, exc)
            self.stats.note_error(f"spool: {exc}")
            return False
        self.stats.spooled += table.num_rows if table is not None else 0
        self.stats.requests_spooled += len(requests)
        self.stats.set_aside += len(aside)
        return True

    def _to_memory(self, entry: _Buffered) -> None:
        if len(entry.requests) > self._max_buffered - self._buffered_requests:
            # request rows have a bound of their own (as many as records): past it they are dropped
            # whole, counted; the entry's records are kept as usual
            self._drop_requests(len(entry.requests), "mart and spool both refuse, and the memory buffer is full")
            entry = _Buffered(entry.table, entry.aside, entry.tokens, [])
        room = self._max_buffered - self._buffered
        if entry.records > room:
            # keep what fits, drop the rest; the journal segments of a cut entry are never
            # released, so in durable mode the dropped exchanges stay on disk for the next start
            table = entry.table.slice(0, room) if entry.table is not None else None
            kept_rows = table.num_rows if table is not None else 0
            aside = entry.aside[: max(room - kept_rows, 0)]
            self._drop(
                entry.records - kept_rows - len(aside), "mart and spool both refuse, and the memory buffer is full"
            )
            entry = _Buffered(table if kept_rows else None, aside, [], entry.requests)
            if not entry.records and not entry.requests:
                return
        self._buffer.append(entry)
        self._buffered += entry.records
        self._buffered_requests += len(entry.requests)

    def _drop(self, n: int, why: str) -> None:
        self.stats.dropped += n
        self._unreported_drops += n
        log.error("capture for %r DROPPED %d records: %s", self._sub_name, n, why)

    def _drop_requests(self, n: int, why: str) -> None:
        if n:
            self.stats.requests_dropped += n
            log.error("capture for %r DROPPED %d scoring request rows: %s", self._sub_name, n, why)

    def _retry_buffer(self) -> None:
        while self._buffer:
            entry = self._buffer[0]
            kept = self._to_mart(entry.table, entry.aside, entry.requests) or self._to_spool(
                entry.table, entry.aside, entry.requests
            )
            if not kept:
                return
            self._buffer.popleft()
            self._buffered -= entry.records
            self._buffered_requests -= len(entry.requests)
            self._release(entry.tokens)

    @staticmethod
    def _release(tokens: Sequence[_Token]) -> None:
        for token in tokens:
            if token is not None:
                token.done()

    def _report_drops(self, conn: Any, n: int) -> None:
        """Write what was dropped to the mart, in the transaction that proves it answers again."""
        insert_event(
            conn,
            self._sub_id,
            "dropped",
            {
                "dropped": n,
                "answered": self.stats.accepted,
                "dropped_total": self.stats.dropped,
                "requests_dropped_total": self.stats.requests_dropped,
            },
            f"capture dropped {n} records while the mart and the spool both refused",
        )

    def _housekeeping(self) -> None:
        if self._buffer:
            self._retry_buffer()
        if self._unreported_drops and not self._buffer:
            self._to_mart(None, [], [])
        if self.spool.pending():
            with contextlib.suppress(*_DB_DOWN):  # still away: try again later
                self.drain_spool()


def _raw_aside(item: Item, reason: str) -> SetAside:
    """An item kept whole, as it arrived (the path for failures nothing else explains)."""
    if isinstance(item, Exchange):
        return exchange_aside(item, reason)
    record = item.to_json(orient="records", date_format="iso").encode()
    sid = str(item["scoring_id"].iloc[0]) if "scoring_id" in item.columns and len(item) else f"batch-{id(item)}"
    return SetAside(sid, SOURCE_RECORD, reason, record=record)
