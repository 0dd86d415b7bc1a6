"""Fixtures for the fault-injection suite: a mart whose PostgreSQL the test may stop, small
filesystems that really fill up or refuse writes, real deployments, and counting from the
mart's own tables."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

import openmart
from openmart.config import Settings
from openmart.mart.embedded import ensure_running, stop

FEATURES = ["sex", "income", "debt"]


class Blinking:
    """A mart on a PostgreSQL server of the test's own, which the test can stop and start."""

    def __init__(self, pgdata: Path, data_dir: Path) -> None:
        self.pgdata = pgdata
        self.server = ensure_running(pgdata)
        self.settings = Settings(database_url=None, data_dir=data_dir, secret_key=None)

    def connect(self, schema: str = "openmart") -> openmart.Mart:
        return openmart.connect(self.server.url, schema=schema, settings=self.settings)

    def cut(self) -> None:
        stop(self.pgdata, mode="immediate")

    def restore(self) -> None:
        ensure_running(self.pgdata)


@pytest.fixture
def blinking(tmp_path: Path) -> Iterator[Blinking]:
    b = Blinking(tmp_path / "pg", tmp_path / "data")
    yield b
    stop(b.pgdata, mode="immediate")


def _mount(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


class SmallFilesystem:
    """A real tmpfs of a few hundred KiB: it can be filled, emptied, made read-only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        if not _mount(root, "size=512k"):
            pytest.skip("mounting a tmpfs is not permitted here (needs root in the sandbox)")

    def fill(self) -> None:
        with open(self.root / "filler", "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass

    def free(self) -> None:
        (self.root / "filler").unlink(missing_ok=True)

    def read_only(self, on: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,{'ro' if on else 'rw'}", str(self.root)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.root)], check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFilesystem]:
    fs = SmallFilesystem(tmp_path / "fs")
    yield fs
    fs.unmount()


@contextlib.contextmanager
def deployment(answer: Callable[[dict], bytes]) -> Iterator[str]:
    """A real HTTP deployment on a free port whose answer to each JSON record the test chooses."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def crafted_answer(record: dict) -> bytes:
    """income < 0 answers a class the model does not have, debt < 0 something that is not
    JSON; otherwise a fair answer."""
    if record["debt"] < 0:
        return b"<html>oops</html>"
    if record["income"] < 0:
        return json.dumps({"prediction": 7, "probability": 0.5}).encode()
    return json.dumps({"prediction": int(record["income"] > 50), "probability": 0.75}).encode()


@pytest.fixture
def crafted_model() -> Iterator[str]:
    with deployment(crafted_answer) as url:
        yield url


def answering(answer: dict) -> contextlib.AbstractContextManager[str]:
    """A deployment that answers ``answer`` to every record."""
    body = json.dumps(answer).encode()
    return deployment(lambda _record: body)


def reference() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sex": ["female", "male"] * 20,
            "income": [float(i) for i in range(40)],
            "debt": [float(i % 7) for i in range(40)],
            "label": [0, 1] * 20,
        }
    )


def subscribe(mart: openmart.Mart, url: str, name: str = "credit") -> openmart.api.Subscription:
    binding = f"b{uuid.uuid4().hex[:6]}"
    mart.bindings.add(
        binding,
        "custom",
        {"url": f"{url}/predict", "mode": "single", "prediction": "$.prediction", "probability": "$.probability"},
    )
    return mart.subscriptions.add(
        name, reference=reference(), label="label", problem_type="binary", binding=binding, deployment="/predict"
    )


def stored_ids(mart: openmart.Mart, sub: openmart.api.Subscription) -> list[str]:
    """Every scoring id the payload table holds (duplicates included: there must be none)."""
    return mart.sql(f'SELECT scoring_id FROM "{sub.payload.table}"')["scoring_id"].tolist()
