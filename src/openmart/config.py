"""Typed settings read from the environment (``OPENMART_*``). Nothing runs at import."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


@dataclass(frozen=True)
class Settings:
    #: any PostgreSQL 13+ (SQLAlchemy URL); None means the embedded default
    database_url: str | None
    #: where openmart keeps its own files: the embedded PostgreSQL, the capture spool
    data_dir: Path
    #: Fernet key (urlsafe base64, 32 bytes) used to encrypt secrets stored in binding settings
    secret_key: str | None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = env.get("OPENMART_DATA_DIR") or platformdirs.user_data_dir("openmart", appauthor=False)
        return cls(
            database_url=env.get("OPENMART_DATABASE_URL") or None,
            data_dir=Path(data_dir).expanduser(),
            secret_key=env.get("OPENMART_SECRET_KEY") or None,
        )

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def embedded_pgdata(self) -> Path:
        return self.data_dir / "postgres"
