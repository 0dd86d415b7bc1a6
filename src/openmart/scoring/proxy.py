"""The capture proxy: ``openmart proxy SUB --port P``.

A client sends its usual request to the proxy; the proxy forwards it unchanged to the
deployment (same method, path, query, headers and body) over pooled keep-alive connections,
returns the deployment's answer unchanged plus an ``X-Openmart-Scoring-Id`` header, and hands
the raw exchange to the background :class:`PayloadCapture`. Decoding the exchange into payload
records happens in the writer thread, in batches, never while the client waits.

It is a small asyncio HTTP/1.1 proxy rather than a web framework plus an HTTP client: on a
two-core machine the proxy's own CPU per request is what decides the latency it adds and the
throughput it keeps (measured in ``benchmarks/proxy.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pandas as pd

from openmart.errors import ProviderError, ValidationError
from openmart.scoring.capture import Exchange, PayloadCapture

if TYPE_CHECKING:
    from openmart.api import Subscription
    from openmart.providers.base import Provider

SCORING_ID_HEADER = "X-Openmart-Scoring-Id"
_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailers",
    b"transfer-encoding",
    b"upgrade",
    b"content-length",
}


def exchange_parser(sub: Subscription, provider: Provider):  # type: ignore[no-untyped-def]
    """Decode raw request/response pairs with the binding's own encoding into payload records."""
    schema = sub.schema

    def parse(exchanges: Sequence[Exchange]) -> pd.DataFrame:
        rows: list[dict] = []
        ids, stamps, times, preds, probs = [], [], [], [], []
        for ex in exchanges:
            records, predictions, probabilities = provider.parse_exchange(ex.request, ex.response)
            n = len(records)
            rows += records
            ids += [ex.scoring_id] if n == 1 else [f"{ex.scoring_id}-{k}" for k in range(1, n + 1)]
            stamps += [ex.timestamp] * n
            times += [ex.response_time_ms] * n
            preds += list(predictions)
            probs += list(probabilities) if probabilities is not None else [None] * n
        frame = pd.DataFrame.from_records(rows)  # one frame for the whole batch
        frame["scoring_id"] = ids
        frame["scoring_timestamp"] = stamps
        frame["response_time"] = times
        frame[schema.prediction] = preds
        if schema.probability and any(p is not None for p in probs):
            frame[schema.probability] = probs
        if sub.asset_revision:
            frame["asset_revision"] = sub.asset_revision
        return frame

    return parse


class _Message:
    """One HTTP/1.1 message head and body, read from a stream."""

    __slots__ = ("start", "headers", "body", "close")

    def __init__(self, start: bytes, headers: list[tuple[bytes, bytes]], body: bytes, close: bool) -> None:
        self.start, self.headers, self.body, self.close = start, headers, body, close


async def _read(reader: asyncio.StreamReader) -> _Message | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head[:-4].split(b"\r\n")
    headers, length, chunked, close = [], 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip(), value.strip()
        lower = name.lower()
        if lower == b"content-length":
            length = int(value)
        elif lower == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif lower == b"connection" and value.lower() == b"close":
            close = True
        headers.append((name, value))
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.readexactly(length) if length else b""
    return _Message(lines[0], headers, body, close)


def _serialise(start: bytes, headers: list[tuple[bytes, bytes]], body: bytes, extra: bytes = b"") -> bytes:
    out = [start]
    out += [n + b": " + v for n, v in headers if n.lower() not in _HOP_BY_HOP]
    out.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(out) + b"\r\n" + extra + b"\r\n" + body


class CaptureProxy:
    def __init__(
        self,
        sub: Subscription,
        *,
        capture: PayloadCapture | None = None,
        provider: Provider | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not sub.deployment_id:
            raise ValidationError(f"subscription {sub.name!r} names no deployment to proxy")
        provider = provider or sub.provider()
        if not hasattr(provider, "target_url") or not hasattr(provider, "parse_exchange"):
            raise ProviderError(f"the {getattr(provider, 'kind', '?')} provider cannot be proxied over HTTP")
        target = urlsplit(provider.target_url(sub.deployment_id))
        if target.scheme != "http":
            raise ProviderError("the capture proxy forwards to http:// deployments only")
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.capture_path = (target.path or "/").encode()
        self.capture = capture or PayloadCapture(sub, parser=exchange_parser(sub, provider))
        self.timeout = timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None

    async def _upstream(self, msg: _Message) -> _Message:
        for attempt in (0, 1):  # a pooled connection the deployment closed meanwhile: open a new one
            conn = self._idle.pop() if self._idle and attempt == 0 else await asyncio.open_connection(*self.upstream)
            reader, writer = conn
            try:
                writer.write(_serialise(msg.start, msg.headers, msg.body))
                answer = await asyncio.wait_for(_read(reader), self.timeout)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                if attempt:
                    raise
                continue
            if answer is None:
                writer.close()
                if attempt:
                    raise ConnectionError("the deployment closed the connection")
                continue
            if answer.close:
                writer.close()
            else:
                self._idle.append(conn)
            return answer
        raise ConnectionError("unreachable")

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                msg = await _read(reader)
                if msg is None:
                    return
                started = time.perf_counter()
                try:
                    answer = await self._upstream(msg)
                except TimeoutError:
                    writer.write(
                        _serialise(
                            b"HTTP/1.1 504 Gateway Timeout",
                            [],
                            b'{"error": "openmart proxy: the deployment timed out"}',
                        )
                    )
                    continue
                except OSError as exc:
                    writer.write(
                        _serialise(
                            b"HTTP/1.1 502 Bad Gateway",
                            [],
                            f'{{"error": "openmart proxy: deployment unreachable: {type(exc).__name__}"}}'.encode(),
                        )
                    )
                    continue
                elapsed_ms = (time.perf_counter() - started) * 1000
                method, path, _ = (msg.start.split(b" ") + [b"", b""])[:3]
                extra = b""
                status = answer.start.split(b" ")[1] if b" " in answer.start else b""
                if method == b"POST" and path.split(b"?")[0] == self.capture_path and status.startswith(b"2"):
                    scoring_id = str(uuid.uuid4())
                    extra = f"{SCORING_ID_HEADER}: {scoring_id}\r\n".encode()
                    self.capture.submit_exchange(
                        Exchange(scoring_id, pd.Timestamp.now(tz="UTC"), elapsed_ms, msg.body, answer.body)
                    )
                writer.write(_serialise(answer.start, answer.headers, answer.body, extra))
                await writer.drain()
                if msg.close:
                    return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._client, host, port, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_forever(self, host: str = "127.0.0.1", port: int = 0) -> None:
        await self.start(host, port)
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Run on a thread of its own (tests, notebooks, the quickstart); returns the base URL."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start(host, port))
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="openmart-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self.capture.close()


def serve(sub: Subscription, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the proxy in the foreground until interrupted (``openmart proxy``)."""
    proxy = CaptureProxy(sub)
    try:
        import uvloop  # a faster event loop when installed

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(proxy.serve_forever(host, port))
    except KeyboardInterrupt:
        pass
    finally:
        proxy.capture.close()
