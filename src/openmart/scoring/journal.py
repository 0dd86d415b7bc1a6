"""The durable mode's write-ahead journal: each exchange is on disk before its answer goes back.

Exchanges are appended to segment files and made durable with one ``fdatasync`` per group of
whatever arrived meanwhile (group commit), so concurrent requests share the cost of a sync.
A segment is removed once every exchange in it has been kept by capture (stored, spooled or set
aside); segments left by a process that died are read again at the next start and stored
idempotently, so a SIGKILL loses nothing that was answered.

Frame: ``b"OMJ2"``, CRC-32 of the body, body length (little-endian u32 each), then the body:
timestamp (i64 epoch microseconds), response time (f64 ms), lengths of scoring id, request and
response (u16, u32, u32), the HTTP status (u16; its request row needs it), then those bytes.
``OMJ1`` frames (no status: 200) left by an older proxy are read too. An exchange that keeps
answer headers (a provider's ``exchange_headers``, e.g. the model version) is an ``OMJ3`` frame:
after the status, the length of the headers (u32), and after the response, the headers as JSON
pairs. A torn tail (a crash mid-write, never answered) fails its length or CRC check and is ignored.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import logging
import os
import queue
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from openmart.scoring.intake import Exchange

log = logging.getLogger(__name__)

MAGIC = b"OMJ2"
_MAGIC_V1 = b"OMJ1"
_MAGIC_HEADERS = b"OMJ3"
_FRAME = struct.Struct("<4sII")
_BODY = struct.Struct("<qdHIIH")
_BODY_HEADERS = struct.Struct("<qdHIIHI")
_BODY_V1 = struct.Struct("<qdHII")
SEGMENT_BYTES = 16 << 20


def encode(ex: Exchange) -> bytes:
    sid = ex.scoring_id.encode()
    fixed = (ex.timestamp.value // 1000, ex.response_time_ms, len(sid), len(ex.request), len(ex.response), ex.status)
    if not ex.headers:  # the usual frame: a proxy of an older version can still read it
        body = _BODY.pack(*fixed) + sid + ex.request + ex.response
        return _FRAME.pack(MAGIC, zlib.crc32(body), len(body)) + body
    headers = json.dumps([list(pair) for pair in ex.headers]).encode()
    body = _BODY_HEADERS.pack(*fixed, len(headers)) + sid + ex.request + ex.response + headers
    return _FRAME.pack(_MAGIC_HEADERS, zlib.crc32(body), len(body)) + body


def decode_file(path: Path) -> Iterator[Exchange]:
    data = path.read_bytes()
    pos = 0
    while pos + _FRAME.size <= len(data):
        magic, crc, length = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size : pos + _FRAME.size + length]
        if magic not in (MAGIC, _MAGIC_V1, _MAGIC_HEADERS) or len(body) != length or zlib.crc32(body) != crc:
            log.warning("journal %s: torn frame at byte %d ignored (never answered)", path, pos)
            return
        n_headers = 0
        if magic == MAGIC:
            stamp, rt, n_sid, n_req, n_resp, status = _BODY.unpack_from(body)
            at = _BODY.size
        elif magic == _MAGIC_HEADERS:
            stamp, rt, n_sid, n_req, n_resp, status, n_headers = _BODY_HEADERS.unpack_from(body)
            at = _BODY_HEADERS.size
        else:
            stamp, rt, n_sid, n_req, n_resp = _BODY_V1.unpack_from(body)
            status, at = 200, _BODY_V1.size
        sid = body[at : at + n_sid].decode()
        at += n_sid
        request = body[at : at + n_req]
        response = body[at + n_req : at + n_req + n_resp]
        at += n_req + n_resp
        headers = tuple((str(k), str(v)) for k, v in json.loads(body[at : at + n_headers])) if n_headers else ()
        yield Exchange(sid, pd.Timestamp(stamp, unit="us", tz="UTC"), rt, request, response, status, headers)
        pos += _FRAME.size + length


class Segment:
    """One journal file; deleted once sealed and every exchange in it was kept."""

    def __init__(self, path: Path, fd: int | None = None) -> None:
        self.path = path
        self.fd = fd
        self._outstanding = 0
        self._sealed = fd is None
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self._outstanding += n

    def done(self, n: int = 1) -> None:
        with self._lock:
            self._outstanding -= n
            remove = self._sealed and self._outstanding <= 0
        if remove:
            self._remove()

    def seal(self) -> None:
        with self._lock:
            self._sealed = True
            remove = self._outstanding <= 0
        if self.fd is not None:
            os.close(self.fd)  # also releases our lock on it
            self.fd = None
        if remove:
            self._remove()

    def _remove(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("journal segment %s not removed: %s", self.path, exc)


def recover(folder: Path) -> Iterator[tuple[Exchange, Segment]]:
    """Exchanges of segments no live process holds (one that died left them)."""
    if not folder.exists():
        return
    for path in sorted(folder.glob("*.journal")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live proxy is writing it
        exchanges = list(decode_file(path))
        os.close(fd)
        segment = Segment(path)
        segment.add(len(exchanges))
        if not exchanges:
            segment.done(0)
        for ex in exchanges:
            yield ex, segment


class Journal:
    """Appends exchanges with group commit; ``append`` returns a future resolved once durable."""

    def __init__(
        self,
        folder: Path,
        on_durable: Callable[[Exchange, Segment | None], None],
        *,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.folder = folder
        self._on_durable = on_durable
        self._segment_bytes = segment_bytes
        self._queue: queue.SimpleQueue[tuple[Exchange, concurrent.futures.Future[None]] | None] = queue.SimpleQueue()
        self._segment: Segment | None = None
        self._size = 0
        self._seq = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="openmart-journal", daemon=True)
        self._thread.start()

    def append(self, ex: Exchange) -> concurrent.futures.Future[None]:
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put((ex, fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._segment is not None:
            self._segment.seal()
            self._segment = None

    def _open_segment(self) -> Segment:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = self.folder / f"{os.getpid()}-{self._seq:06d}-{os.urandom(4).hex()}.journal"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # recovery by another process skips a segment in use
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._size = 0
        return Segment(path, fd)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            while True:  # everything that arrived while the last sync ran: one more sync for all
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            self._commit(group)

    def _commit(self, group: list[tuple[Exchange, concurrent.futures.Future[None]]]) -> None:
        segment: Segment | None = None
        try:
            if self._segment is None or self._size >= self._segment_bytes:
                if self._segment is not None:
                    self._segment.seal()
                self._segment = None
                self._segment = self._open_segment()
            segment = self._segment
            data = b"".join(encode(ex) for ex, _ in group)
            assert segment.fd is not None
            os.write(segment.fd, data)
            os.fdatasync(segment.fd)
            self._size += len(data)
            segment.add(len(group))
        except Exception as exc:  # disk full, read-only: answer anyway, kept like any other exchange
            self.failures += len(group)
            log.error("journal write failed, %d exchanges kept without it: %s", len(group), exc)
            if self._segment is not None:
                self._segment.seal()  # a half-written tail fails its CRC at recovery
                self._segment = None
            segment = None
        for ex, fut in group:
            self._on_durable(ex, segment)
            fut.set_result(None)
