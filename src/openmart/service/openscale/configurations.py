"""Configurations (``.../subscriptions/{uid}/configurations/{type}``): payload logging,
performance monitoring and quality monitoring (``threshold``, ``min_records``), kept with the
OpenScale subscription and applied to openmart's monitors (``sub.monitors.enable``) as soon as the
openmart subscription exists."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Body, HTTPException

from openmart.api import Mart, Subscription
from openmart.errors import OpenmartError
from openmart.mart import openscale as table
from openmart.mart.openscale import OpenScaleSubscriptionRecord
from openmart.service.auth import MART, READ, WRITE, Principal
from openmart.service.openscale.common import check_data_mart, get_subscription, openmart_subscription

log = logging.getLogger(__name__)
router = APIRouter(tags=["openscale"])

KINDS = ("payload_logging", "performance_monitoring", "quality_monitoring")
#: the metric OpenScale's quality threshold is on, by the problem type the client declared
QUALITY_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "r2"}


def _table_name(mart: Mart, sub: Subscription | None, kind: str, uid: str) -> str:
    if sub is None:
        return f"{mart.location.schema}.{'Payload' if kind == 'payload' else 'Feedback'}_{uid}"
    return f"{mart.location.schema}.{sub.record.tables[kind]}"


def details(mart: Mart, record: OpenScaleSubscriptionRecord, kind: str) -> dict[str, Any]:
    stored = dict(record.configurations.get(kind) or {"enabled": False, "parameters": {}})
    parameters = dict(stored.get("parameters") or {})
    sub = openmart_subscription(mart, record)
    if kind == "payload_logging":
        parameters["table_name"] = _table_name(mart, sub, "payload", record.uid)
    elif kind == "quality_monitoring":
        parameters["feedback_data_reference"] = {
            "type": "dbtable",
            "location": {
                "schema_name": mart.location.schema,
                "table_name": _table_name(mart, sub, "feedback", record.uid),
            },
        }
    return {
        "type": kind,
        "enabled": bool(stored.get("enabled")),
        "parameters": parameters,
        "monitor_definition_id": {"quality_monitoring": "quality", "performance_monitoring": "performance"}.get(kind),
    }


def listing(mart: Mart, record: OpenScaleSubscriptionRecord) -> list[dict[str, Any]]:
    return [details(mart, record, k) for k in KINDS if k in record.configurations]


def _apply(record: OpenScaleSubscriptionRecord, sub: Subscription, kind: str, config: dict[str, Any]) -> None:
    enabled = bool(config.get("enabled"))
    if kind == "performance_monitoring":
        monitor = "performance"
        options: dict[str, Any] = {}
    elif kind == "quality_monitoring":
        monitor = "quality"
        params = config.get("parameters") or {}
        definition = params.get("evaluation_definition") or {}
        metric = QUALITY_METRIC[str(record.asset_properties.get("problem_type"))]
        options = {"min_records": int(params.get("min_feedback_data_size", 100))}
        if definition.get("threshold") is not None:
            options["thresholds"] = [{"metric": metric, "type": "lower_limit", "value": float(definition["threshold"])}]
    else:
        return
    if enabled:
        sub.monitors.enable(monitor, **options)
    else:
        with contextlib.suppress(OpenmartError):
            sub.monitors.disable(monitor)


def apply_all(mart: Mart, record: OpenScaleSubscriptionRecord, sub: Subscription) -> None:
    """The stored configurations onto a just-made openmart subscription (performance monitoring
    is enabled before any payload exists, as the client does at subscribe time)."""
    for kind, config in record.configurations.items():
        try:
            _apply(record, sub, kind, config)
        except OpenmartError as exc:  # e.g. a monitor kind this installation lacks: said, not fatal
            log.warning("subscription %s: %s not applied: %s", record.uid, kind, exc)


@router.get(
    "/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}/subscriptions/{uid}/configurations/{kind}",
    summary="A configuration of a subscription",
)
def get_configuration(
    data_mart_id: str, binding_uid: str, uid: str, kind: str, principal: Principal = READ, mart: Mart = MART
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    return details(mart, get_subscription(mart, uid, binding_uid), kind)


@router.put(
    "/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}/subscriptions/{uid}/configurations/{kind}",
    summary="Enable, disable or reconfigure payload logging, performance or quality monitoring",
)
def put_configuration(
    data_mart_id: str,
    binding_uid: str,
    uid: str,
    kind: str,
    body: dict[str, Any] = Body(...),
    principal: Principal = WRITE,
    mart: Mart = MART,
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    if kind not in KINDS:
        raise HTTPException(400, f"configuration {kind!r} is not supported here (supported: {', '.join(KINDS)})")
    if not isinstance(body.get("enabled"), bool):
        raise HTTPException(422, "enabled: true or false")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise HTTPException(422, "parameters: an object")
    record = get_subscription(mart, uid, binding_uid)
    config = {"enabled": body["enabled"], "parameters": parameters}
    sub = openmart_subscription(mart, record)
    if kind == "quality_monitoring" and body["enabled"]:
        if sub is None:
            raise HTTPException(400, "quality monitoring needs payload records first (its schema comes from them)")
        definition = parameters.get("evaluation_definition") or {}
        threshold, minimum = definition.get("threshold"), parameters.get("min_feedback_data_size")
        if threshold is not None and not isinstance(threshold, int | float):
            raise HTTPException(422, "parameters.evaluation_definition.threshold: a number")
        if minimum is not None and (not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1):
            raise HTTPException(422, "parameters.min_feedback_data_size: a positive integer")
    if sub is not None:
        _apply(record, sub, kind, config)  # refused options (a threshold out of range) stop here, nothing stored
    with mart.engine.begin() as conn:
        current = table.get_subscription(conn, uid, for_update=True)
        table.update_subscription(conn, uid, configurations={**current.configurations, kind: config})
    return details(mart, get_subscription(mart, uid), kind)
