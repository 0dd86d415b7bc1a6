"""Shared by the REST API's tests: records of a small credit-shaped subscription, the mart's own
counts, keys of each scope, a real HTTP model, and polling with a deadline."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import openmart
from openmart.secrets import new_key
from tests.service_support import Service, running_service, service_env

DEADLINE = 300.0  # seconds any awaited condition may take on a loaded machine
FEATURES = ["sex", "income", "debt"]
T = TypeVar("T")


def records(n: int, seed: int = 0, *, ids: str | None = None, label: bool = False) -> list[dict[str, Any]]:
    """``n`` scored records (prediction: income > 50); ``ids``: scoring ids ``<ids>-0...``;
    ``label``: with the truth (agreeing with the prediction four times in five)."""
    rng = np.random.default_rng(seed)
    income = rng.uniform(0, 100, n).round(2).tolist()
    debt = rng.uniform(0, 10, n).round(2).tolist()
    sex = rng.choice(["female", "male"], n).tolist()
    agree = (rng.random(n) < 0.8).tolist()
    out = []
    for k in range(n):
        predicted = int(income[k] > 50)
        record: dict[str, Any] = {
            "sex": sex[k],
            "income": income[k],
            "debt": debt[k],
            "prediction": predicted,
            "probability": 0.75 if predicted else 0.25,
        }
        if label:
            record["label"] = predicted if agree[k] else 1 - predicted
        if ids is not None:
            record["scoring_id"] = f"{ids}-{k}"
        out.append(record)
    return out


def reference(n: int = 200) -> list[dict[str, Any]]:
    return [{k: r[k] for k in (*FEATURES, "label")} for r in records(n, seed=99, label=True)]


def subscribe(mart: openmart.Mart, name: str = "credit", **kwargs: Any) -> openmart.api.Subscription:
    import pandas as pd

    return mart.subscriptions.add(
        name, reference=pd.DataFrame(reference()), label="label", problem_type="binary", **kwargs
    )


def count(mart: openmart.Mart, table: str, what: str = "count(*)") -> int:
    """From the mart's own table."""
    return int(mart.sql(f'SELECT {what} AS n FROM "{table}"')["n"][0])


def table(mart: openmart.Mart, subscription: str, kind: str) -> str:
    return str(mart.subscriptions.get(subscription).record.table(kind))


def keys(mart: openmart.Mart) -> dict[str, str]:
    return {scope: mart.keys.create(f"{scope}-key", scope)[1] for scope in ("read", "write", "admin")}


@contextmanager
def service(database_url: str, schema: str, tmp_path: Path, *args: str) -> Iterator[Service]:
    """``openmart serve`` with a secret key, so bindings' secrets can be sealed."""
    env = service_env(database_url, schema, tmp_path / "data", OPENMART_SECRET_KEY=new_key())
    with running_service(database_url, schema, tmp_path, *args, env=env) as svc:
        yield svc


def wait_for(condition: Callable[[], T | None], what: str, deadline: float = DEADLINE) -> T:
    """Poll ``condition`` until it returns something truthy (then return it); fail after ``deadline``."""
    end = time.monotonic() + deadline
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what} after {deadline:g} s")
        time.sleep(0.1)  # the polling interval, not a synchronisation


class Model:
    """A real HTTP deployment (custom provider, ``records`` mode): prediction income > 50."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body = json.dumps(
                    {
                        "predictions": [int(float(r["income"]) > 50) for r in rows],
                        "probabilities": [min(max(float(r["income"]) / 100, 0.0), 1.0) for r in rows],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
