"""The ``bindings`` table behind typed functions. Settings arrive here already sealed (secrets
encrypted, URLs redacted, see :mod:`openmart.secrets`): this layer stores what it is given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openmart.errors import AlreadyExists, NotFound, ValidationError
from openmart.mart import models, subscriptions


@dataclass(frozen=True)
class BindingRecord:
    id: int
    name: str
    provider: str
    stored_settings: Mapping[str, str]
    created_at: datetime


def _record(row: sa.Row) -> BindingRecord:
    return BindingRecord(row.id, row.name, row.provider, dict(row.settings), row.created_at)


_COLUMNS = (models.Binding.id, models.Binding.name, models.Binding.provider, models.Binding.settings)


def get(conn: Connection, name: str) -> BindingRecord:
    row = conn.execute(sa.select(*_COLUMNS, models.Binding.created_at).where(models.Binding.name == name)).first()
    if row is None:
        raise NotFound(f"no binding named {name!r}")
    return _record(row)


def list_all(conn: Connection) -> list[BindingRecord]:
    rows = conn.execute(sa.select(*_COLUMNS, models.Binding.created_at).order_by(models.Binding.name)).all()
    return [_record(r) for r in rows]


def insert(conn: Connection, name: str, provider: str, stored: Mapping[str, str]) -> BindingRecord:
    if conn.execute(sa.select(models.Binding.id).where(models.Binding.name == name)).first():
        raise AlreadyExists(f"a binding named {name!r} exists already")
    conn.execute(sa.insert(models.Binding).values(name=name, provider=provider, settings=dict(stored)))
    return get(conn, name)


def remove(conn: Connection, name: str) -> None:
    """Remove a binding no subscription uses."""
    binding = get(conn, name)
    users = subscriptions.names_using_binding(conn, binding.id)
    if users:
        raise ValidationError(f"binding {name!r} is used by subscriptions {users}: remove them first")
    conn.execute(sa.delete(models.Binding).where(models.Binding.id == binding.id))


def all_for_update(conn: Connection) -> list[BindingRecord]:
    """Every binding, locked until the caller's transaction ends (key rotation rewrites them all)."""
    rows = conn.execute(
        sa.select(*_COLUMNS, models.Binding.created_at).order_by(models.Binding.id).with_for_update()
    ).all()
    return [_record(r) for r in rows]


def update_settings(conn: Connection, binding_id: int, stored: Mapping[str, str]) -> None:
    conn.execute(sa.update(models.Binding).where(models.Binding.id == binding_id).values(settings=dict(stored)))
