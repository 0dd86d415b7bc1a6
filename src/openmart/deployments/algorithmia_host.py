"""An HTTP server hosting scikit-learn models behind the Algorithmia API shape.

    python -m openmart.deployments.algorithmia_host --model demo/credit/1.0.0=model.joblib --port 9000

Routes:
- ``POST /v1/algo/{owner}/{algo}/{version}[?timeout=N]`` — the body is records (a JSON list of
  objects), a pandas ``split`` frame (``{"columns", "data"}``), a pandas JSON frame
  (``{column: {row_id: value}}``, as ``DataFrame.to_json()`` writes it) or OpenScale's
  ``{"fields", "values"}``. The answer: ``{"result": {"predictions": [...], "probabilities":
  [...]}, "metadata": {"content_type": "json", "duration": seconds}}``; for a pandas JSON frame
  the result's lists are objects keyed by row id, as the classic pattern expects.
- ``GET /v1/algorithms/{owner}/{algo}/versions`` — ``{"marker": null, "next_link": null,
  "results": [{"version_info": {"semantic_version": ...}, "created": ...}]}``.
- Errors: ``{"error": {"message": ..., "stacktrace": ...}}`` with 400/401/404/500.

When the environment variable ``ALGORITHMIA_HOST_KEY`` is set, requests must carry
``Authorization: Simple <key>`` (the key is never taken on the command line, where ``ps`` shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
import traceback
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from openmart.deployments.model import ServedModel


class AlgorithmiaHost(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], models: dict[str, ServedModel], key: str | None) -> None:
        super().__init__(address, _Handler)
        self.models = models
        self.key = key
        self.created = datetime.now(UTC).isoformat()
        self.calls = 0  # scoring requests served (benchmarks count them)


def _records(body: Any) -> tuple[pd.DataFrame, bool]:
    """The frame a body carries, and whether it came as a pandas JSON frame (keyed by row id)."""
    if isinstance(body, list):
        return pd.DataFrame.from_records(body), False
    if isinstance(body, dict):
        if "columns" in body and "data" in body:
            return pd.DataFrame(body["data"], columns=body["columns"]), False
        if "fields" in body and "values" in body:
            return pd.DataFrame(body["values"], columns=body["fields"]), False
        if body and all(isinstance(v, dict) for v in body.values()):
            frame = pd.DataFrame(body)
            frame.index = frame.index.astype(int)
            return frame.sort_index(), True
    raise ValueError("input must be a list of records, a pandas split or JSON frame, or {fields, values}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    server: AlgorithmiaHost

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without NODELAY, Nagle's algorithm meets the
        # client's delayed ACK and every keep-alive request waits ~40 ms
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: this is a hot loop
        pass

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, stacktrace: str = "") -> None:
        self._send(status, {"error": {"message": message, "stacktrace": stacktrace}})

    def _authorised(self) -> bool:
        if not self.server.key:
            return True
        if self.headers.get("Authorization") == f"Simple {self.server.key}":
            return True
        self._error(401, "authorization required: Simple <api key>")
        return False

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path.strip("/").split("/")
        if path == ["health"]:
            self._send(200, {"status": "ok", "algorithms": sorted(self.server.models), "calls": self.server.calls})
            return
        if len(path) == 5 and path[:2] == ["v1", "algorithms"] and path[4] == "versions":
            if not self._authorised():
                return
            prefix = f"{path[2]}/{path[3]}/"
            versions = [name[len(prefix) :] for name in self.server.models if name.startswith(prefix)]
            if not versions:
                self._error(404, f"algorithm {path[2]}/{path[3]} not found")
                return
            self._send(
                200,
                {
                    "marker": None,
                    "next_link": None,
                    "results": [
                        {
                            "version_info": {"semantic_version": v, "release_notes": ""},
                            "created": self.server.created,
                            "details": {"language": "python3"},
                        }
                        for v in sorted(versions)
                    ],
                },
            )
            return
        self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = urlsplit(self.path).path.strip("/").split("/")
        if len(path) != 5 or path[:2] != ["v1", "algo"]:
            self._error(404, f"no route {self.path}")
            return
        if not self._authorised():
            return
        name = "/".join(path[2:])
        model = self.server.models.get(name)
        if model is None:
            self._error(404, f"algorithm {name} not found")
            return
        started = time.perf_counter()
        try:
            frame, keyed = _records(json.loads(raw))
            result = model.predict(frame)
        except (ValueError, KeyError, TypeError) as exc:
            self._error(400, f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=3))
            return
        except Exception as exc:  # the algorithm itself failed: say so, as Algorithmia does
            self._error(500, f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=3))
            return
        if keyed:
            result = {k: {str(i): v for i, v in zip(frame.index, values, strict=True)} for k, values in result.items()}
        self.server.calls += 1
        self._send(
            200, {"result": result, "metadata": {"content_type": "json", "duration": time.perf_counter() - started}}
        )


def serve(models: dict[str, str], host: str = "127.0.0.1", port: int = 0, key: str | None = None) -> AlgorithmiaHost:
    loaded = {name: ServedModel.load(path) for name, path in models.items()}
    return AlgorithmiaHost((host, port), loaded, key)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="owner/algo/version=path.joblib (repeat)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    models = dict(m.split("=", 1) for m in args.model)
    server = serve(models, args.host, args.port, os.environ.get("ALGORITHMIA_HOST_KEY") or None)
    print(f"serving {sorted(models)} on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
