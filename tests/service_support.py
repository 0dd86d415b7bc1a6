"""Start ``openmart serve`` for real (a uvicorn process on a free port) against a test's mart.

    with running_service(database_url, schema_name, tmp_path, "--no-auth") as svc:
        httpx.get(svc.url + "/health")

Waits for ``/health`` to answer (no fixed sleep), and stops the process with SIGTERM afterwards
(SIGKILL if it does not end within a minute)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

START_DEADLINE = 180.0  # seconds: a loaded CI machine imports pandas, sklearn and FastAPI slowly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, key: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120.0, **kwargs)  # type: ignore[arg-type]


def service_env(database_url: str, schema: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "OPENMART_DATABASE_URL": database_url,
        "OPENMART_SCHEMA": schema,
        "OPENMART_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, deadline: float = START_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"openmart serve exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url + "/health", timeout=5.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling interval while waiting for the condition, not synchronisation by sleep
    output = log.read_text(errors="replace")
    raise RuntimeError(f"openmart serve did not answer /health within {deadline:g} s:\n{output}")


@contextmanager
def running_service(
    database_url: str, schema: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Service]:
    """``openmart serve`` with ``args`` (e.g. ``--no-auth``, ``--workers 2``); scheduler off
    unless ``--scheduler`` is among them."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    argv = [sys.executable, "-m", "openmart.cli.app", "serve", "--port", str(port), "--log-level", "warning"]
    if "--scheduler" not in args:
        argv.append("--no-scheduler")
    argv += list(args)
    environ = env or service_env(database_url, schema, tmp_path / "data")
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=environ, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log)
        yield Service(url, process, log)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
