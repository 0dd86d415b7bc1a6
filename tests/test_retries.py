"""Retries only where a retry can help, against real local HTTP servers: the requests each server
received are counted; times are bounded loosely (CI machines are small and busy)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from openmart_algorithmia import AlgorithmiaProvider
from openmart_custom import CustomProvider

from openmart.errors import (
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
    ValidationError,
)

GOOD = json.dumps({"prediction": 1, "probability": 0.9}).encode()
KINDS = {"400", "500", "429", "503-long", "notjson", "shape", "flaky", "hang"}


class Deployment:
    """A threaded HTTP server answering by path: /400, /500, /429 (Retry-After: 1), /503-long
    (Retry-After: 120), /notjson, /shape (JSON without a prediction), /flaky (500 twice, then an
    answer), /hang (answers only when released), /ok."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.release = threading.Event()
        deployment = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                segments = self.path.split("?")[0].split("/")
                path = next((seg for seg in segments if seg in KINDS), "ok")
                with deployment.lock:
                    deployment.counts[path] += 1
                    seen = deployment.counts[path]
                deployment.answer(self, path, seen)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def answer(self, handler: BaseHTTPRequestHandler, path: str, seen: int) -> None:
        status, body, headers = 200, GOOD, {}
        if path == "400":
            status, body = 400, b'{"detail": "feature x is missing"}'
        elif path == "500" or (path == "flaky" and seen <= 2):
            status, body = 500, b'{"detail": "boom"}'
        elif path == "429":
            status, body, headers = 429, b"{}", {"Retry-After": "1"}
        elif path == "503-long":
            status, body, headers = 503, b"{}", {"Retry-After": "120"}
        elif path == "notjson":
            body = b"<html>not json</html>"
        elif path == "shape":
            body = b'{"label": 1}'
        elif path == "hang":
            self.release.wait(60)  # until the test ends: the client's read timeout fires first
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    d = Deployment()
    yield d
    d.close()


@pytest.fixture
def refused_url() -> str:
    """A port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/predict"


# one record: with several, the provider stops sending the rest once one has failed for good
RECORDS = pd.DataFrame({"x": [1.0]})


def _score(url: str, **settings: str) -> tuple[Exception | None, float]:
    provider = CustomProvider({"url": url, "mode": "single", **settings})
    started = time.monotonic()
    try:
        provider.score(provider.path, RECORDS)
        error = None
    except Exception as exc:  # the test looks at which
        error = exc
    finally:
        provider.close()
    return error, time.monotonic() - started


@pytest.mark.parametrize(
    ("path", "error"),
    [("400", ProviderHTTPError), ("notjson", ProviderResponseError), ("shape", ProviderResponseError)],
)
def test_answers_that_will_not_change_fail_at_once(deployment: Deployment, path: str, error: type) -> None:
    exc, elapsed = _score(f"{deployment.url}/{path}")
    assert isinstance(exc, error), exc
    assert deployment.counts[path] == 1  # not repeated
    assert elapsed < 60


def test_server_errors_are_retried_up_to_the_cap(deployment: Deployment) -> None:
    exc, elapsed = _score(f"{deployment.url}/500", retries="3")
    assert isinstance(exc, ProviderHTTPError) and exc.status == 500
    assert deployment.counts["500"] == 4  # 1 try + 3 retries
    assert "4 tries" in str(exc)
    assert elapsed < 120


def test_a_retry_mends_a_passing_failure(deployment: Deployment) -> None:
    provider = CustomProvider({"url": f"{deployment.url}/flaky", "mode": "single"})
    result = provider.score(provider.path, RECORDS)
    provider.close()
    assert result.predictions == [1]
    assert deployment.counts["flaky"] == 3


def test_retry_after_is_honoured(deployment: Deployment) -> None:
    exc, elapsed = _score(f"{deployment.url}/429", retries="2")
    assert isinstance(exc, ProviderHTTPError) and exc.status == 429
    assert deployment.counts["429"] == 3
    assert 2.0 <= elapsed < 120  # waited the 1 s asked, twice (a lower bound: busy machines only add)


def test_retry_after_beyond_the_budget_fails_at_once(deployment: Deployment) -> None:
    exc, elapsed = _score(f"{deployment.url}/503-long", retry_budget="30")
    assert isinstance(exc, ProviderHTTPError) and exc.status == 503
    assert deployment.counts["503-long"] == 1
    assert "retry budget" in str(exc)
    assert elapsed < 60


def test_total_budget_caps_the_tries(deployment: Deployment) -> None:
    exc, elapsed = _score(f"{deployment.url}/500", retries="10", retry_budget="1")
    assert isinstance(exc, ProviderHTTPError)
    # waits of about 0.2, 0.4, 0.8 s: the budget stops the tries long before the cap of 11
    assert 2 <= deployment.counts["500"] <= 5
    assert elapsed < 60


def test_refused_connection_is_retried_then_reported(refused_url: str) -> None:
    exc, elapsed = _score(refused_url, retries="2")
    assert isinstance(exc, ProviderConnectionError)
    assert "3 tries" in str(exc)
    assert elapsed < 60


def test_read_timeout_is_not_retried(deployment: Deployment) -> None:
    exc, elapsed = _score(f"{deployment.url}/hang", timeout="1", retries="3")
    assert isinstance(exc, ProviderTimeout)
    assert deployment.counts["hang"] == 1  # the deployment has the request; asking again only adds load
    assert elapsed < 60


def test_algorithmia_shares_the_policy(deployment: Deployment) -> None:
    provider = AlgorithmiaProvider({"base_url": deployment.url, "retries": "2"})
    for path, tries in (("400", 1), ("500", 3)):
        with pytest.raises(ProviderHTTPError):
            provider.score(f"me/{path}/1.0.0", RECORDS)
        assert deployment.counts[path] == tries
        deployment.counts.clear()
    provider.close()


@pytest.mark.parametrize("settings", [{"retries": "-1"}, {"retries": "1.5"}, {"retry_budget": "abc"}])
def test_retry_settings_are_validated(settings: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="retr"):
        CustomProvider.validate_settings({"url": "http://127.0.0.1:1/p", **settings})


def test_sagemaker_retries_are_bounded(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 in standard retry mode, capped: a 500 is asked ``retries + 1`` times, a 4xx once."""
    from openmart_sagemaker import SageMakerProvider

    monkeypatch.setenv("AWS_ENDPOINT_URL", deployment.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    provider = SageMakerProvider({"region": "us-east-1", "retries": "2"})
    with pytest.raises(ProviderHTTPError):
        provider.invoke("500", b"1.0", "text/csv")
    assert deployment.counts["500"] == 3
    with pytest.raises(ProviderHTTPError):
        provider.invoke("400", b"1.0", "text/csv")
    assert deployment.counts["400"] == 1
