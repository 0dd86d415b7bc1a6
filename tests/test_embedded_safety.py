"""The embedded default under concurrency and careless setups: many first commands at once, a
restart by many commands, a stale pid file, long and unusable data paths, and the modes of the
user's directories (run as root, openmart used to open them up)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from openmart.mart.embedded import ensure_running, socket_dir_for, stop

PROCESSES = 8
# one process: open the mart (the embedded default unless a URL is given), say which server answered
_CONNECT = """
import sys
from pathlib import Path
import openmart
from openmart.config import Settings
url = sys.argv[2] or None
mart = openmart.connect(url, schema=sys.argv[3], settings=Settings(None, Path(sys.argv[1]), None))
print(mart.sql("SELECT pg_postmaster_start_time()::text AS t")["t"][0])
print(mart.status()["up_to_date"])
mart.close()
"""


def _at_once(data_dir: Path, n: int = PROCESSES, url: str = "", schema: str = "openmart") -> list[list[str]]:
    """Start ``n`` processes together; each opens the mart. Returns their output lines; fails
    with the stderr of any that failed."""
    env = {**os.environ, "OPENMART_DATABASE_URL": "", "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONNECT, str(data_dir), url, schema],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(n)
    ]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    failed = [err for p, _, err in results if p.returncode != 0]
    assert not failed, f"{len(failed)} of {n} failed; first:\n{failed[0]}"
    return [out.splitlines() for _, out, _ in results]


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and "-D" in cmdline and cmdline[cmdline.index("-D") + 1] == str(pgdata):
            found.append(proc)
    return found


def _modes(path: Path) -> dict[Path, int]:
    """The modes of ``path`` and every directory above it."""
    return {p: p.stat().st_mode for p in [path, *path.parents]}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)  # like a home directory: only its owner may enter
    yield home / "data"
    stop(home / "data" / "postgres", mode="immediate")


def test_eight_first_starts_then_eight_restarts(data_dir: Path) -> None:
    home = data_dir.parent
    modes_before = _modes(home)
    pgdata = (data_dir / "postgres").resolve()

    first = _at_once(data_dir)
    assert {lines[0] for lines in first} == {first[0][0]}, "one server answered all of them"
    assert all(lines[1] == "True" for lines in first)
    assert len(_postmasters(pgdata)) == 1
    # nothing openmart did not create changed mode (as root it used to add search bits to parents)
    assert _modes(home) == modes_before

    assert stop(pgdata) is True
    assert _postmasters(pgdata) == []
    again = _at_once(data_dir)
    assert {lines[0] for lines in again} == {again[0][0]} != {first[0][0]}, "restarted once"
    assert len(_postmasters(pgdata)) == 1


def test_socket_directory_is_short_stable_and_private(data_dir: Path) -> None:
    pgdata = (data_dir / "postgres").resolve()
    server = ensure_running(pgdata)
    assert server.socket_dir == socket_dir_for(pgdata)
    # a real hash: the same name in another interpreter (Python's hash() differs per process)
    other = subprocess.run(
        [sys.executable, "-c", f"from openmart.mart.embedded import socket_dir_for as f; print(f({str(pgdata)!r}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == str(server.socket_dir)
    assert len(str(server.socket_dir / ".s.PGSQL.5432")) < 100
    assert server.socket_dir.stat().st_mode & 0o077 == 0
    assert ensure_running(pgdata) == server  # reused, not restarted


def test_long_data_path(tmp_path: Path) -> None:
    data_dir = tmp_path / ("d" * 60) / ("e" * 60)
    pgdata = (data_dir / "postgres").resolve()
    assert len(str(pgdata).encode()) > 120
    try:
        (lines,) = _at_once(data_dir, n=1)
        assert lines[1] == "True"
    finally:
        stop(pgdata, mode="immediate")


def test_stale_pid_files_are_recovered(data_dir: Path) -> None:
    pgdata = (data_dir / "postgres").resolve()
    ensure_running(pgdata)
    # 1. the server was killed: its pid file stays behind, naming a process that is gone
    (postmaster,) = _postmasters(pgdata)
    children = postmaster.children(recursive=True)
    postmaster.kill()
    _, alive = psutil.wait_procs([postmaster, *children], timeout=60)
    assert not alive
    assert (pgdata / "postmaster.pid").exists()
    _at_once(data_dir, n=3)

    # 2. after a reboot the pid in the file may belong to another program (here: this test)
    assert stop(pgdata) is True
    socket_dir = socket_dir_for(pgdata)
    lines = [str(os.getpid()), str(pgdata), "0", "5432", str(socket_dir), "", "0 0", "ready"]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
    (lines_out,) = _at_once(data_dir, n=1)
    assert lines_out[1] == "True"
    assert len(_postmasters(pgdata)) == 1


def _db_status(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENMART_DATA_DIR": str(data_dir), "OPENMART_DATABASE_URL": "", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "openmart"), "db", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _assert_one_clear_line(result: subprocess.CompletedProcess[str], path: Path) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and "OPENMART_DATA_DIR" in lines[0]


def test_unusable_data_dir_parent_is_a_file(tmp_path: Path) -> None:
    # a file where a directory is expected stops root as well as anyone (chmod would not)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    _assert_one_clear_line(_db_status(blocker / "data"), blocker / "data")


def test_unusable_data_dir_on_read_only_filesystem(tmp_path: Path) -> None:
    mountpoint = tmp_path / "ro"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mountpoint)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        _assert_one_clear_line(_db_status(mountpoint / "data"), mountpoint / "data")
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_eight_first_connects_on_a_fresh_schema(database_url: str, schema_name: str, tmp_path: Path) -> None:
    """Concurrent first commands against any PostgreSQL: the schema and its migration are made
    once (they used to collide on pg_namespace and on alembic_version)."""
    results = _at_once(tmp_path / "unused", url=database_url, schema=schema_name)
    assert all(lines[1] == "True" for lines in results)
