"""The capture proxy: ``openmart proxy SUB --port P``.

A client sends its usual request to the proxy; the proxy forwards it to the deployment (same
method, path, query, headers and body) over pooled keep-alive connections, returns the
deployment's answer unchanged plus an ``X-Openmart-Scoring-Id`` header, and hands the raw
exchange to the background :class:`PayloadCapture`. Decoding the exchange into payload records
happens in the writer thread, in batches, never while the client waits.

It is a small asyncio HTTP/1.1 proxy rather than a web framework plus an HTTP client: on a
two-core machine the proxy's own CPU per request is what decides the latency it adds and the
throughput it keeps (measured in ``benchmarks/proxy.py``). HTTP framing is parsed by httptools
(llhttp, the C parser uvicorn uses) driven from asyncio Protocols on both sides; bodies are
collected whole (the capture needs them whole anyway) and re-framed with Content-Length.

Every POST to the capture path is also a row of ``scoring_requests`` (the performance monitor's
input): an answered one through its exchange, a failed one (the deployment's non-2xx, or the
proxy's own 502/504) through :meth:`PayloadCapture.submit_request`, off the client's path.

The proxy answers one route itself: ``GET /_openmart/health`` (the capture's health, 200 when
``ok``, 503 when ``degraded``). It stops gracefully on SIGTERM or SIGINT: it stops accepting,
lets requests in flight finish (up to the timeout), closes idle connections and flushes the
capture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import httptools
import pandas as pd

from openmart.context import HasContext, SubscriptionContext, context_of
from openmart.errors import ProviderError, ValidationError
from openmart.mart.scoring_requests import RequestRow
from openmart.scoring.capture import Exchange, PayloadCapture
from openmart.scoring.intake import ExchangeDecoder, provider_decoder

if TYPE_CHECKING:
    from openmart.providers.base import Provider

log = logging.getLogger(__name__)

SCORING_ID_HEADER = "X-Openmart-Scoring-Id"
HEALTH_PATH = b"/_openmart/health"
_SCORING_ID = SCORING_ID_HEADER.encode()
# Headers that concern one connection only (RFC 9110 7.6.1), plus the framing the proxy redoes.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)
# The proxy answers Expect: 100-continue itself and forwards the whole body, so the deployment
# must not be asked to send a 100 of its own.
_NOT_FORWARDED = _HOP_BY_HOP | {b"expect"}
# An answer with no body by definition keeps the deployment's Content-Length (HEAD: the size a GET would get).
_HOP_BY_HOP_BODILESS = _HOP_BY_HOP - {b"content-length"}
_NO_BODY_STATUSES = frozenset({204, 304})
_BIG = 1 << 16  # above this, write head and body separately rather than copy the body once more


def exchange_parser(sub: SubscriptionContext, provider: Provider) -> ExchangeDecoder:
    """The binding's own decoder of one request/response pair (capture decodes each exchange on
    its own, so one that cannot be decoded is set aside alone)."""
    return provider_decoder(provider)


# -- messages and their bytes ------------------------------------------------------------------


class _Request:
    """One request from a client, body de-chunked."""

    __slots__ = ("method", "url", "version", "headers", "body", "keep_alive")

    def __init__(
        self,
        method: bytes,
        url: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self.method, self.url, self.version, self.headers = method, url, version, headers
        self.body, self.keep_alive = body, keep_alive


class _Response:
    """One answer from the deployment, body de-chunked; ``bodiless`` when it has none by definition."""

    __slots__ = ("status", "reason", "headers", "body", "keep_alive", "bodiless")

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
        bodiless: bool,
    ) -> None:
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
        self.keep_alive, self.bodiless = keep_alive, bodiless


class _BadResponse(Exception):
    """The deployment's answer could not be parsed, or stopped half-way."""


class _Stale(ConnectionError):
    """The connection closed before any byte of an answer: a pooled one may simply have expired."""


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names a Connection header declares hop-by-hop (``Connection: close, X-Foo``)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


def _header_lines(headers: list[tuple[bytes, bytes]], drop: frozenset[bytes]) -> list[bytes]:
    extra = _connection_tokens(headers)
    skip = drop | extra if extra else drop
    return [name + b": " + value + b"\r\n" for name, value in headers if name.lower() not in skip]


def _upstream_request(req: _Request, host: bytes) -> bytes:
    """The request as the deployment gets it: HTTP/1.1 (the pool keeps connections alive), framed by length."""
    lines = [req.method + b" " + req.url + b" HTTP/1.1\r\n", *_header_lines(req.headers, _NOT_FORWARDED)]
    if not any(name.lower() == b"host" for name, _ in req.headers):
        lines.append(b"Host: " + host + b"\r\n")  # HTTP/1.0 clients may leave it out; HTTP/1.1 needs it
    if req.body or req.method in (b"POST", b"PUT", b"PATCH"):
        lines.append(b"Content-Length: " + str(len(req.body)).encode() + b"\r\n")
    return b"".join(lines) + b"\r\n"


def _answer_head(resp: _Response, extra: bytes = b"") -> bytes:
    """Status line and headers to send back, without the final blank line (the client adds its Connection)."""
    lines = [b"HTTP/1.1 " + str(resp.status).encode() + b" " + resp.reason + b"\r\n"]
    if resp.bodiless:
        lines += _header_lines(resp.headers, _HOP_BY_HOP_BODILESS)
    else:
        lines += _header_lines(resp.headers, _HOP_BY_HOP)
        lines.append(b"Content-Length: " + str(len(resp.body)).encode() + b"\r\n")
    lines.append(extra)
    return b"".join(lines)


def _json_answer(status: int, reason: str, document: dict[str, Any]) -> tuple[bytes, bytes]:
    """An answer the proxy writes itself: (head without the blank line, body)."""
    body = json.dumps(document, default=str).encode()
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode(), body


def _error(status: int, reason: str, message: str) -> tuple[bytes, bytes]:
    return _json_answer(status, reason, {"error": f"openmart proxy: {message}"})


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# -- the deployment's side: pooled keep-alive connections --------------------------------------


class _UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to the deployment, one request at a time.

    Each request gets a fresh response parser: httptools cannot be told that an answer to HEAD
    has no body, so that answer is finished at its headers and the parser dropped with whatever
    it still expects.
    """

    def __init__(self, pool: list[_UpstreamConnection]) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser: httptools.HttpResponseParser | None = None
        self._waiter: asyncio.Future[_Response] | None = None
        self._head = False
        self._started = False
        self._interim = False
        self._until_eof = False
        self._keep_alive = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses
        _set_nodelay(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        with contextlib.suppress(ValueError):
            self._pool.remove(self)
        if self._waiter is None or self._waiter.done():
            return
        if self._parser is not None and self._until_eof:
            self._finish(bodiless=False)  # an answer delimited by the connection's close ends here
        elif not self._started:
            self._waiter.set_exception(_Stale("the deployment closed the connection without answering"))
        else:
            self._waiter.set_exception(_BadResponse("the deployment closed the connection mid-answer"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done() or self._parser is None:
            self.close()  # bytes nobody asked for: this connection's framing can no longer be trusted
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self._waiter.done():
                self._waiter.set_exception(_BadResponse(f"unparsable answer: {exc}"))
            self.close()

    # the proxy's side
    def request(self, data: bytes, body: bytes, head: bool) -> asyncio.Future[_Response]:
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter = self._loop.create_future()
        self._head, self._started, self._interim, self._until_eof = head, False, False, False
        if len(body) > _BIG:
            self.transport.write(data)
            self.transport.write(body)
        else:
            self.transport.write(data + body)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(ValueError):
            self._pool.remove(self)
        if self.transport is not None:
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._started = True
        self._reason = b""
        self._headers = []
        self._body = []

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._interim = True  # an interim answer (102, 103): skip it, the final one follows
            return
        self._keep_alive = self._parser.should_keep_alive()
        if self._head or status in _NO_BODY_STATUSES:
            if self._head:  # llhttp judges keep-alive as if a body followed; a HEAD answer has none
                self._keep_alive = b"close" not in _connection_tokens(self._headers)
            self._finish(bodiless=True)
        elif not self._keep_alive:
            self._until_eof = not any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self._headers)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._waiter is not None and not self._waiter.done():
            self._finish(bodiless=False)

    def _finish(self, bodiless: bool) -> None:
        assert self._parser is not None and self._waiter is not None
        body = b"" if bodiless else b"".join(self._body)
        status = self._parser.get_status_code()
        self._waiter.set_result(_Response(status, self._reason, self._headers, body, self._keep_alive, bodiless))
        self._parser = None  # whatever the old parser still reads belongs to no request
        self._body = []


# -- the clients' side -------------------------------------------------------------------------


class _ClientConnection(asyncio.Protocol):
    """One client connection: parses its requests, answers them in order, honours keep-alive."""

    def __init__(self, proxy: CaptureProxy) -> None:
        self._proxy = proxy
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[_Request] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._receiving = False
        self._closing = False
        self._last: tuple[bytes, bytes] | None = None  # an answer to write, then close (a malformed request)
        self._writable: asyncio.Future[None] | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    @property
    def idle(self) -> bool:
        return not self._receiving and not self._queue and self._worker is None

    def close_when_idle(self) -> None:
        """Stopping: close now when nothing is under way, else after the answer in flight."""
        self._closing = True
        if self.idle and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        _set_nodelay(transport)
        self._proxy._clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._queue.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._proxy._client_gone(self)

    def data_received(self, data: bytes) -> None:
        if self._last is not None:
            return  # after a malformed request nothing more on this connection is read
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._last is None:  # else the request was refused at its headers already
                self._without_upgrade(data[upgrade.args[0] :])
        except httptools.HttpParserError:
            self._end_with(_error(400, "Bad Request", "malformed HTTP request"))

    def _without_upgrade(self, rest: bytes) -> None:
        """Protocol switches (h2c, WebSocket) are not proxied. llhttp has skipped the body of a request
        asking for one, so parse that request again without its Upgrade header: it is then answered as
        plain HTTP, body included."""
        req = self._queue.pop()
        if req.method == b"CONNECT":
            self._end_with(_error(405, "Method Not Allowed", "CONNECT is not proxied"))
            return
        lines = [req.method + b" " + req.url + b" HTTP/" + req.version.encode() + b"\r\n"]
        lines += [name + b": " + value + b"\r\n" for name, value in req.headers if name.lower() != b"upgrade"]
        self._parser = httptools.HttpRequestParser(self)
        self.data_received(b"".join(lines) + b"\r\n" + rest)

    def _end_with(self, answer: tuple[bytes, bytes]) -> None:
        """Answer this after the answers already due, then close; read nothing more."""
        self._last = answer
        self._receiving = False
        self._kick()

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._receiving = True
        self._url = b""
        self._headers = []
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._parser.get_http_version() != "1.1" or not self._expects_continue():
            return
        refusal = self._proxy._refusal(self._parser.get_method(), self._url)
        if refusal is not None:
            # a final answer instead of 100 Continue; the body will not be read, so the connection ends
            self._end_with(refusal)
        elif self._queue or self._worker is not None:
            pass  # an earlier answer is still due; the client sends its body after its own wait
        elif self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._last is not None:
            return
        self._receiving = False
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        parser = self._parser
        version, keep_alive = parser.get_http_version(), parser.should_keep_alive()
        self._queue.append(_Request(parser.get_method(), self._url, version, self._headers, body, keep_alive))
        self._kick()

    def _expects_continue(self) -> bool:
        return any(n.lower() == b"expect" and v.strip().lower() == b"100-continue" for n, v in self._headers)

    # answering, in order
    def _kick(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        try:
            while self._queue and self._transport is not None:
                req = self._queue.popleft()
                head, body = await self._proxy._answer(req)
                close = not req.keep_alive or self._closing or self._proxy._stopping
                self._write(head, req, body, close)
                if close:
                    self._end()
                    return
                if self._writable is not None:
                    await self._writable  # the client reads slowly: wait before answering more
                    self._writable = None
            if self._last is not None:
                head, body = self._last
                self._write(head, None, body, close=True)
                self._end()
            elif self._closing and not self._receiving:
                self._end()
        except Exception:
            log.exception("openmart proxy: answering a client failed")
            self._end()
        finally:
            self._worker = None

    def _write(self, head: bytes, req: _Request | None, body: bytes, close: bool) -> None:
        if self._transport is None:
            return
        if close:
            head += b"Connection: close\r\n\r\n"
        elif req is not None and req.version == "1.0":
            head += b"Connection: keep-alive\r\n\r\n"  # a 1.0 client closes unless told otherwise
        else:
            head += b"\r\n"
        if req is not None and req.method == b"HEAD":
            body = b""
        if len(body) > _BIG:
            self._transport.write(head)
            self._transport.write(body)
        else:
            self._transport.write(head + body)

    def _end(self) -> None:
        if self._transport is not None:
            self._transport.close()


# -- the proxy ---------------------------------------------------------------------------------


class CaptureProxy:
    def __init__(
        self,
        subscription: SubscriptionContext | HasContext,
        *,
        capture: PayloadCapture | None = None,
        provider: Provider | None = None,
        timeout: float = 60.0,
        durable: bool = False,
        refuse_when_degraded: bool = False,
    ) -> None:
        sub = context_of(subscription)
        if not sub.deployment_id:
            raise ValidationError(f"subscription {sub.name!r} names no deployment to proxy")
        provider = provider or sub.provider()
        if not hasattr(provider, "target_url") or not hasattr(provider, "parse_exchange"):
            raise ProviderError(f"the {getattr(provider, 'kind', '?')} provider cannot be proxied over HTTP")
        target = urlsplit(provider.target_url(sub.deployment_id))
        if target.scheme != "http":
            raise ProviderError("the capture proxy forwards to http:// deployments only")
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self._upstream_host = (target.netloc or self.upstream[0]).encode()
        self.capture_path = (target.path or "/").encode()
        # answer headers the provider decodes records with (e.g. the model version), kept per exchange
        self._kept_headers = frozenset(h.lower().encode("latin-1") for h in getattr(provider, "exchange_headers", ()))
        self.capture = capture or PayloadCapture(sub, decoder=exchange_parser(sub, provider), durable=durable)
        self.timeout = timeout
        self.durable = durable
        self.refuse_when_degraded = refuse_when_degraded
        self._idle: list[_UpstreamConnection] = []
        self._clients: set[_ClientConnection] = set()
        self._all_gone: asyncio.Event | None = None
        self._stopping = False
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # -- answering -----------------------------------------------------------------------------
    def _refusal(self, method: bytes, url: bytes) -> tuple[bytes, bytes] | None:
        """The 503 for a scoring request while capture cannot keep it, when asked to refuse then."""
        if not self.refuse_when_degraded or method != b"POST" or url.split(b"?", 1)[0] != self.capture_path:
            return None
        if self.capture.accepting:
            return None
        return _json_answer(
            503,
            "Service Unavailable",
            {"error": "openmart proxy: payload capture is degraded (mart and spool failing); request not forwarded"},
        )

    def _health(self) -> tuple[bytes, bytes]:
        health = self.capture.health()
        if health.get("status") == "ok":
            return _json_answer(200, "OK", health)
        return _json_answer(503, "Service Unavailable", health)

    async def _answer(self, req: _Request) -> tuple[bytes, bytes]:
        """The answer to one request: (head without the final blank line, body)."""
        path = req.url.split(b"?", 1)[0]
        if path == HEALTH_PATH and req.method in (b"GET", b"HEAD"):
            return self._health()
        refusal = self._refusal(req.method, req.url)
        if refusal is not None:
            return refusal
        scoring = req.method == b"POST" and path == self.capture_path
        started = time.perf_counter()
        try:
            resp = await self._forward(req)
        except TimeoutError:
            self.capture.note_failure("timeout")
            answer = _error(504, "Gateway Timeout", f"the deployment did not answer within {self.timeout:g} s")
            return self._no_payload(scoring, req, started, 504, answer)
        except _BadResponse as exc:
            self.capture.note_failure("bad_response")
            return self._no_payload(
                scoring, req, started, 502, _error(502, "Bad Gateway", f"bad answer from the deployment: {exc}")
            )
        except OSError as exc:
            self.capture.note_failure("refused")
            answer = _error(502, "Bad Gateway", f"deployment unreachable: {type(exc).__name__}")
            return self._no_payload(scoring, req, started, 502, answer)
        if resp.status >= 500:
            self.capture.note_failure("upstream_5xx")  # passed back unchanged, never payload
            return self._no_payload(scoring, req, started, resp.status, (_answer_head(resp), resp.body))
        if scoring and 200 <= resp.status < 300:
            scoring_id = str(uuid.uuid4())
            elapsed_ms = (time.perf_counter() - started) * 1000
            kept = tuple(
                (name.lower().decode("latin-1"), value.decode("latin-1"))
                for name, value in resp.headers
                if name.lower() in self._kept_headers
            )
            exchange = Exchange(
                scoring_id, pd.Timestamp.now(tz="UTC"), elapsed_ms, req.body, resp.body, resp.status, kept
            )
            if self.durable:
                await asyncio.wrap_future(self.capture.submit_durable(exchange))
            else:
                self.capture.submit_exchange(exchange)
            return _answer_head(resp, _SCORING_ID + b": " + scoring_id.encode() + b"\r\n"), resp.body
        return self._no_payload(scoring, req, started, resp.status, (_answer_head(resp), resp.body))

    def _no_payload(
        self, scoring: bool, req: _Request, started: float, status: int, answer: tuple[bytes, bytes]
    ) -> tuple[bytes, bytes]:
        """An answer that carries no payload, as is; for a scoring request (so a failed one) its
        request row is queued first (no records: a failed request is not decoded)."""
        if scoring:
            elapsed_ms = (time.perf_counter() - started) * 1000
            row = RequestRow(
                datetime.now(UTC), status, 0, len(req.body), len(answer[1]), elapsed_ms, "proxy", str(uuid.uuid4())
            )
            self.capture.submit_request(row)
        return answer

    async def _forward(self, req: _Request) -> _Response:
        data = _upstream_request(req, self._upstream_host)
        head = req.method == b"HEAD"
        async with asyncio.timeout(self.timeout):
            conn = self._idle.pop() if self._idle else None
            if conn is not None:
                with contextlib.suppress(_Stale):  # the deployment closed the pooled connection meanwhile
                    return await self._over(conn, data, req.body, head)
            loop = asyncio.get_running_loop()
            _, fresh = await loop.create_connection(lambda: _UpstreamConnection(self._idle), *self.upstream)
            return await self._over(fresh, data, req.body, head)

    async def _over(self, conn: _UpstreamConnection, data: bytes, body: bytes, head: bool) -> _Response:
        try:
            resp = await conn.request(data, body, head)
        except BaseException:
            conn.close()  # timed out or broken: a late answer must never reach the next request
            raise
        if resp.keep_alive and not conn.closed and not self._stopping:
            self._idle.append(conn)
        else:
            conn.close()
        return resp

    # -- running and stopping ------------------------------------------------------------------
    def _client_gone(self, client: _ClientConnection) -> None:
        self._clients.discard(client)
        if not self._clients and self._all_gone is not None:
            self._all_gone.set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(lambda: _ClientConnection(self), host, port, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        """Stop accepting, let requests in flight finish (up to the timeout), close idle connections."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        self._all_gone = asyncio.Event()
        for client in list(self._clients):
            client.close_when_idle()
        if self._clients:
            try:
                async with asyncio.timeout(self.timeout):
                    await self._all_gone.wait()
            except TimeoutError:
                for client in list(self._clients):
                    client.abort()
        for conn in list(self._idle):
            conn.close()

    async def serve_until_signalled(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully. The handlers are the loop's own,
        so SIGINT stops the proxy even when a shell started it in the background with SIGINT ignored."""
        await self.start(host, port)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        await self.shutdown()

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Run on a thread of its own (tests, notebooks, the quickstart); returns the base URL."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start(host, port))
                ready.set()
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="openmart-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """The same graceful stop as on SIGTERM, from another thread; then flush the capture."""
        loop = self._loop
        if loop is not None and loop.is_running():
            done = asyncio.run_coroutine_threadsafe(self.shutdown(), loop)
            with contextlib.suppress(Exception):
                done.result(self.timeout + 5)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(10)
        self.capture.close()


def serve(
    sub: SubscriptionContext | HasContext,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    timeout: float = 60.0,
    durable: bool = False,
    refuse_when_degraded: bool = False,
) -> None:
    """Run the proxy in the foreground until SIGTERM or SIGINT (``openmart proxy``)."""
    proxy = CaptureProxy(sub, timeout=timeout, durable=durable, refuse_when_degraded=refuse_when_degraded)
    try:
        import uvloop  # a faster event loop when installed

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(proxy.serve_until_signalled(host, port))
    finally:
        proxy.capture.close()  # flushes what was answered to the mart, or to the spool
