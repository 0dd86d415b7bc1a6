"""Routes of the performance monitor (throughput, latency, error rate)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
