"""Alembic environment: the engine and schema come from openmart (``openmart.mart.migrate``)."""

from __future__ import annotations

import re

from alembic import context

from openmart.mart.models import Base

# per-subscription record tables are made at subscribe time, not by migrations
_RECORD_TABLE = re.compile(r"^(payload|feedback|reference)_\d+$")


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:  # type: ignore[type-arg]
    if type_ != "table" or name is None:
        return True
    return not (_RECORD_TABLE.match(name) or name == "alembic_version")


def run() -> None:
    cfg = context.config
    engine = cfg.attributes["engine"]
    schema = cfg.attributes["schema"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table_schema=schema,
            include_name=include_name,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
