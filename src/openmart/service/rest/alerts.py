"""Alerts: list (by status and subscription), acknowledge, resolve."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from openmart.api import Mart
from openmart.service.auth import MART, READ, WRITE, Principal
from openmart.service.rest.common import ERRORS, TAG_ALERTS, frame_records
from openmart.service.rest.models import AlertAction

router = APIRouter(tags=[TAG_ALERTS], responses=ERRORS)


@router.get("/alerts", summary="Alerts, oldest first: open by default; status all for every one")
def list_alerts(
    status: str = Query("open", description="open, acknowledged, resolved or all"),
    subscription: str | None = Query(None, description="only this subscription's"),
    principal: Principal = READ,
    mart: Mart = MART,
) -> list[dict[str, Any]]:
    return frame_records(mart.alerts(status=status, subscription=subscription))


@router.post("/alerts/{alert_id}/acknowledge", summary="open -> acknowledged (by: the key's name unless given)")
def acknowledge(
    alert_id: int, body: AlertAction | None = None, principal: Principal = WRITE, mart: Mart = MART
) -> dict[str, Any]:
    body = body or AlertAction()
    return mart.acknowledge_alert(alert_id, by=body.by or principal.name, note=body.note).to_dict()


@router.post("/alerts/{alert_id}/resolve", summary="open or acknowledged -> resolved (by: the key's name unless given)")
def resolve(
    alert_id: int, body: AlertAction | None = None, principal: Principal = WRITE, mart: Mart = MART
) -> dict[str, Any]:
    body = body or AlertAction()
    return mart.resolve_alert(alert_id, by=body.by or principal.name, note=body.note).to_dict()
