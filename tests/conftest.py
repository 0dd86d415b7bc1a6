"""Shared fixtures: a real PostgreSQL for every test, each test in a schema of its own.

The machine's server on 127.0.0.1:5432 is used when it answers (CI machines have it); otherwise
the embedded default, started once for the session under a temporary data directory.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import openmart
from openmart.config import Settings

LOCAL_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("OPENMART_TEST_DATABASE_URL")
    if url:
        return url
    if _answers("127.0.0.1", 5432):
        return LOCAL_URL
    from openmart.mart.embedded import ensure_running

    server = ensure_running(tmp_path_factory.mktemp("embedded") / "postgres")
    return server.url


@pytest.fixture
def schema_name(database_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    from openmart.mart.engine import resolve

    engine = sa.create_engine(resolve(database_url, Settings.from_env()).url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=None, data_dir=tmp_path / "data", secret_key=None)


@pytest.fixture
def mart(database_url: str, schema_name: str, settings: Settings) -> Iterator[openmart.Mart]:
    m = openmart.connect(database_url, schema=schema_name, settings=settings)
    yield m
    m.close()


@pytest.fixture
def cli(database_url: str, schema_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run ``openmart ...`` through Typer's CliRunner against this test's mart; asserts success
    unless ``ok=False``."""
    from typer.testing import CliRunner

    from openmart.cli.app import app

    monkeypatch.setenv("OPENMART_DATABASE_URL", database_url)
    monkeypatch.setenv("OPENMART_SCHEMA", schema_name)
    monkeypatch.setenv("OPENMART_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def run(*args: str, ok: bool = True):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, list(args))
        if ok:
            assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
        return result

    return run
