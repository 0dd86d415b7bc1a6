"""A durable local spool for what capture could not hand to the mart right now.

A spool belongs to one subscription of one mart: its folder is
``<spool_dir>/<mart id>/subscription-<id>``, so two marts sharing a data directory, or a
subscription recreated under an old name, never see each other's files.

- ``*.arrow``: a validated batch the database could not take (unreachable, restarting), one
  Arrow IPC file each, written atomically (temporary name, fsync, rename, fsync of the folder).
- ``aside/*.jsonl``: records set aside (they did not fit) while the mart was away, with their
  raw exchange and reason; moved into the mart's ``capture_set_aside`` table when it answers.
- ``*.requests``: the scoring requests of a batch (Arrow IPC), written before the batch's
  ``.arrow`` under the same name and drained with it in one transaction; alone when the batch
  held only failed requests.

``drain`` writes spooled batches to the mart idempotently (a temporary table and ``INSERT ...
ON CONFLICT (scoring_id) DO NOTHING``, and ``ON CONFLICT (subscription_id, request_id)`` for its
requests), so a batch whose commit was cut off half-acknowledged, then replayed, is stored
exactly once.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.ipc as ipc

from openmart.context import HasContext, SubscriptionContext, context_of
from openmart.errors import ValidationError
from openmart.mart import scoring_requests, versions
from openmart.mart.capture_store import SetAside, insert_set_aside, mart_id
from openmart.mart.record_store import in_transaction, insert_idempotent
from openmart.mart.scoring_requests import RequestRow

log = logging.getLogger(__name__)


def spool_folder(spool_dir: Path, mart_id: str, subscription_id: int) -> Path:
    return spool_dir / mart_id / f"subscription-{subscription_id}"


def spool_of(subscription: SubscriptionContext | HasContext, spool_dir: Path | None = None) -> Spool:
    """The spool of ``sub`` (under ``spool_dir``, else the mart's settings), keyed by the mart's id."""
    sub = context_of(subscription)
    return Spool(spool_folder(spool_dir or sub.settings.spool_dir, mart_id(sub.engine), sub.id), sub.id)


@dataclass(frozen=True)
class SpoolStats:
    files: int
    records: int
    set_aside: int
    requests: int = 0


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself must survive a crash
    finally:
        os.close(fd)


def _write_atomically(final: Path, write: Callable[[Any], None]) -> Path:
    tmp = final.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise
    _fsync_dir(final.parent)
    return final


def _b64(raw: bytes | None) -> str | None:
    return base64.b64encode(raw).decode() if raw is not None else None


def _unb64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text is not None else None


def _write_table(final: Path, table: pa.Table) -> Path:
    def write(fh: Any) -> None:
        with ipc.new_file(fh, table.schema) as writer:
            writer.write_table(table)

    return _write_atomically(final, write)


def _read_table(path: Path) -> pa.Table:
    with ipc.open_file(path) as reader:
        return reader.read_all()


class Spool:
    def __init__(self, folder: Path, subscription_id: int | None = None) -> None:
        self.folder = folder
        self.subscription_id = subscription_id  # whose request rows ``*.requests`` files hold
        self.requests_stored = 0  # request rows drained into the mart, in all
        self._lock = threading.Lock()

    # -- batches ---------------------------------------------------------------------------------
    def put(self, table: pa.Table | None, requests: Sequence[RequestRow] = ()) -> Path:
        """Write a batch and its requests durably (the requests first: a batch file never lacks
        its requests); returns the last file. Raises OSError when the disk refuses."""
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = self.folder / uuid.uuid4().hex
        path = stem.with_suffix(".requests")
        if requests:
            path = _write_table(path, scoring_requests.to_arrow(requests))
        if table is not None:
            path = _write_table(stem.with_suffix(".arrow"), table)
        return path

    def files(self) -> list[Path]:
        if not self.folder.exists():
            return []
        return sorted(self.folder.glob("*.arrow"), key=lambda p: p.stat().st_mtime)

    def request_files(self) -> list[Path]:
        if not self.folder.exists():
            return []
        return sorted(self.folder.glob("*.requests"), key=lambda p: p.stat().st_mtime)

    def _requests_of(self, path: Path) -> list[RequestRow]:
        return scoring_requests.from_arrow(_read_table(path)) if path.exists() else []

    def drain(self, connection_factory: Callable[[], Any], table_name: str) -> int:
        """Write spooled batches into ``table_name``, each with its requests in one transaction,
        then requests spooled alone; returns records stored. Stops at the first failure (the
        database is still away) and leaves the remaining files for later."""
        stored = 0
        with self._lock:
            for path in self.files():
                sibling = path.with_suffix(".requests")
                table = _read_table(path)
                requests = self._requests_of(sibling) if self.subscription_id is not None else []
                conn = connection_factory()
                try:
                    if self.subscription_id is not None:  # the model version, as capture gives it
                        table = versions.stamp(conn, self.subscription_id, table)
                    n = insert_idempotent(conn, table_name, table)
                    added = scoring_requests.insert(conn, self.subscription_id, requests) if requests else 0
                    conn.commit()
                except (ValidationError, psycopg2.DataError) as exc:
                    # PostgreSQL refuses this batch as it is: keep it aside, never block the rest
                    # (its requests, if any, are drained alone below)
                    conn.rollback()
                    path.rename(path.with_suffix(".refused"))
                    log.error("spooled batch %s refused by the mart, kept as .refused: %s", path, exc)
                    continue
                except Exception:
                    conn.rollback()
                    raise
                finally:
                    conn.close()
                stored += n
                self.requests_stored += added
                if requests:
                    sibling.unlink()  # first: a replay of either file is idempotent anyway
                path.unlink()
            if self.subscription_id is not None:
                self._drain_requests(connection_factory)
        return stored

    def _drain_requests(self, connection_factory: Callable[[], Any]) -> None:
        """Requests whose batch is not in the spool (failed requests only, or a refused batch)."""
        for path in self.request_files():
            if path.with_suffix(".arrow").exists():
                continue  # written before its batch, which is being written now
            rows = self._requests_of(path)
            self.requests_stored += in_transaction(
                connection_factory, partial(scoring_requests.insert, subscription_id=self.subscription_id, rows=rows)
            )
            path.unlink()

    # -- set-aside records -----------------------------------------------------------------------
    def put_aside(self, items: list[SetAside]) -> Path:
        """Keep set-aside records on disk while the mart is away. Raises OSError when it can't."""
        folder = self.folder / "aside"
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps(
                {
                    "scoring_id": i.scoring_id,
                    "source": i.source,
                    "reason": i.reason,
                    "request_b64": _b64(i.request),
                    "response_b64": _b64(i.response),
                    "record_b64": _b64(i.record),
                    "scoring_timestamp": i.scoring_timestamp.isoformat() if i.scoring_timestamp else None,
                    "response_time": i.response_time,
                }
            )
            for i in items
        ]
        data = ("\n".join(lines) + "\n").encode()
        return _write_atomically(folder / f"{uuid.uuid4().hex}.jsonl", lambda fh: fh.write(data))

    def aside_files(self) -> list[Path]:
        folder = self.folder / "aside"
        return sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime) if folder.exists() else []

    @staticmethod
    def read_aside(path: Path) -> Iterator[SetAside]:
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            stamp = d.get("scoring_timestamp")
            yield SetAside(
                d["scoring_id"],
                d["source"],
                d["reason"],
                _unb64(d.get("request_b64")),
                _unb64(d.get("response_b64")),
                _unb64(d.get("record_b64")),
                pd.Timestamp(stamp).to_pydatetime() if stamp else None,
                d.get("response_time"),
            )

    def drain_aside(self, connection_factory: Callable[[], Any], subscription_id: int) -> int:
        """Move set-aside records kept on disk into the mart (idempotently); returns how many."""
        moved = 0
        with self._lock:
            for path in self.aside_files():
                items = list(self.read_aside(path))
                moved += in_transaction(connection_factory, partial(_insert_aside, subscription_id, items))
                path.unlink()
        return moved

    def pending(self) -> bool:
        return bool(self.files() or self.aside_files() or self.request_files())

    def stats(self) -> SpoolStats:
        files = self.files()
        records = 0
        for f in files:
            with ipc.open_file(f) as reader:
                records += sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        aside = sum(sum(1 for line in f.read_text().splitlines() if line.strip()) for f in self.aside_files())
        requests = sum(_read_table(f).num_rows for f in self.request_files())
        return SpoolStats(len(files), records, aside, requests)


def _insert_aside(subscription_id: int, items: list[SetAside], conn: Any) -> int:
    return insert_set_aside(conn, subscription_id, items)
