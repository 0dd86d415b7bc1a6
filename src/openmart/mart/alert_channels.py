"""The ``alert_channels`` table behind typed functions: where a subscription's alerts are sent.

Settings arrive here already sealed (secrets encrypted, the webhook URL kept as a redacted twin
of its sealed clear form, see :mod:`openmart.secrets`): this layer stores what it is given, as
:mod:`openmart.mart.bindings` does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openmart.errors import AlreadyExists, NotFound, ValidationError
from openmart.mart import models


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


def parse_kind(value: str) -> ChannelKind:
    try:
        return ChannelKind(str(value))
    except ValueError:
        choices = ", ".join(ChannelKind)
        raise ValidationError(f"channel kind {value!r}: choose {choices}", column="kind", value=value) from None


@dataclass(frozen=True)
class ChannelRecord:
    id: int
    subscription_id: int
    subscription: str
    name: str
    kind: ChannelKind
    #: as stored: secrets as ``enc:...``; never shown as is (``secrets.redact``)
    stored_settings: Mapping[str, str]
    enabled: bool
    created_at: datetime


_COLUMNS = (
    models.AlertChannel.id,
    models.AlertChannel.subscription_id,
    models.Subscription.name.label("subscription"),
    models.AlertChannel.name,
    models.AlertChannel.kind,
    models.AlertChannel.settings,
    models.AlertChannel.enabled,
    models.AlertChannel.created_at,
)


def _select() -> sa.Select[Any]:
    return sa.select(*_COLUMNS).join(models.Subscription, models.Subscription.id == models.AlertChannel.subscription_id)


def _record(row: sa.Row[Any]) -> ChannelRecord:
    return ChannelRecord(
        id=row.id,
        subscription_id=row.subscription_id,
        subscription=row.subscription,
        name=row.name,
        kind=ChannelKind(row.kind),
        stored_settings={str(k): str(v) for k, v in dict(row.settings).items()},
        enabled=bool(row.enabled),
        created_at=row.created_at,
    )


def get(conn: Connection, subscription_id: int, name: str) -> ChannelRecord:
    c = models.AlertChannel
    row = conn.execute(_select().where(c.subscription_id == subscription_id, c.name == name)).first()
    if row is None:
        raise NotFound(f"subscription {_subscription_name(conn, subscription_id)!r} has no alert channel {name!r}")
    return _record(row)


def get_by_id(conn: Connection, channel_id: int) -> ChannelRecord:
    row = conn.execute(_select().where(models.AlertChannel.id == channel_id)).first()
    if row is None:
        raise NotFound(f"no alert channel {channel_id}")
    return _record(row)


def list_channels(conn: Connection, subscription_id: int | None = None) -> list[ChannelRecord]:
    """A subscription's channels (or every one), by subscription and name."""
    q = _select().order_by(models.Subscription.name, models.AlertChannel.name)
    if subscription_id is not None:
        q = q.where(models.AlertChannel.subscription_id == subscription_id)
    return [_record(r) for r in conn.execute(q)]


def insert(
    conn: Connection, subscription_id: int, name: str, kind: ChannelKind | str, stored: Mapping[str, str]
) -> ChannelRecord:
    c = models.AlertChannel
    kind = parse_kind(str(kind))
    exists = conn.execute(sa.select(c.id).where(c.subscription_id == subscription_id, c.name == name)).first()
    if exists:
        who = _subscription_name(conn, subscription_id)
        raise AlreadyExists(f"subscription {who!r} has an alert channel named {name!r} already")
    conn.execute(sa.insert(c).values(subscription_id=subscription_id, name=name, kind=str(kind), settings=dict(stored)))
    return get(conn, subscription_id, name)


def remove(conn: Connection, subscription_id: int, name: str) -> None:
    """Remove a channel; its deliveries go with it (sent or not: nothing is left to send them to)."""
    channel = get(conn, subscription_id, name)
    conn.execute(sa.delete(models.AlertChannel).where(models.AlertChannel.id == channel.id))


def set_enabled(conn: Connection, subscription_id: int, name: str, enabled: bool) -> ChannelRecord:
    """A disabled channel gets no new deliveries, and those queued wait until it is enabled again."""
    channel = get(conn, subscription_id, name)
    conn.execute(sa.update(models.AlertChannel).where(models.AlertChannel.id == channel.id).values(enabled=enabled))
    return get(conn, subscription_id, name)


def all_for_update(conn: Connection) -> list[ChannelRecord]:
    """Every channel, locked until the caller's transaction ends (key rotation rewrites them all)."""
    rows = conn.execute(_select().order_by(models.AlertChannel.id).with_for_update(of=models.AlertChannel)).all()
    return [_record(r) for r in rows]


def update_settings(conn: Connection, channel_id: int, stored: Mapping[str, str]) -> None:
    c = models.AlertChannel
    conn.execute(sa.update(c).where(c.id == channel_id).values(settings=dict(stored)))


def _subscription_name(conn: Connection, subscription_id: int) -> str:
    name = conn.execute(
        sa.select(models.Subscription.name).where(models.Subscription.id == subscription_id)
    ).scalar_one_or_none()
    return str(name) if name is not None else f"#{subscription_id}"
