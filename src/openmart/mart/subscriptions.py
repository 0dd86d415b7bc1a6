"""The ``subscriptions`` table and each subscription's record tables, behind typed functions.

A subscription is handed to the layers below the API as a :class:`SubscriptionRecord`: frozen,
so capture, scoring, monitors and the runner cannot change it, and free of any API object, so
they never import the API. Every function takes the connection of the caller's transaction:
one user operation (subscribe, replace a reference) is one transaction, composed by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openmart.errors import AlreadyExists, NotFound
from openmart.mart import models, versions
from openmart.mart.identifiers import quote
from openmart.mart.records import INITIAL_VERSION, RecordKind, create_table_sql, table_name, traffic_trigger_sql
from openmart.schema import SubscriptionSchema


@dataclass(frozen=True)
class SubscriptionRecord:
    """One subscription as stored: what every layer below the API works from."""

    id: int
    name: str
    schema: SubscriptionSchema
    payload_table: str
    feedback_table: str
    reference_table: str
    binding: str | None = None
    deployment_id: str | None = None
    asset_revision: str | None = None  # the current model version (when this record was read)
    created_at: datetime | None = None
    reference_version: str | None = None  # the version whose training set is the reference

    def table(self, kind: RecordKind | str) -> str:
        return {
            RecordKind.PAYLOAD: self.payload_table,
            RecordKind.FEEDBACK: self.feedback_table,
            RecordKind.REFERENCE: self.reference_table,
        }[RecordKind(kind)]

    @property
    def tables(self) -> dict[str, str]:
        return {"payload": self.payload_table, "feedback": self.feedback_table, "reference": self.reference_table}


def _record(row: models.Subscription, binding: str | None) -> SubscriptionRecord:
    return SubscriptionRecord(
        id=row.id,
        name=row.name,
        schema=SubscriptionSchema.from_dict(row.schema),
        payload_table=row.payload_table,
        feedback_table=row.feedback_table,
        reference_table=row.reference_table,
        binding=binding,
        deployment_id=row.deployment_id,
        asset_revision=row.asset_revision,
        created_at=row.created_at,
        reference_version=row.reference_version,
    )


def _select() -> sa.Select[Any]:
    # the reference's profile is no part of the record (reference_profile() reads it): not
    # fetching and decoding it makes a lookup several times cheaper (it is every REST request's)
    return (
        sa.select(models.Subscription, models.Binding.name)
        .outerjoin(models.Binding, models.Binding.id == models.Subscription.binding_id)
        .options(sa.orm.defer(models.Subscription.reference_profile, raiseload=True))
    )


def get(conn: Connection, name: str) -> SubscriptionRecord:
    found = sa.orm.Session(bind=conn).execute(_select().where(models.Subscription.name == name)).first()
    if found is None:
        raise NotFound(f"no subscription named {name!r}")
    return _record(*found)


def by_id(conn: Connection, subscription_id: int) -> SubscriptionRecord:
    found = sa.orm.Session(bind=conn).execute(_select().where(models.Subscription.id == subscription_id)).first()
    if found is None:
        raise NotFound(f"no subscription with id {subscription_id}")
    return _record(*found)


def list_all(conn: Connection) -> list[SubscriptionRecord]:
    rows = sa.orm.Session(bind=conn).execute(_select().order_by(models.Subscription.name)).all()
    return [_record(r, b) for r, b in rows]


def names_using_binding(conn: Connection, binding_id: int) -> list[str]:
    return list(
        conn.execute(sa.select(models.Subscription.name).where(models.Subscription.binding_id == binding_id)).scalars()
    )


def create(
    conn: Connection,
    name: str,
    schema: SubscriptionSchema,
    *,
    binding_id: int | None = None,
    deployment_id: str | None = None,
    asset_revision: str | None = None,
) -> SubscriptionRecord:
    """The subscription's row and its three record tables, in the caller's transaction. Its
    first model version is ``asset_revision`` (default ``1``)."""
    asset_revision = versions.check_version(asset_revision, "asset_revision") if asset_revision else INITIAL_VERSION
    if conn.execute(sa.select(models.Subscription.id).where(models.Subscription.name == name)).first():
        raise AlreadyExists(f"a subscription named {name!r} exists already")
    new_id = conn.execute(
        sa.insert(models.Subscription)
        .values(
            name=name,
            binding_id=binding_id,
            deployment_id=deployment_id,
            asset_revision=asset_revision,
            problem_type=str(schema.problem_type),
            schema=schema.to_dict(),
            payload_table="",
            feedback_table="",
            reference_table="",
        )
        .returning(models.Subscription.id)
    ).scalar_one()
    tables = {f"{kind}_table": table_name(kind, new_id) for kind in RecordKind}
    for kind in RecordKind:
        for stmt in create_table_sql(kind, tables[f"{kind}_table"], schema):
            conn.exec_driver_sql(stmt)
    for stmt in traffic_trigger_sql(tables["payload_table"], new_id):
        conn.exec_driver_sql(stmt)
    conn.execute(sa.update(models.Subscription).where(models.Subscription.id == new_id).values(**tables))
    versions.register(conn, new_id, asset_revision, "subscribe")
    return by_id(conn, new_id)


def update_schema(conn: Connection, subscription_id: int, schema: SubscriptionSchema) -> None:
    conn.execute(
        sa.update(models.Subscription).where(models.Subscription.id == subscription_id).values(schema=schema.to_dict())
    )


def remove(conn: Connection, record: SubscriptionRecord) -> None:
    for table in (record.payload_table, record.feedback_table, record.reference_table):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(table)}")
    conn.execute(sa.delete(models.Subscription).where(models.Subscription.id == record.id))


def set_reference_profile(
    conn: Connection, subscription_id: int, profile: Mapping[str, Any] | None, *, version: str | None = None
) -> None:
    """The reference's profile; with ``version``, that version's training set becomes the reference."""
    values: dict[str, Any] = {"reference_profile": dict(profile) if profile is not None else None}
    if version is not None:
        values["reference_version"] = version
    conn.execute(sa.update(models.Subscription).where(models.Subscription.id == subscription_id).values(**values))


def reference_profile(conn: Connection, subscription_id: int) -> dict[str, Any] | None:
    return conn.execute(
        sa.select(models.Subscription.reference_profile).where(models.Subscription.id == subscription_id)
    ).scalar_one_or_none()


def lock(conn: Connection, subscription_id: int) -> None:
    """Hold the subscription's row until the caller's transaction ends: operations that replace
    what it owns (its reference, its schema) run one at a time."""
    conn.execute(sa.select(models.Subscription.id).where(models.Subscription.id == subscription_id).with_for_update())
