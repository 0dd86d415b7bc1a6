"""A programmable HTTP server on loopback for fault tests: it records what it was sent and
answers as told (delays, failures, any JSON)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    """How the server answers: ``respond(seen) -> (status, json_body)``, with optional delay and
    a number of initial requests that fail with ``fail_status``."""

    respond: Callable[[Seen], tuple[int, Any]]
    delay: float = 0.0
    fail_first: int = 0
    fail_status: int = 503
    seen: list[Seen] = field(default_factory=list)


class ScriptedServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, dict(self.headers), json.loads(raw) if raw else None)
                with lock:
                    script.seen.append(seen)
                    failing = len(script.seen) <= script.fail_first
                if script.delay:
                    time.sleep(script.delay)
                status, body = (
                    (script.fail_status, {"error": {"message": "try again later"}}) if failing else script.respond(seen)
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
