"""Routes of the monitors' schedules (the scheduler itself: :mod:`openmart.service.scheduling`).

GET  /api/v1/schedules[?subscription=S]        every monitor's schedule           (read)
GET  /api/v1/schedules/{subscription}          one subscription's                 (read)
PUT  /api/v1/schedules/{subscription}/{kind}   {"every": "1h" | 3600 | "default" | "off"}  (write)
POST /api/v1/schedules/{subscription}/run      run its monitors now, {"kinds": [...]}?     (write)
POST /api/v1/schedules/run-due                 run whatever is due now            (write)
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from openmart.api import Mart
from openmart.errors import ValidationError
from openmart.service.auth import MART, READ, WRITE, Principal

router = APIRouter(prefix="/api/v1", tags=["schedules"])


class ScheduleBody(BaseModel):
    every: int | str | None = Field(
        None, description="Seconds, or 90s, 15m, 1h, 3h, 1d; 'default' (or null): the kind's default; 'off'."
    )


class RunBody(BaseModel):
    kinds: list[str] | None = Field(None, description="Only these monitors (default: every enabled one).")


@router.get("/schedules", summary="Every monitor's schedule: period and next run")
def list_schedules(subscription: str | None = None, mart: Mart = MART, _: Principal = READ) -> list[dict[str, Any]]:
    return [s.to_dict() for s in mart.schedules(subscription)]


@router.get("/schedules/{subscription}", summary="A subscription's monitors' schedules")
def subscription_schedules(subscription: str, mart: Mart = MART, _: Principal = READ) -> list[dict[str, Any]]:
    return [s.to_dict() for s in mart.schedules(subscription)]


@router.put("/schedules/{subscription}/{kind}", summary="Set how often a monitor runs (its next run: one period on)")
def set_schedule(
    subscription: str, kind: str, body: ScheduleBody, mart: Mart = MART, _: Principal = WRITE
) -> dict[str, Any]:
    return mart.subscriptions.get(subscription).monitors.schedule(kind, body.every).to_dict()


@router.post("/schedules/{subscription}/run", summary="Run a subscription's monitors now, whatever their schedule")
def run_now(subscription: str, body: RunBody | None = None, mart: Mart = MART, _: Principal = WRITE) -> dict[str, Any]:
    """Waits for the evaluation (and for one of the same subscription already running); its
    schedule is not moved. A failed evaluation answers 500 with its ``evaluation_id``."""
    sub = mart.subscriptions.get(subscription)
    enabled = [c.kind for c in sub.monitors.configs() if c.enabled]
    kinds = body.kinds if body is not None and body.kinds else enabled
    missing = [k for k in kinds if k not in enabled] or ([] if enabled else ["any"])
    if missing:
        raise ValidationError(f"subscription {subscription!r} has no enabled {missing[0]} monitor (enabled: {enabled})")
    return sub.evaluate(kinds=kinds).to_dict()


@router.post("/schedules/run-due", summary="Run the monitors whose schedule is due now (each due slot once)")
def run_due(mart: Mart = MART, _: Principal = WRITE) -> list[dict[str, Any]]:
    return [r.to_dict() for r in mart.run_due()]
