"""The capture proxy's HTTP/1.1, byte by byte: raw sockets to a real proxy in front of a real
upstream server (http.server on a thread, or a raw socket server for odd framing), a real mart."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

import openmart
from openmart.config import Settings
from openmart.scoring.capture import PayloadCapture
from openmart.scoring.proxy import SCORING_ID_HEADER, CaptureProxy, exchange_parser
from tests.models import credit_data

PREDICTION = b'{"prediction": 1, "probability": 0.75}'
RECORD = b'{"sex": "female", "income": 42.5, "debt": 30.0}'
BIG = 20 * 1024 * 1024


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll a condition (never a fixed sleep as synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# -- a real upstream deployment ------------------------------------------------------------------


class _Seen:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body


class _Upstream:
    """An HTTP/1.1 deployment on a thread that records every request it gets.

    ``/predict`` answers a prediction; ``/echo`` returns the body; ``/big`` 20 MB; other paths a
    JSON description of the request. Query options: ``framing=eof|chunked``, ``status=N``,
    ``close`` (answer with Connection: close), ``stall`` (wait until the test releases it)."""

    def __init__(self) -> None:
        self.seen: list[_Seen] = []
        self.connections = 0
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.big = os.urandom(BIG)
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                upstream.connections += 1
                super().setup()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                upstream._handle(self)

            do_POST = do_PUT = do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query, keep_blank_values=True)
        body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        self.seen.append(_Seen(h.command, url.path, {k.lower(): v for k, v in h.headers.items()}, body))
        if "stall" in query:
            self.stalled.set()
            self.release.wait(30)
        status = int(query.get("status", ["200"])[0])
        if url.path == "/predict":
            answer = PREDICTION
        elif url.path == "/echo":
            answer = body
        elif url.path == "/big":
            answer = self.big
        else:
            answer = json.dumps({"method": h.command, "path": url.path, "host": h.headers.get("Host")}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        if status in (204, 304):
            h.end_headers()
            return
        framing = query.get("framing", [""])[0]
        if framing == "eof":  # no length, no chunks: the body ends where the connection does
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            h.wfile.write(answer)
            return
        if framing == "chunked":
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for k in range(0, len(answer), 7):
                part = answer[k : k + 7]
                h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            h.wfile.write(b"0\r\n\r\n")
            return
        h.send_header("Content-Length", str(len(answer)))
        if "close" in query:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(answer)


class _RawUpstream:
    """A socket server that reads a request head and answers whatever bytes it is given."""

    def __init__(self, answer: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(self._answer)

    def close(self) -> None:
        self.listener.close()


class _Relay:
    """A TCP relay to PostgreSQL that the test cuts and restores: the mart goes away for real."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._socks: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.open()

    def open(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        assert self._listener is not None
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for s in self._socks:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._socks.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


# -- a raw HTTP client ---------------------------------------------------------------------------


class _Answer:
    def __init__(self, status_line: bytes, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_line = status_line
        self.status = int(status_line.split(b" ")[1])
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class _Client:
    """One client connection, raw bytes out, answers read with a small parser of the test's own."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self.buf += chunk
        return bool(chunk)

    def _line(self, sep: bytes = b"\r\n") -> bytes:
        while (i := self.buf.find(sep)) < 0:
            if not self._fill():
                raise EOFError(bytes(self.buf))
        line = bytes(self.buf[:i])
        del self.buf[: i + len(sep)]
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"{len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def head(self) -> tuple[bytes, list[tuple[str, str]]]:
        lines = self._line(b"\r\n\r\n").split(b"\r\n")
        headers = [tuple(x.strip() for x in line.decode().split(":", 1)) for line in lines[1:]]
        return lines[0], headers  # type: ignore[return-value]

    def answer(self, *, bodiless: bool = False) -> _Answer:
        status_line, headers = self.head()
        h = {k.lower(): v for k, v in headers}
        if bodiless or status_line.split(b" ")[1] in (b"204", b"304"):
            body = b""
        elif "chunked" in h.get("transfer-encoding", ""):
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._exactly(size))
                self._line()
            self._line()
            body = b"".join(parts)
        elif "content-length" in h:
            body = self._exactly(int(h["content-length"]))
        else:
            while self._fill():
                pass
            body, self.buf = bytes(self.buf), bytearray()
        return _Answer(status_line, headers, body)

    def closed_by_server(self) -> bool:
        """True when the server has closed this connection (nothing more to read)."""
        return not self.buf and self.sock.recv(1) == b""

    def request(self, method: str, path: str, body: bytes = b"", headers: str = "", version: str = "1.1") -> _Answer:
        host = "Host: proxy\r\n" if version == "1.1" else ""
        length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
        self.send(f"{method} {path} HTTP/{version}\r\n{host}{headers}{length}\r\n".encode() + body)
        return self.answer(bodiless=method == "HEAD")


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    yield server
    server.close()


def _subscribe(mart: openmart.Mart, url: str, name: str = "credit") -> Any:
    mart.bindings.add(f"{name}-api", "custom", {"url": f"{url}/predict"})
    return mart.subscriptions.add(
        name,
        reference=credit_data(200),
        label="label",
        problem_type="binary",
        binding=f"{name}-api",
        deployment="/predict",
    )


@contextmanager
def _proxy(sub: Any, **options: Any) -> Iterator[CaptureProxy]:
    app = CaptureProxy(sub, **options)
    app.start_in_thread()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def proxied(mart: openmart.Mart, upstream: _Upstream) -> Iterator[tuple[CaptureProxy, Any]]:
    sub = _subscribe(mart, upstream.url)
    with _proxy(sub) as app:
        yield app, sub


def _scored(app: CaptureProxy, sub: Any) -> list[str]:
    assert app.capture.flush(30)
    return sorted(sub.payload.read()["scoring_id"])


# -- framing and connections ---------------------------------------------------------------------


def test_http10_answered_and_closed_unless_keep_alive(proxied, upstream: _Upstream) -> None:
    app, _ = proxied
    c = _Client(app.port)
    answer = c.request("GET", "/hello", version="1.0")
    assert answer.status == 200 and answer.json()["path"] == "/hello"
    assert answer.headers["content-length"] == str(len(answer.body))  # framed without chunks
    assert upstream.seen[-1].headers["host"] == f"127.0.0.1:{upstream.port}"  # HTTP/1.1 upstream needs one
    assert c.closed_by_server()
    c = _Client(app.port)
    first = c.request("GET", "/one", headers="Connection: keep-alive\r\n", version="1.0")
    assert first.headers["connection"].lower() == "keep-alive"
    second = c.request("GET", "/two", version="1.0")
    assert (first.json()["path"], second.json()["path"]) == ("/one", "/two")
    assert c.closed_by_server()


def test_keep_alive_and_connection_close_on_both_sides(proxied, upstream: _Upstream) -> None:
    app, _ = proxied
    c = _Client(app.port)
    assert [c.request("GET", f"/k{i}").json()["path"] for i in range(3)] == ["/k0", "/k1", "/k2"]
    assert upstream.connections == 1  # one pooled keep-alive connection upstream
    answer = c.request("GET", "/k3?close")  # the deployment closes after this answer
    assert answer.status == 200 and "connection" not in answer.headers  # the client's connection stays
    assert c.request("GET", "/k4").json()["path"] == "/k4"
    assert upstream.connections == 2  # the closed one was not reused
    last = c.request("GET", "/k5", headers="Connection: close\r\n")
    assert last.status == 200 and last.headers["connection"] == "close"
    assert c.closed_by_server()
    assert "connection" not in upstream.seen[-1].headers  # hop-by-hop: the pooled connection is the proxy's


def test_pipelined_requests_answered_in_order(proxied) -> None:
    app, _ = proxied
    c = _Client(app.port)
    c.send(b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5)))
    assert [c.answer().json()["path"] for _ in range(5)] == [f"/p{i}" for i in range(5)]


def test_response_delimited_by_close_keeps_its_body(proxied) -> None:
    app, sub = proxied
    c = _Client(app.port)
    answer = c.request("GET", "/eof?framing=eof")
    assert answer.status == 200 and answer.json()["path"] == "/eof"
    assert answer.headers["content-length"] == str(len(answer.body))
    scored = c.request("POST", "/predict?framing=eof", RECORD)
    assert scored.body == PREDICTION
    assert _scored(app, sub) == [scored.headers[SCORING_ID_HEADER.lower()]]


def test_chunked_request_and_response_are_dechunked(proxied, upstream: _Upstream) -> None:
    app, sub = proxied
    c = _Client(app.port)
    chunks = [RECORD[:10], RECORD[10:11], RECORD[11:]]
    c.send(
        b"POST /predict?framing=chunked HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in chunks)
        + b"0\r\n\r\n"
    )
    answer = c.answer()
    assert answer.status == 200 and answer.body == PREDICTION
    assert answer.headers["content-length"] == str(len(PREDICTION)) and "transfer-encoding" not in answer.headers
    seen = upstream.seen[-1]
    assert seen.body == RECORD and seen.headers["content-length"] == str(len(RECORD))
    assert "transfer-encoding" not in seen.headers
    assert _scored(app, sub) == [answer.headers[SCORING_ID_HEADER.lower()]]
    row = sub.payload.read().iloc[0]
    assert row["sex"] == "female" and row["income"] == pytest.approx(42.5) and row["prediction"] == 1


def test_head_and_bodiless_statuses(proxied, upstream: _Upstream) -> None:
    app, _ = proxied
    c = _Client(app.port)
    head = c.request("HEAD", "/big")
    assert head.status == 200 and head.headers["content-length"] == str(BIG)  # the size a GET would get
    get = c.request("GET", "/after-head")  # same client and pooled upstream connection: framing intact
    assert get.json()["path"] == "/after-head"
    assert upstream.connections == 1
    for status in (204, 304):
        bodiless = c.request("GET", f"/s?status={status}")
        assert bodiless.status == status and bodiless.body == b""
        assert c.request("GET", f"/after-{status}").json()["path"] == f"/after-{status}"


def test_expect_100_continue(proxied, upstream: _Upstream) -> None:
    app, sub = proxied
    c = _Client(app.port)
    c.send(
        f"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {len(RECORD)}\r\n\r\n".encode()
    )
    interim, _ = c.head()  # before the body is sent
    assert interim == b"HTTP/1.1 100 Continue"
    c.send(RECORD)
    answer = c.answer()
    assert answer.status == 200 and answer.body == PREDICTION
    assert "expect" not in upstream.seen[-1].headers and upstream.seen[-1].body == RECORD
    assert _scored(app, sub) == [answer.headers[SCORING_ID_HEADER.lower()]]


def test_large_bodies_stream_through(proxied, upstream: _Upstream) -> None:
    app, _ = proxied
    c = _Client(app.port)
    sent = os.urandom(BIG)
    echoed = c.request("POST", "/echo", sent)
    assert echoed.status == 200 and len(echoed.body) == BIG
    assert hashlib.sha256(echoed.body).digest() == hashlib.sha256(sent).digest()
    got = c.request("GET", "/big")
    assert hashlib.sha256(got.body).digest() == hashlib.sha256(upstream.big).digest()


def test_upgrade_requests_answered_as_plain_http_with_their_body(proxied, upstream: _Upstream) -> None:
    app, sub = proxied
    c = _Client(app.port)
    h2c = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
    answer = c.request("POST", "/predict", RECORD, headers=h2c)  # what curl --http2 sends to http:// URLs
    assert answer.status == 200 and answer.body == PREDICTION
    assert upstream.seen[-1].body == RECORD and "upgrade" not in upstream.seen[-1].headers
    assert c.request("GET", "/after").json()["path"] == "/after"
    assert _scored(app, sub) == [answer.headers[SCORING_ID_HEADER.lower()]]


def test_malformed_request_gets_400(proxied) -> None:
    app, _ = proxied
    c = _Client(app.port)
    c.send(b"NOT HTTP AT ALL\r\n\r\n")
    answer = c.answer()
    assert answer.status == 400 and "error" in answer.json()
    assert c.closed_by_server()


# -- failures ------------------------------------------------------------------------------------


def test_upstream_refused_is_502(mart: openmart.Mart) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # the port is free again once closed
    sub = _subscribe(mart, dead)
    with _proxy(sub) as app:
        answer = _Client(app.port).request("POST", "/predict", RECORD)
        assert answer.status == 502 and "unreachable" in answer.json()["error"]
        assert app.capture.health()["failures"] == {"refused": 1}
        assert sub.payload.count() == 0


def test_upstream_timeout_is_504(mart: openmart.Mart, upstream: _Upstream) -> None:
    sub = _subscribe(mart, upstream.url)
    with _proxy(sub, timeout=0.5) as app:
        c = _Client(app.port)
        answer = c.request("POST", "/predict?stall", RECORD)
        assert answer.status == 504 and "did not answer" in answer.json()["error"]
        assert upstream.stalled.is_set()
        upstream.release.set()
        assert c.request("POST", "/predict", RECORD).status == 200  # the late answer reaches no one
        assert app.capture.health()["failures"] == {"timeout": 1}
        assert app.capture.flush(30) and sub.payload.count() == 1


def test_upstream_5xx_passed_through_not_captured(proxied) -> None:
    app, sub = proxied
    answer = _Client(app.port).request("POST", "/predict?status=503", RECORD)
    assert answer.status == 503 and answer.body == PREDICTION  # unchanged
    assert SCORING_ID_HEADER.lower() not in answer.headers
    assert app.capture.health()["failures"] == {"upstream_5xx": 1}
    assert _scored(app, sub) == []


def test_unparsable_answer_is_502(mart: openmart.Mart) -> None:
    raw = _RawUpstream(b"HTTP/1.1 two-hundred OK\r\nContent-Length: 2\r\n\r\n{}")
    try:
        sub = _subscribe(mart, raw.url)
        with _proxy(sub) as app:
            answer = _Client(app.port).request("POST", "/predict", RECORD)
            assert answer.status == 502 and "bad answer" in answer.json()["error"]
            assert app.capture.health()["failures"] == {"bad_response": 1}
    finally:
        raw.close()


# -- what is captured ----------------------------------------------------------------------------


def test_only_answered_scoring_posts_captured_and_never_headers(
    mart: openmart.Mart, upstream: _Upstream, schema_name: str, settings: Settings
) -> None:
    token, cookie = "s3cret-token-4f1e", "c00kie-value-9a7b"
    sub = _subscribe(mart, upstream.url)
    with _proxy(sub) as app:
        c = _Client(app.port)
        secret = f"Authorization: Bearer {token}\r\nCookie: session={cookie}\r\n"
        captured = c.request("POST", "/predict?v=1", RECORD, headers=secret)
        assert captured.status == 200
        assert upstream.seen[-1].headers["authorization"] == f"Bearer {token}"  # forwarded, not kept
        for method, path in (("GET", "/predict"), ("POST", "/other"), ("POST", "/predict?status=400")):
            answer = c.request(method, path, RECORD if method == "POST" else b"", headers=secret)
            assert SCORING_ID_HEADER.lower() not in answer.headers
        assert _scored(app, sub) == [captured.headers[SCORING_ID_HEADER.lower()]]
    listed = "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"
    tables = mart.sql(listed, {"s": schema_name})["table_name"]
    assert len(tables) > 3
    for table in tables:
        q = f'SELECT count(*) AS n FROM "{schema_name}"."{table}" AS t WHERE t::text LIKE :p OR t::text LIKE :q'
        assert mart.sql(q, {"p": f"%{token}%", "q": f"%{cookie}%"})["n"][0] == 0, table
    for path in Path(settings.data_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert token.encode() not in data and cookie.encode() not in data, path


def test_durable_answers_after_the_capture_has_it(proxied_durable) -> None:
    app, sub = proxied_durable
    answer = _Client(app.port).request("POST", "/predict", RECORD)
    assert answer.status == 200 and answer.body == PREDICTION
    assert app.capture.health()["durable"] is True
    assert _scored(app, sub) == [answer.headers[SCORING_ID_HEADER.lower()]]


@pytest.fixture
def proxied_durable(mart: openmart.Mart, upstream: _Upstream) -> Iterator[tuple[CaptureProxy, Any]]:
    sub = _subscribe(mart, upstream.url)
    with _proxy(sub, durable=True) as app:
        yield app, sub


# -- the proxy's own route, degraded capture -----------------------------------------------------


def test_health_route_is_the_proxys_own(proxied, upstream: _Upstream) -> None:
    app, _ = proxied
    answer = _Client(app.port).request("GET", "/_openmart/health")
    assert answer.status == 200 and answer.json()["status"] == "ok"
    assert answer.json()["answered"] == 0
    assert upstream.seen == []  # not forwarded


def test_degraded_capture_health_503_and_refusal(
    mart: openmart.Mart, upstream: _Upstream, database_url: str, schema_name: str, settings: Settings, tmp_path: Path
) -> None:
    _subscribe(mart, upstream.url)
    url = sa.engine.make_url(database_url)
    relay = _Relay(url.host or "127.0.0.1", url.port or 5432)
    relayed = openmart.connect(
        url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False),
        schema=schema_name,
        settings=settings,
    )
    not_a_folder = tmp_path / "spool-is-a-file"
    not_a_folder.write_text("the spool cannot be written here")
    sub = relayed.subscriptions.get("credit")
    capture = PayloadCapture(sub, spool_dir=not_a_folder, decoder=exchange_parser(sub, sub.provider()))
    try:
        with _proxy(sub, capture=capture, refuse_when_degraded=True) as app:
            c = _Client(app.port)
            assert c.request("GET", "/_openmart/health").status == 200
            relay.cut()  # the mart goes away, and the spool cannot be written: capture is degraded
            assert c.request("POST", "/predict", RECORD).status == 200  # accepted while still ok
            health = _wait_for(lambda: (a := c.request("GET", "/_openmart/health")).status == 503 and a, "degraded")
            assert health.json()["status"] == "degraded"
            forwarded = len(upstream.seen)
            refused = c.request("POST", "/predict", RECORD)
            assert refused.status == 503 and "degraded" in refused.json()["error"]
            assert len(upstream.seen) == forwarded  # not forwarded
            early = _Client(app.port)
            expecting = f"Expect: 100-continue\r\nContent-Length: {len(RECORD)}\r\n"
            early.send(f"POST /predict HTTP/1.1\r\nHost: x\r\n{expecting}\r\n".encode())
            answer = early.answer()  # the refusal comes instead of 100 Continue; the body is never read
            assert answer.status == 503 and answer.headers["connection"] == "close" and early.closed_by_server()
            assert c.request("GET", "/other").status == 200  # other routes still pass through
            relay.open()  # back: the buffered exchange reaches the mart, capture recovers
            _wait_for(lambda: c.request("GET", "/_openmart/health").status == 200, "recovery", 60)
            assert c.request("POST", "/predict", RECORD).status == 200
    finally:
        relayed.close()
    assert sub.payload.count() == 2


# -- stopping: the real CLI in a subprocess ------------------------------------------------------


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def _cli_proxy(
    database_url: str, schema_name: str, settings: Settings, *options: str, ignore_sigint: bool = False
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    env = dict(
        os.environ,
        OPENMART_DATABASE_URL=database_url,
        OPENMART_SCHEMA=schema_name,
        OPENMART_DATA_DIR=str(settings.data_dir),
    )

    def ignore() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell does for a job started with &

    proc = subprocess.Popen(
        [sys.executable, "-m", "openmart.cli.app", "proxy", "credit", "--port", str(port), *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=ignore if ignore_sigint else None,
    )
    try:
        _wait_for(lambda: proc.poll() is not None or _listening(port), "the proxy to listen", 60)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def test_sigterm_finishes_in_flight_and_exits_0(
    mart: openmart.Mart, upstream: _Upstream, database_url: str, schema_name: str, settings: Settings
) -> None:
    sub = _subscribe(mart, upstream.url)
    options = ("--timeout", "30", "--durable", "--refuse-when-degraded")
    with _cli_proxy(database_url, schema_name, settings, *options) as (proc, port):
        c = _Client(port)
        first = c.request("POST", "/predict", RECORD)
        assert first.status == 200
        idle = _Client(port)
        assert idle.request("GET", "/_openmart/health").json()["status"] == "ok"
        c.send(f"POST /predict?stall HTTP/1.1\r\nHost: x\r\nContent-Length: {len(RECORD)}\r\n\r\n".encode() + RECORD)
        assert upstream.stalled.wait(30)  # in flight
        proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: not _listening(port), "the listening socket to close")
        assert idle.closed_by_server()  # idle keep-alive connections are closed
        assert proc.poll() is None  # still answering the request in flight
        upstream.release.set()
        second = c.answer()
        assert second.status == 200 and second.headers["connection"] == "close"
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    ids = sorted(a.headers[SCORING_ID_HEADER.lower()] for a in (first, second))
    assert sorted(sub.payload.read()["scoring_id"]) == ids  # flushed to the mart on the way out


def test_sigint_stops_a_proxy_started_with_sigint_ignored(
    mart: openmart.Mart, upstream: _Upstream, database_url: str, schema_name: str, settings: Settings
) -> None:
    sub = _subscribe(mart, upstream.url)
    with _cli_proxy(database_url, schema_name, settings, ignore_sigint=True) as (proc, port):
        answer = _Client(port).request("POST", "/predict", RECORD)
        assert answer.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    assert list(sub.payload.read()["scoring_id"]) == [answer.headers[SCORING_ID_HEADER.lower()]]
