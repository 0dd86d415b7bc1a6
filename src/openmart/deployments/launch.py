"""Start reference deployments as real processes on 127.0.0.1, wait until they answer, stop them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningDeployment:
    url: str
    process: subprocess.Popen[bytes]
    log: Path | None = field(default=None)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> RunningDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the deployment process exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise TimeoutError(f"the deployment at {url} did not answer within {timeout} s")


def start_algorithmia(
    models: dict[str, str | Path], *, port: int = 0, key: str | None = None, timeout: float = 30.0
) -> RunningDeployment:
    """The Algorithmia-like host serving ``{"owner/algo/version": model.joblib}``."""
    port = port or free_port()
    env = dict(os.environ)
    env.pop("ALGORITHMIA_HOST_KEY", None)
    if key:
        env["ALGORITHMIA_HOST_KEY"] = key
    args = [sys.executable, "-m", "openmart.deployments.algorithmia_host", "--port", str(port)]
    for name, path in models.items():
        args += ["--model", f"{name}={path}"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait(url, process, timeout)
    return RunningDeployment(url, process)


def start_fastapi(model: str | Path, *, port: int = 0, timeout: float = 30.0) -> RunningDeployment:
    """The FastAPI single-record service; its scoring route is ``{url}/predict``."""
    port = port or free_port()
    env = dict(os.environ, OPENMART_MODEL_PATH=str(model))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "openmart.deployments.fastapi_app:from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    _wait(url, process, timeout)
    return RunningDeployment(url, process)
