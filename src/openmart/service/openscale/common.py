"""What every OpenScale route shares: the data mart id, hrefs, timestamps as the client parses
them, and reading the OpenScale records of this mart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from fastapi import HTTPException

from openmart.api import Mart, Subscription
from openmart.mart import openscale as table
from openmart.mart.openscale import OpenScaleBindingRecord, OpenScaleSubscriptionRecord

#: OpenScale's service type of a SageMaker binding, and the openmart provider behind it
SERVICE_TYPES = {"amazon_sagemaker": "sagemaker"}


def data_mart_id(mart: Mart) -> str:
    """The one data mart ``openmart serve`` has: its schema's name (the client's ``instance_guid``)."""
    return mart.location.schema


def check_data_mart(mart: Mart, given: str) -> str:
    if given != data_mart_id(mart):
        raise HTTPException(404, f"no data mart {given!r}: this service's data mart is {data_mart_id(mart)!r}")
    return given


def iso(value: datetime | None) -> str:
    """``2026-11-23T19:02:13.123Z``: what the client's ``strptime(..., "%Y-%m-%dT%H:%M:%S.%fZ")`` reads."""
    if value is None:
        return "0000-01-01T00:00:00.000Z"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def binding_href(mart: Mart, uid: str) -> str:
    return f"/v1/data_marts/{data_mart_id(mart)}/service_bindings/{uid}"


def subscription_href(mart: Mart, binding_uid: str, uid: str) -> str:
    return f"{binding_href(mart, binding_uid)}/subscriptions/{uid}"


def get_binding(mart: Mart, uid: str) -> OpenScaleBindingRecord:
    with mart.engine.connect() as conn:
        return table.get_binding(conn, uid)


def list_bindings(mart: Mart) -> list[OpenScaleBindingRecord]:
    with mart.engine.connect() as conn:
        return table.list_bindings(conn)


def get_subscription(mart: Mart, uid: str, binding_uid: str | None = None) -> OpenScaleSubscriptionRecord:
    with mart.engine.connect() as conn:
        record = table.get_subscription(conn, uid)
    if binding_uid is not None and record.binding_uid != binding_uid:
        raise HTTPException(404, f"binding {binding_uid!r} has no subscription {uid!r}")
    return record


def list_subscriptions(mart: Mart, binding_uid: str | None = None) -> list[OpenScaleSubscriptionRecord]:
    with mart.engine.connect() as conn:
        return table.list_subscriptions(conn, binding_uid)


def openmart_subscription(mart: Mart, record: OpenScaleSubscriptionRecord) -> Subscription | None:
    """The openmart subscription behind it (None until its first payload)."""
    return mart.subscriptions.get(record.subscription_name) if record.subscription_name else None


def require_openmart_subscription(mart: Mart, record: OpenScaleSubscriptionRecord, what: str) -> Subscription:
    sub = openmart_subscription(mart, record)
    if sub is None:
        raise HTTPException(
            400,
            f"{what}: subscription {record.uid!r} has no payload yet; its schema is learned from the first "
            "scoring payload (store payload records first)",
        )
    return sub


def deployment_id(record: OpenScaleSubscriptionRecord) -> str:
    return str(record.deployments[0]["deployment_id"]) if record.deployments else ""


def plain(value: Any) -> Any:
    """A value as JSON carries it (numpy scalars, timestamps, NaN as null)."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "isoformat"):
        return iso(value.to_pydatetime()) if hasattr(value, "to_pydatetime") else value.isoformat()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return value


def parse_time(value: str | None, name: str) -> datetime | None:
    """A query's ``start``/``end`` (ISO 8601; the client sends ``...T10:00:00.123456Z``), in UTC."""
    if not value:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        raise HTTPException(422, f"{name}: not an ISO 8601 time: {value!r}") from None
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()
