"""The ``openscale_bindings`` and ``openscale_subscriptions`` tables behind typed functions: what
``openmart serve``'s OpenScale V1 routes keep besides openmart's own bindings and subscriptions.
Every function takes the connection of the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openmart.errors import AlreadyExists, NotFound
from openmart.mart import models


@dataclass(frozen=True)
class OpenScaleBindingRecord:
    uid: str
    binding_id: int
    binding_name: str
    provider: str
    name: str
    service_type: str
    created_at: datetime


@dataclass(frozen=True)
class OpenScaleSubscriptionRecord:
    uid: str
    binding_uid: str
    subscription_id: int | None
    subscription_name: str | None
    asset: dict[str, Any]
    asset_properties: dict[str, Any]
    deployments: list[dict[str, Any]]
    configurations: dict[str, Any]
    created_at: datetime


_B = models.OpenScaleBinding
_S = models.OpenScaleSubscription


def _binding_select() -> sa.Select[Any]:
    return sa.select(
        _B.uid, _B.binding_id, models.Binding.name.label("binding_name"), models.Binding.provider, _B.name,
        _B.service_type, _B.created_at,
    ).join(models.Binding, models.Binding.id == _B.binding_id)  # fmt: skip


def _binding(row: sa.Row[Any]) -> OpenScaleBindingRecord:
    return OpenScaleBindingRecord(
        row.uid, row.binding_id, row.binding_name, row.provider, row.name, row.service_type, row.created_at
    )


def insert_binding(conn: Connection, uid: str, binding_id: int, name: str, service_type: str) -> OpenScaleBindingRecord:
    if conn.execute(sa.select(_B.uid).where(_B.uid == uid)).first():
        raise AlreadyExists(f"a service binding with uid {uid!r} exists already")
    conn.execute(sa.insert(_B).values(uid=uid, binding_id=binding_id, name=name, service_type=service_type))
    return get_binding(conn, uid)


def get_binding(conn: Connection, uid: str) -> OpenScaleBindingRecord:
    row = conn.execute(_binding_select().where(_B.uid == uid)).first()
    if row is None:
        raise NotFound(f"no service binding with uid {uid!r}")
    return _binding(row)


def list_bindings(conn: Connection) -> list[OpenScaleBindingRecord]:
    return [_binding(r) for r in conn.execute(_binding_select().order_by(_B.created_at, _B.uid)).all()]


def delete_binding(conn: Connection, uid: str) -> None:
    get_binding(conn, uid)
    conn.execute(sa.delete(_B).where(_B.uid == uid))


def _subscription_select() -> sa.Select[Any]:
    return sa.select(
        _S.uid, _S.binding_uid, _S.subscription_id, models.Subscription.name.label("subscription_name"), _S.asset,
        _S.asset_properties, _S.deployments, _S.configurations, _S.created_at,
    ).outerjoin(models.Subscription, models.Subscription.id == _S.subscription_id)  # fmt: skip


def _subscription(row: sa.Row[Any]) -> OpenScaleSubscriptionRecord:
    return OpenScaleSubscriptionRecord(
        row.uid,
        row.binding_uid,
        row.subscription_id,
        row.subscription_name,
        dict(row.asset),
        dict(row.asset_properties),
        list(row.deployments),
        dict(row.configurations),
        row.created_at,
    )


def insert_subscription(
    conn: Connection,
    uid: str,
    binding_uid: str,
    *,
    asset: Mapping[str, Any],
    asset_properties: Mapping[str, Any],
    deployments: Sequence[Mapping[str, Any]],
) -> OpenScaleSubscriptionRecord:
    if conn.execute(sa.select(_S.uid).where(_S.uid == uid)).first():
        raise AlreadyExists(f"a subscription with uid {uid!r} exists already")
    conn.execute(
        sa.insert(_S).values(
            uid=uid,
            binding_uid=binding_uid,
            asset=dict(asset),
            asset_properties=dict(asset_properties),
            deployments=[dict(d) for d in deployments],
            configurations={},
        )
    )
    return get_subscription(conn, uid)


def get_subscription(conn: Connection, uid: str, *, for_update: bool = False) -> OpenScaleSubscriptionRecord:
    if for_update:
        conn.execute(sa.select(_S.uid).where(_S.uid == uid).with_for_update())
    row = conn.execute(_subscription_select().where(_S.uid == uid)).first()
    if row is None:
        raise NotFound(f"no subscription with uid {uid!r}")
    return _subscription(row)


def list_subscriptions(conn: Connection, binding_uid: str | None = None) -> list[OpenScaleSubscriptionRecord]:
    query = _subscription_select().order_by(_S.created_at, _S.uid)
    if binding_uid is not None:
        query = query.where(_S.binding_uid == binding_uid)
    return [_subscription(r) for r in conn.execute(query).all()]


def update_subscription(
    conn: Connection,
    uid: str,
    *,
    asset_properties: Mapping[str, Any] | None = None,
    configurations: Mapping[str, Any] | None = None,
    subscription_id: int | None = None,
) -> OpenScaleSubscriptionRecord:
    values: dict[str, Any] = {}
    if asset_properties is not None:
        values["asset_properties"] = dict(asset_properties)
    if configurations is not None:
        values["configurations"] = dict(configurations)
    if subscription_id is not None:
        values["subscription_id"] = subscription_id
    if values:
        conn.execute(sa.update(_S).where(_S.uid == uid).values(**values))
    return get_subscription(conn, uid)


def delete_subscription(conn: Connection, uid: str) -> None:
    get_subscription(conn, uid)
    conn.execute(sa.delete(_S).where(_S.uid == uid))
