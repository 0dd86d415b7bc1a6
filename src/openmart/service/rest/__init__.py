"""openmart's own REST API under ``/api/v1``: bindings, subscriptions, records, evaluations,
measurements, alerts, explanations."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
