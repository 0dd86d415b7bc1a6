#!/usr/bin/env python3
"""Run LocalStack on this host (no Docker), in its own virtual environment, with openmart's
SageMaker extension. Standard library only: any python3 runs it.

    python localstack/manage.py ensure|start|stop|status

- ensure: create the environment when missing (``$OPENMART_LOCALSTACK_VENV``, default
  ``~/.cache/openmart/localstack-venv``), install ``requirements.txt`` and the extension;
  reinstall when either changed (a hash stamp).
- start: ensure, then start LocalStack on 127.0.0.1:4566 in the background, wait until it is
  healthy and SageMaker answers, and run the init hooks (buckets); does nothing when it runs.
- stop: stop the LocalStack this script started.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("OPENMART_LOCALSTACK_VENV", Path.home() / ".cache/openmart/localstack-venv"))
STATE = Path(os.environ.get("OPENMART_LOCALSTACK_STATE", Path.home() / ".cache/openmart/localstack-state"))
ENDPOINT = os.environ.get("OPENMART_LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566")
BUCKETS = ("openmart-models", "openmart-capture", "openmart-ground-truth")


def say(message: str) -> None:
    print(f"[localstack] {message}", file=sys.stderr, flush=True)


def _python() -> str:
    """A Python 3.13 (LocalStack 4.14 uses PEP 695 syntax and warnings.deprecated): on PATH, or under pyenv."""
    import glob
    import shutil

    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for version in ("3.13", "3.12"):
        found = shutil.which(f"python{version}")
        if found and "/shims/" not in found:  # a pyenv shim may point at no installed version
            return found
        for exe in sorted(glob.glob(str(pyenv / "versions" / f"{version}*" / "bin" / f"python{version}"))):
            return exe
    raise SystemExit("LocalStack needs Python 3.12 or 3.13 (none found on PATH or under pyenv)")


def _stamp() -> str:
    digest = hashlib.sha256((HERE / "requirements.txt").read_bytes())
    for path in sorted((HERE / "extension").rglob("*")):
        skip = "__pycache__" in path.parts or "build" in path.parts or any(p.endswith(".egg-info") for p in path.parts)
        if path.is_file() and not skip:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure() -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / ".openmart-stamp"
    want = _stamp()
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    if python.exists() and not stamp.exists():
        import shutil

        shutil.rmtree(VENV)  # half-made, or made by another Python: start again
    if not python.exists():
        say(f"creating LocalStack's environment in {VENV}")
        subprocess.run([_python(), "-m", "venv", str(VENV)], check=True)
    say("installing LocalStack and the SageMaker extension (a few minutes the first time)")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + ["-r", str(HERE / "requirements.txt")], check=True)
    subprocess.run(pip + ["--force-reinstall", "--no-deps", str(HERE / "extension")], check=True)
    stamp.write_text(want)
    return python


def healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{ENDPOINT}/_localstack/health", timeout=2) as r:
            services = json.load(r).get("services", {})
        return "s3" in services
    except OSError:
        return False


def _aws(python: Path, code: str) -> None:
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=ENDPOINT,
    )
    subprocess.run([str(python), "-c", code], check=True, env=env)


def init(python: Path) -> None:
    """Init hooks: what the tests and notebooks expect to find."""
    _aws(
        python,
        "import boto3\ns3 = boto3.client('s3')\nhave = {b['Name'] for b in s3.list_buckets()['Buckets']}\n"
        f"for b in {BUCKETS!r}:\n    b in have or s3.create_bucket(Bucket=b)\n"
        "boto3.client('sagemaker').list_endpoints()\n",
    )


def start() -> None:
    python = ensure()
    if healthy():
        say(f"already running at {ENDPOINT}")
        init(python)
        return
    STATE.mkdir(parents=True, exist_ok=True)
    host = ENDPOINT.removeprefix("http://")
    env = dict(
        os.environ,
        GATEWAY_LISTEN=host,
        LOCALSTACK_VOLUME_DIR=str(STATE / "volume"),
        PROVIDER_OVERRIDE_SAGEMAKER="openmart",
        PROVIDER_OVERRIDE_SAGEMAKER_RUNTIME="openmart",
        SKIP_SSL_CERT_DOWNLOAD="1",
        DISABLE_EVENTS="1",
        LOCALSTACK_TELEMETRY_DISABLED="1",
    )
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(key, None)
    log = open(STATE / "localstack.log", "ab")  # noqa: SIM115 (the child keeps writing after we return)
    process = subprocess.Popen(
        [str(python), "-m", "localstack.runtime.main"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (STATE / "localstack.pid").write_text(str(process.pid))
    deadline = time.monotonic() + 120
    while not healthy():
        if process.poll() is not None:
            raise SystemExit(f"LocalStack exited ({process.returncode}); see {STATE / 'localstack.log'}")
        if time.monotonic() > deadline:
            raise SystemExit(f"LocalStack did not become healthy; see {STATE / 'localstack.log'}")
        time.sleep(0.5)
    init(python)
    say(f"ready at {ENDPOINT} (pid {process.pid}, log {STATE / 'localstack.log'})")


def stop() -> None:
    pidfile = STATE / "localstack.pid"
    if not pidfile.exists():
        say("not started by this script")
        return
    pid = int(pidfile.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)
    say("stopped")


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "ensure":
        print(ensure())
    elif command == "start":
        start()
    elif command == "stop":
        stop()
    elif command == "status":
        print("running" if healthy() else "not running")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
