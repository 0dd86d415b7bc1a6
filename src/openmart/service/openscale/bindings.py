"""Service bindings (``/v1/data_marts/{dm}/service_bindings``) over openmart bindings, and the
asset discovery the client asks the server for (``/v1/ml_instances/{binding}/deployments``),
done here through the binding's provider. A SageMaker binding's keys are stored sealed, like any
binding secret (``mart.bindings.add``), and shown as ``***``."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Response

from openmart.api import Mart
from openmart.mart import openscale as table
from openmart.mart.openscale import OpenScaleBindingRecord
from openmart.service.auth import ADMIN, MART, READ, Principal
from openmart.service.openscale.common import (
    SERVICE_TYPES,
    binding_href,
    check_data_mart,
    get_binding,
    iso,
    list_bindings,
    list_subscriptions,
)

router = APIRouter(tags=["openscale"])

#: credentials an OpenScale SageMaker binding carries -> the sagemaker provider's settings
_SAGEMAKER_SETTINGS = ("access_key_id", "secret_access_key", "region")


def details(mart: Mart, record: OpenScaleBindingRecord) -> dict[str, Any]:
    shown = mart.bindings.get(record.binding_name).settings  # secrets as ***
    credentials = {k: shown[k] for k in _SAGEMAKER_SETTINGS if k in shown}
    return {
        "metadata": {"guid": record.uid, "url": binding_href(mart, record.uid), "created_at": iso(record.created_at)},
        "entity": {
            "name": record.name,
            "service_type": record.service_type,
            "instance_id": record.uid,
            "credentials": credentials,
            "status": {"state": "active"},
            "openmart_binding": record.binding_name,
        },
    }


def _openmart_name(name: str, uid: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-._") or "binding"
    return f"{slug[:50]}-{uid[:8]}"


@router.post(
    "/v1/data_marts/{data_mart_id}/service_bindings", status_code=201, summary="Bind a machine learning engine"
)
def add_binding(
    data_mart_id: str, body: dict[str, Any] = Body(...), principal: Principal = ADMIN, mart: Mart = MART
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    service_type = str(body.get("service_type") or "")
    provider = SERVICE_TYPES.get(service_type)
    if provider is None:
        raise HTTPException(
            400, f"service_type {service_type!r} is not supported here (supported: {sorted(SERVICE_TYPES)})"
        )
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise HTTPException(422, "name: a binding needs a name")
    credentials = body.get("credentials")
    if not isinstance(credentials, dict):
        raise HTTPException(422, "credentials: an object with access_key_id, secret_access_key and region")
    missing = [k for k in _SAGEMAKER_SETTINGS if not credentials.get(k)]
    if missing:
        raise HTTPException(422, f"credentials: {missing[0]} is missing")
    unknown = sorted(set(credentials) - set(_SAGEMAKER_SETTINGS))
    if unknown:
        raise HTTPException(422, f"credentials: unknown field {unknown[0]!r}")
    uid = str(uuid.uuid4())
    settings = {k: str(credentials[k]) for k in _SAGEMAKER_SETTINGS}
    binding = mart.bindings.add(_openmart_name(name, uid), provider, settings)  # keys sealed
    try:
        with mart.engine.begin() as conn:
            record = table.insert_binding(conn, uid, binding.id, name, service_type)
    except Exception:
        mart.bindings.remove(binding.name)
        raise
    return details(mart, record)


@router.get("/v1/data_marts/{data_mart_id}/service_bindings", summary="The service bindings")
def get_bindings(data_mart_id: str, principal: Principal = READ, mart: Mart = MART) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    return {"service_bindings": [details(mart, r) for r in list_bindings(mart)]}


@router.get("/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}", summary="One service binding")
def get_one_binding(
    data_mart_id: str, binding_uid: str, principal: Principal = READ, mart: Mart = MART
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    return details(mart, get_binding(mart, binding_uid))


@router.delete("/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}", status_code=202, summary="Unbind")
def delete_binding(data_mart_id: str, binding_uid: str, principal: Principal = ADMIN, mart: Mart = MART) -> Response:
    check_data_mart(mart, data_mart_id)
    record = get_binding(mart, binding_uid)
    if list_subscriptions(mart, binding_uid):
        raise HTTPException(409, f"binding {binding_uid!r} has subscriptions: delete them first")
    with mart.engine.begin() as conn:
        table.delete_binding(conn, binding_uid)
    mart.bindings.remove(record.binding_name)
    return Response(status_code=202)


def _resource(mart: Mart, binding_uid: str, deployment: Any) -> dict[str, Any]:
    d = dict(deployment.details)
    variants = d.get("variants") or [{}]
    model = variants[0].get("model") or deployment.id
    created = d.get("created_at") or "0000-01-01T00:00:00.000Z"
    return {
        "metadata": {"guid": deployment.id, "url": deployment.id, "created_at": created},
        "entity": {
            "name": deployment.name,
            "type": "online",
            "description": f"SageMaker endpoint {deployment.name} ({d.get('status') or 'unknown status'})",
            "scoring_endpoint": {"url": deployment.id, "request_headers": {"Content-Type": "text/csv"}},
            "deployment_rn": d.get("arn") or "",
            "asset": {
                "asset_id": model,
                "url": variants[0].get("model_data_url") or "",
                "name": model,
                "asset_type": "model",
                "created_at": variants[0].get("created_at") or created,
            },
        },
    }


@router.get("/v1/ml_instances/{binding_uid}/deployments", summary="Discover the binding's deployments (server side)")
def discover(binding_uid: str, principal: Principal = READ, mart: Mart = MART) -> dict[str, Any]:
    record = get_binding(mart, binding_uid)
    provider = mart.bindings.get(record.binding_name).connect()
    try:
        found = [provider.describe(d.id) for d in provider.list_deployments()]
    finally:
        provider.close()
    resources = [_resource(mart, binding_uid, d) for d in found]
    return {"count": len(resources), "resources": resources}
