"""A durable local spool for captured payload records the mart could not take right now.

Each batch the database refused to take (unreachable, restarting) is written as one Arrow IPC
file, atomically (write to a temporary name, fsync, rename), under the spool directory of its
subscription. ``drain`` writes spooled batches to the mart idempotently: the batch goes through
a temporary table and ``INSERT ... ON CONFLICT (scoring_id) DO NOTHING``, so a batch whose
commit was cut off half-acknowledged, then replayed, is stored exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from openmart.mart.identifiers import quote
from openmart.mart.records import RecordKind, copy_into

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpoolStats:
    files: int
    records: int


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def _dir(self, subscription: str) -> Path:
        path = self.directory / subscription
        path.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, subscription: str, table: pa.Table) -> Path:
        """Write a batch durably; returns its file."""
        folder = self._dir(subscription)
        final = folder / f"{uuid.uuid4().hex}.arrow"
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            with ipc.new_file(fh, table.schema) as writer:
                writer.write_table(table)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a crash
        finally:
            os.close(dir_fd)
        return final

    def reject(self, subscription: str, items: list[dict], reason: str) -> Path:
        """Keep captured items the mart refused (they did not fit the schema) for a person to see."""
        folder = self._dir(subscription) / "rejected"
        folder.mkdir(exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}.jsonl"
        with open(path, "w") as fh:
            for item in items:
                fh.write(json.dumps({"reason": reason, **item}, default=str) + "\n")
        return path

    def files(self, subscription: str) -> list[Path]:
        folder = self.directory / subscription
        return sorted(folder.glob("*.arrow"), key=lambda p: p.stat().st_mtime) if folder.exists() else []

    def stats(self, subscription: str) -> SpoolStats:
        files = self.files(subscription)
        records = 0
        for f in files:
            with ipc.open_file(f) as reader:
                records += sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        return SpoolStats(len(files), records)

    def drain(self, subscription: str, connection_factory, table_name: str) -> int:  # type: ignore[no-untyped-def]
        """Write spooled batches into ``table_name``; returns records stored. Stops at the first
        failure (the database is still away) and leaves the remaining files for later."""
        stored = 0
        with self._lock:
            for path in self.files(subscription):
                with ipc.open_file(path) as reader:
                    table = reader.read_all()
                conn = connection_factory()
                try:
                    stored += insert_idempotent(conn, table_name, table)
                    conn.commit()
                except Exception:
                    conn.rollback()
                    raise
                finally:
                    conn.close()
                path.unlink()
        return stored


def insert_idempotent(conn, table_name: str, table: pa.Table) -> int:  # type: ignore[no-untyped-def]
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
