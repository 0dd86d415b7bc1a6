"""Explanations of payload records (feature attributions and the contrastive answer), computed
through the binding and kept in the mart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from openmart.api import Mart
from openmart.service.auth import MART, READ, WRITE, Principal
from openmart.service.rest.common import ERRORS, TAG_EXPLANATIONS, subscription
from openmart.service.rest.models import ExplainIn

router = APIRouter(tags=[TAG_EXPLANATIONS], responses=ERRORS)


@router.post(
    "/subscriptions/{name}/explanations",
    summary="Explain one payload record by its scoring id (shap or lime; stored, read back unless refresh)",
)
def explain(name: str, body: ExplainIn, principal: Principal = WRITE, mart: Mart = MART) -> dict[str, Any]:
    found = subscription(mart, name).explain(body.scoring_id, method=body.method, refresh=body.refresh)
    return found.to_dict()


@router.get("/subscriptions/{name}/explanations", summary="The newest stored explanations, newest first")
def recent(
    name: str, limit: int = Query(20, ge=1, le=1000), principal: Principal = READ, mart: Mart = MART
) -> list[dict[str, Any]]:
    return subscription(mart, name).explanations(limit=limit)
