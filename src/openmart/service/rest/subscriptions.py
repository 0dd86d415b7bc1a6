"""Subscriptions (a deployment under monitoring, with its schema) and their monitors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from openmart.api import Mart
from openmart.mart.records import to_frame
from openmart.schema import SubscriptionSchema
from openmart.service.auth import ADMIN, MART, READ, Principal
from openmart.service.rest.common import ERRORS, TAG_MONITORS, TAG_SUBSCRIPTIONS, subscription
from openmart.service.rest.models import MonitorIn, SubscriptionIn

router = APIRouter(responses=ERRORS)


@router.get("/subscriptions", tags=[TAG_SUBSCRIPTIONS], summary="Every subscription, with its schema")
def list_subscriptions(principal: Principal = READ, mart: Mart = MART) -> list[dict[str, Any]]:
    return [s.to_dict() for s in mart.subscriptions.list()]


@router.get("/subscriptions/{name}", tags=[TAG_SUBSCRIPTIONS], summary="One subscription, with its schema")
def get_subscription(name: str, principal: Principal = READ, mart: Mart = MART) -> dict[str, Any]:
    return subscription(mart, name).to_dict()


@router.post(
    "/subscriptions",
    status_code=201,
    tags=[TAG_SUBSCRIPTIONS],
    summary="Subscribe a deployment: the schema given, or inferred from reference records (all in one transaction)",
)
def add_subscription(
    body: SubscriptionIn, response: Response, principal: Principal = ADMIN, mart: Mart = MART
) -> dict[str, Any]:
    schema = SubscriptionSchema.from_dict(body.schema_) if body.schema_ is not None else None
    reference = to_frame(body.reference) if body.reference is not None else None
    sub = mart.subscriptions.add(
        body.name,
        reference=reference,
        schema=schema,
        label=body.label,
        problem_type=body.problem_type,
        binding=body.binding,
        deployment=body.deployment,
        asset_revision=body.asset_revision,
        categorical=body.categorical,
        numeric=body.numeric,
        features=body.features,
        meta=body.meta,
        prediction=body.prediction,
        probability=body.probability,
        class_labels=body.class_labels,
    )
    response.headers["Location"] = f"/api/v1/subscriptions/{sub.name}"
    return sub.to_dict()


@router.delete(
    "/subscriptions/{name}",
    status_code=204,
    tags=[TAG_SUBSCRIPTIONS],
    summary="Remove a subscription with its records, evaluations and alerts",
)
def remove_subscription(name: str, principal: Principal = ADMIN, mart: Mart = MART) -> Response:
    mart.subscriptions.remove(name)
    return Response(status_code=204)


# -- monitors ------------------------------------------------------------------------------------


@router.get("/subscriptions/{name}/monitors", tags=[TAG_MONITORS], summary="The subscription's monitors")
def list_monitors(name: str, principal: Principal = READ, mart: Mart = MART) -> list[dict[str, Any]]:
    return [c.to_dict() for c in subscription(mart, name).monitors.configs()]


@router.put(
    "/subscriptions/{name}/monitors/{kind}",
    tags=[TAG_MONITORS],
    summary="Enable or reconfigure a monitor (options checked now, against the monitor and the subscription)",
)
def enable_monitor(
    name: str, kind: str, body: MonitorIn, principal: Principal = ADMIN, mart: Mart = MART
) -> dict[str, Any]:
    options = dict(body.options)
    if body.thresholds is not None:
        options["thresholds"] = body.thresholds
    if body.min_records is not None:
        options["min_records"] = body.min_records
    return subscription(mart, name).monitors.enable(kind, **options).to_dict()


@router.delete(
    "/subscriptions/{name}/monitors/{kind}", status_code=204, tags=[TAG_MONITORS], summary="Disable a monitor"
)
def disable_monitor(name: str, kind: str, principal: Principal = ADMIN, mart: Mart = MART) -> Response:
    subscription(mart, name).monitors.disable(kind)
    return Response(status_code=204)
