"""Where the mart lives: any PostgreSQL 13+ through ``OPENMART_DATABASE_URL``, or the embedded
default. Every connection works inside one PostgreSQL schema (``openmart`` unless told
otherwise), so a mart can share a database, and tests can each have their own."""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from openmart.config import Settings
from openmart.errors import ConfigError, MartUnavailable
from openmart.mart.identifiers import validate_schema

log = logging.getLogger(__name__)
DEFAULT_SCHEMA = "openmart"


@dataclass(frozen=True)
class Location:
    url: str
    schema: str
    embedded_pgdata: Path | None  # set when the mart is the embedded default

    def describe(self) -> str:
        where = (
            f"embedded PostgreSQL in {self.embedded_pgdata}"
            if self.embedded_pgdata
            else (make_url(self.url).render_as_string(hide_password=True))
        )
        return f"{where} (schema {self.schema})"


def resolve(url: str | None, settings: Settings, schema: str = DEFAULT_SCHEMA) -> Location:
    validate_schema(schema)
    url = url or settings.database_url
    if url:
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        try:
            parsed = make_url(url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"OPENMART_DATABASE_URL is not a database URL: {exc}") from exc
        if not parsed.drivername.startswith("postgresql"):
            raise ConfigError(f"openmart needs PostgreSQL, got {parsed.drivername!r}")
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg2")
        return Location(parsed.render_as_string(hide_password=False), schema, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR inside the wheel
        from openmart.mart.embedded import ensure_running

    server = ensure_running(settings.embedded_pgdata)
    return Location(server.url, schema, server.pgdata)


def advisory_key(purpose: str, schema: str) -> int:
    """A PostgreSQL advisory lock key (signed 64-bit) for ``purpose`` on ``schema``, the same in
    every process (a sha256, not Python's per-process ``hash``)."""
    digest = hashlib.sha256(f"openmart:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def create_engine(location: Location, **kwargs: object) -> Engine:
    engine = sa.create_engine(location.url, pool_pre_ping=True, future=True, **kwargs)
    schema = location.schema

    @sa.event.listens_for(engine, "connect")
    def _search_path(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            if cur.fetchone() is None:
                # concurrent CREATE SCHEMA IF NOT EXISTS can still collide on pg_namespace's unique
                # index: first connections of several processes take turns (lock ends with the commit)
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("create-schema", schema),))
                cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            cur.execute(f'SET search_path TO "{schema}", public')
        dbapi_conn.commit()

    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        raise MartUnavailable(f"cannot reach the mart at {location.describe()}: {exc.orig}") from exc
    return engine
