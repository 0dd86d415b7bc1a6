"""Routes of the performance monitor (throughput, latency, error rate).

GET  /api/v1/subscriptions/{name}/performance   metrics over a window, and a time series  (read)
POST /api/v1/subscriptions/{name}/requests      record scoring requests seen elsewhere    (write)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from openmart.api import Mart
from openmart.service.auth import MART, READ, WRITE, Principal

router = APIRouter(prefix="/api/v1", tags=["performance"])


class RequestIn(BaseModel):
    status: int = Field(..., description="The HTTP status the client got.")
    at: datetime | None = Field(None, description="When it was answered (default: now).")
    records: int = Field(0, description="Records in the request.")
    request_bytes: int | None = None
    response_bytes: int | None = None
    latency_ms: float | None = Field(None, description="What the client waited, in ms.")
    request_id: str | None = Field(None, description="Your id: a request sent again with it is counted once.")


class RequestsIn(BaseModel):
    requests: list[RequestIn]


@router.get(
    "/subscriptions/{name}/performance",
    summary="Scoring requests and records per minute, payload size, latency p50/p95/p99, error rate",
)
def performance(
    name: str,
    since: datetime | None = Query(None, description="From this time (ISO 8601)."),
    until: datetime | None = Query(None, description="Before this time."),
    last: int | None = Query(None, ge=1, description="Only the newest N requests."),
    bucket: str = Query("minute", description="Time series bucket: minute, hour, day, or e.g. 5m, 1h."),
    series: bool = Query(True, description="Include the time series."),
    mart: Mart = MART,
    _: Principal = READ,
) -> dict[str, Any]:
    sub = mart.subscriptions.get(name)
    return sub.performance(since=since, until=until, last=last, bucket=bucket if series else None).to_dict()


@router.post(
    "/subscriptions/{name}/requests",
    summary="Record scoring requests served outside openmart's capture (source rest), for the performance monitor",
)
def log_requests(name: str, body: RequestsIn, mart: Mart = MART, _: Principal = WRITE) -> dict[str, int]:
    rows = [r.model_dump(exclude_none=True) for r in body.requests]
    added = mart.subscriptions.get(name).log_requests(rows, source="rest")
    return {"received": len(rows), "added": added}
