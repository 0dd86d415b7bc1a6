"""Routes of the monitors' schedules (the scheduler itself: :mod:`openmart.service.scheduling`)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
