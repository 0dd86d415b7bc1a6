"""Records: ``POST /v1/data_marts/{dm}/scoring_payloads`` (each PayloadRecord becomes payload rows,
``<scoring_id>-1..n``, and one scoring request), ``GET .../scoring_transactions`` (paged, with
counts), ``GET .../payload_table_schema``, and feedback (``POST /v1/data_marts/{dm}/feedback_payloads``
with ``fields``/``values``; ``GET .../subscriptions/{uid}/feedback_payloads``)."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response

from openmart.api import Mart, Subscription
from openmart.mart.openscale import OpenScaleSubscriptionRecord
from openmart.schema import ColumnKind
from openmart.service.auth import MART, READ, WRITE, Principal
from openmart.service.openscale import subscriptions
from openmart.service.openscale.common import (
    check_data_mart,
    deployment_id,
    get_subscription,
    plain,
    require_openmart_subscription,
)

router = APIRouter(tags=["openscale"])
_PAYLOAD_KEYS = ("request", "response", "scoring_id", "scoring_timestamp", "response_time")


def _records(body: Any) -> list[dict[str, Any]]:
    records = [body] if isinstance(body, dict) else body
    if not isinstance(records, list) or not records:
        raise HTTPException(422, "the body: a payload record or a list of them")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise HTTPException(422, f"payload {i}: an object with subscription_id, request and response")
        if not r.get("subscription_id"):
            raise HTTPException(422, f"payload {i}: subscription_id is missing")
    return records


def _requests(records: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    """Each PayloadRecord is one scoring request (source openscale, its response_time the latency)."""
    rows = []
    for r, sid in zip(records, ids, strict=True):
        values = (r.get("request") or {}).get("values") or []
        rows.append(
            {
                "at": r.get("scoring_timestamp") or datetime.now(UTC).isoformat(),
                "status": 200,
                "records": len(values),
                "request_bytes": len(json.dumps(r.get("request"), default=str)),
                "response_bytes": len(json.dumps(r.get("response"), default=str)),
                "latency_ms": r.get("response_time"),
                "request_id": sid,
            }
        )
    return rows


@router.post("/v1/data_marts/{data_mart_id}/scoring_payloads", summary="Store scoring payload records")
def store_payloads(
    data_mart_id: str,
    request: Request,
    body: Any = Body(...),
    principal: Principal = WRITE,
    mart: Mart = MART,
) -> Response:
    check_data_mart(mart, data_mart_id)
    records = _records(body)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[str(r["subscription_id"])].append(r)
    known = {uid: get_subscription(mart, uid) for uid in groups}  # every subscription named exists, or 404
    stored = 0
    for uid, group in groups.items():
        sub = subscriptions.link(mart, known[uid], group[0])
        clean = [{k: r[k] for k in _PAYLOAD_KEYS if r.get(k) is not None} for r in group]
        for r in clean:  # an id for each request, so that its rows and its scoring request share it
            r["scoring_id"] = str(r.get("scoring_id") or uuid.uuid4())
        # the rows and their scoring requests in one transaction: both or neither
        requests = _requests(clean, [r["scoring_id"] for r in clean])
        ids = sub.payload.log(clean, allow_extra_columns=True, requests=requests, request_source="openscale")
        stored += len(ids)
    if "return=minimal" in request.headers.get("prefer", ""):
        return Response(status_code=204)
    return Response(json.dumps({"stored": stored, "payloads": len(records)}), 202, media_type="application/json")


def _payload_fields(sub: Subscription) -> list[dict[str, Any]]:
    schema = sub.schema
    fields = [
        {"name": "scoring_id", "type": "string", "nullable": False},
        {"name": "scoring_timestamp", "type": "timestamp", "nullable": False},
        {"name": "deployment_id", "type": "string", "nullable": False},
        {"name": "asset_revision", "type": "string", "nullable": True},
    ]
    for c in schema.input_columns:
        fields.append(
            {"name": c.name, "type": "double" if c.kind is ColumnKind.NUMERIC else "string", "nullable": True}
        )
    fields.append(
        {"name": schema.prediction, "type": "double" if schema.outputs_numeric else "string", "nullable": True}
    )
    if schema.probability:
        multi = schema.probability_sql_type.endswith("[]")
        fields.append({"name": schema.probability, "type": "array" if multi else "double", "nullable": True})
    return fields


@router.get(
    "/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}/subscriptions/{uid}/payload_table_schema",
    summary="The payload table's columns",
)
def payload_table_schema(
    data_mart_id: str, binding_uid: str, uid: str, principal: Principal = READ, mart: Mart = MART
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    record = get_subscription(mart, uid, binding_uid)
    sub = require_openmart_subscription(mart, record, "payload table schema")
    return {"table_schema": {"type": "struct", "fields": _payload_fields(sub)}}


@router.get("/v1/data_marts/{data_mart_id}/scoring_transactions", summary="Payload records, paged")
def scoring_transactions(
    data_mart_id: str,
    subscription_id: str = Query(...),
    limit: int = Query(100, ge=0, le=10_000),
    offset: int = Query(0, ge=0),
    include_total_count: bool = Query(False),
    principal: Principal = READ,
    mart: Mart = MART,
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    record = get_subscription(mart, subscription_id)
    fields_out = ["scoring_id", "scoring_timestamp", "deployment_id", "asset_revision"]
    sub = None if record.subscription_name is None else require_openmart_subscription(mart, record, "transactions")
    if sub is None:
        body: dict[str, Any] = {"fields": fields_out, "values": [], "limit": limit, "offset": offset}
        if include_total_count:
            body["total_count"] = 0
        return body
    names = [f["name"] for f in _payload_fields(sub)]
    frame, total = sub.payload.page(limit=max(limit, 1), offset=offset)
    frame = frame.iloc[:limit]
    rows = []
    for row in frame.to_dict("records"):
        row["deployment_id"] = sub.deployment_id or deployment_id(record)
        rows.append([plain(row.get(n)) for n in names])
    body = {"fields": names, "values": rows, "limit": limit, "offset": offset}
    if include_total_count:
        body["total_count"] = total
    return body


# -- feedback -------------------------------------------------------------------------------------


@router.post("/v1/data_marts/{data_mart_id}/feedback_payloads", status_code=204, summary="Store feedback records")
def store_feedback(
    data_mart_id: str, body: dict[str, Any] = Body(...), principal: Principal = WRITE, mart: Mart = MART
) -> Response:
    check_data_mart(mart, data_mart_id)
    uid = body.get("subscription_id")
    if not uid:
        raise HTTPException(422, "subscription_id is missing")
    fields, values = body.get("fields"), body.get("values")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise HTTPException(422, "fields: a list of column names")
    if not isinstance(values, list) or not values:
        raise HTTPException(422, "values: a list of rows")
    record = get_subscription(mart, str(uid))
    if body.get("binding_id") and body["binding_id"] != record.binding_uid:
        raise HTTPException(404, f"binding {body['binding_id']!r} has no subscription {uid!r}")
    sub = require_openmart_subscription(mart, record, "feedback")
    sub.feedback.log({"fields": fields, "values": values})
    return Response(status_code=204)


def _feedback_rows(record: OpenScaleSubscriptionRecord, sub: Subscription) -> list[dict[str, Any]]:
    names = [f["name"] for f in record.asset_properties.get("training_data_schema", {}).get("fields", [])]
    frame = sub.feedback.read()
    out = []
    for row in frame.to_dict("records"):
        item = {n: plain(row.get(n)) for n in names}
        item["record_timestamp"] = plain(row.get("recorded_at"))
        item["scoring_id"] = plain(row.get("scoring_id"))
        out.append(item)
    return out


@router.get(
    "/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}/subscriptions/{uid}/feedback_payloads",
    summary="Feedback records",
)
def get_feedback(
    data_mart_id: str, binding_uid: str, uid: str, principal: Principal = READ, mart: Mart = MART
) -> list[dict[str, Any]]:
    check_data_mart(mart, data_mart_id)
    record = get_subscription(mart, uid, binding_uid)
    sub = require_openmart_subscription(mart, record, "feedback")
    return _feedback_rows(record, sub)
