"""A subscription's model versions: listed with their records, and started."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from openmart.api import Mart
from openmart.service.auth import MART, READ, WRITE, Principal
from openmart.service.rest.common import ERRORS, TAG_SUBSCRIPTIONS, subscription
from openmart.service.rest.models import VersionIn

router = APIRouter(tags=[TAG_SUBSCRIPTIONS], responses=ERRORS)


@router.get(
    "/subscriptions/{name}/versions",
    summary="The model versions, oldest first: source, start, which is current, and their records "
    "(payload, feedback, training and validation sets)",
)
def list_versions(name: str, principal: Principal = READ, mart: Mart = MART) -> list[dict[str, Any]]:
    return subscription(mart, name).versions.summary()


@router.post(
    "/subscriptions/{name}/versions",
    status_code=201,
    summary="Start a model version (201 when new, 200 when a known one becomes current again): records "
    "written from now on without a version of their own belong to it",
)
def start_version(
    name: str, body: VersionIn, response: Response, principal: Principal = WRITE, mart: Mart = MART
) -> dict[str, Any]:
    sub = subscription(mart, name)
    new = sub.versions.start(body.version, note=body.note)
    if not new:
        response.status_code = 200
    current = sub.record.asset_revision
    return next(v for v in sub.versions.summary() if v["version"] == current) | {"new": new}
