"""Alembic environment: the engine and schema come from openmart (``openmart.mart.migrate``)."""

from __future__ import annotations

import re

from alembic import context
from sqlalchemy.engine import Connection

from openmart.mart.models import Base

# per-subscription record tables are made at subscribe time, not by migrations
_RECORD_TABLE = re.compile(r"^(payload|feedback|reference)_\d+$")


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:  # type: ignore[type-arg]
    if type_ != "table" or name is None:
        return True
    return not (_RECORD_TABLE.match(name) or name == "alembic_version")


def migrate(connection: Connection, schema: str) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table_schema=schema,
        include_name=include_name,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    cfg = context.config
    schema = cfg.attributes["schema"]
    connection = cfg.attributes.get("connection")
    if connection is not None:  # the caller's transaction (migrate.upgrade holds its lock in it); it commits
        migrate(connection, schema)
        return
    with cfg.attributes["engine"].connect() as connection:
        migrate(connection, schema)
        connection.commit()


run()
