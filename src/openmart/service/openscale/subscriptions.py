"""Subscriptions (``.../service_bindings/{b}/subscriptions/{uid}``). OpenScale learns a
subscription's schemas from its first scoring payload; so does this: the openmart subscription
(typed record tables) is made when the first payload arrives (:func:`link`), and the asset
properties gain ``input_data_schema``, ``output_data_schema`` and ``training_data_schema``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Response
from sqlalchemy.exc import IntegrityError

from openmart.api import Mart, Subscription
from openmart.errors import AlreadyExists
from openmart.mart import openscale as table
from openmart.mart.openscale import OpenScaleSubscriptionRecord
from openmart.schema import Column, ColumnKind, ProblemType, SubscriptionSchema
from openmart.service.auth import MART, READ, WRITE, Principal
from openmart.service.openscale import configurations
from openmart.service.openscale.common import (
    check_data_mart,
    get_binding,
    get_subscription,
    iso,
    list_bindings,
    list_subscriptions,
    subscription_href,
)

router = APIRouter(tags=["openscale"])


def details(mart: Mart, record: OpenScaleSubscriptionRecord) -> dict[str, Any]:
    return {
        "metadata": {
            "guid": record.uid,
            "url": subscription_href(mart, record.binding_uid, record.uid),
            "created_at": iso(record.created_at),
        },
        "entity": {
            "asset": record.asset,
            "asset_properties": record.asset_properties,
            "deployments": record.deployments,
            "service_binding_id": record.binding_uid,
            "configurations": configurations.listing(mart, record),
            "status": {"state": "active"},
            "openmart_subscription": record.subscription_name,
        },
    }


@router.put(
    "/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}/subscriptions/{uid}",
    status_code=201,
    summary="Subscribe an asset's deployment",
)
def add_subscription(
    data_mart_id: str,
    binding_uid: str,
    uid: str,
    body: dict[str, Any] = Body(...),
    principal: Principal = WRITE,
    mart: Mart = MART,
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    get_binding(mart, binding_uid)
    asset, props, deployments = body.get("asset"), body.get("asset_properties") or {}, body.get("deployments")
    if not isinstance(asset, dict) or not asset.get("asset_id"):
        raise HTTPException(422, "asset: an object with asset_id")
    if not isinstance(props, dict):
        raise HTTPException(422, "asset_properties: an object")
    if not isinstance(deployments, list) or len(deployments) != 1 or not isinstance(deployments[0], dict):
        raise HTTPException(422, "deployments: exactly one deployment")
    if not deployments[0].get("deployment_id"):
        raise HTTPException(422, "deployments[0].deployment_id is missing")
    problem = props.get("problem_type")
    if problem not in ("binary", "multiclass", "regression"):
        raise HTTPException(422, f"asset_properties.problem_type: binary, multiclass or regression (got {problem!r})")
    if problem != "regression" and not props.get("label_column"):
        raise HTTPException(422, "asset_properties.label_column is missing")
    if not props.get("prediction_field") and not props.get("predicted_target_field"):
        raise HTTPException(422, "asset_properties.prediction_field is missing")
    for existing in list_subscriptions(mart, binding_uid):
        if existing.asset.get("asset_id") == asset["asset_id"]:
            raise HTTPException(409, f"asset {asset['asset_id']!r} is subscribed already (subscription {existing.uid})")
    with mart.engine.begin() as conn:
        record = table.insert_subscription(
            conn, uid, binding_uid, asset=asset, asset_properties=props, deployments=deployments
        )
    return details(mart, record)


@router.get(
    "/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}/subscriptions", summary="A binding's subscriptions"
)
def get_subscriptions(
    data_mart_id: str, binding_uid: str, principal: Principal = READ, mart: Mart = MART
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    get_binding(mart, binding_uid)
    return {"subscriptions": [details(mart, r) for r in list_subscriptions(mart, binding_uid)]}


@router.get("/v1/data_marts/{data_mart_id}/subscriptions", summary="Every subscription")
def get_all_subscriptions(data_mart_id: str, principal: Principal = READ, mart: Mart = MART) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    return {"subscriptions": [details(mart, r) for b in list_bindings(mart) for r in list_subscriptions(mart, b.uid)]}


@router.get(
    "/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}/subscriptions/{uid}", summary="One subscription"
)
def get_one_subscription(
    data_mart_id: str, binding_uid: str, uid: str, principal: Principal = READ, mart: Mart = MART
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    return details(mart, get_subscription(mart, uid, binding_uid))


@router.delete(
    "/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}/subscriptions/{uid}",
    status_code=202,
    summary="Delete a subscription (and its openmart subscription with its records)",
)
def delete_subscription(
    data_mart_id: str, binding_uid: str, uid: str, principal: Principal = WRITE, mart: Mart = MART
) -> Response:
    check_data_mart(mart, data_mart_id)
    record = get_subscription(mart, uid, binding_uid)
    with mart.engine.begin() as conn:
        table.delete_subscription(conn, uid)
    if record.subscription_name:
        mart.subscriptions.remove(record.subscription_name)
    return Response(status_code=202)


# -- schemas learned from the first payload -------------------------------------------------------


def _numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)


def _columns(part: Mapping[str, Any], where: str) -> list[tuple[str, list[Any]]]:
    fields, values = part.get("fields"), part.get("values")
    if not isinstance(fields, list) or not isinstance(values, list) or not values:
        raise HTTPException(422, f"{where}: give fields and at least one row of values")
    rows = [r for r in values if isinstance(r, list)]
    return [(str(f), [r[i] if i < len(r) else None for r in rows]) for i, f in enumerate(fields)]


def _field(name: str, numeric: bool, role: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "double" if numeric else "string",
        "nullable": True,
        "metadata": {"modeling_role": role},
    }


def learn(props: Mapping[str, Any], first: Mapping[str, Any]) -> tuple[SubscriptionSchema, dict[str, Any]]:
    """The openmart schema and OpenScale's asset properties from a first payload record."""
    request, response = first.get("request"), first.get("response")
    if not isinstance(request, dict) or not isinstance(response, dict):
        raise HTTPException(422, "payload 0: request and response must be objects with fields and values")
    label = str(props.get("label_column") or "label")
    prediction = str(props.get("prediction_field") or props.get("predicted_target_field"))
    probabilities = props.get("probability_fields") or []
    probability = str(probabilities[0]) if probabilities else None
    inputs = _columns(request, "payload 0: request")
    meta = _columns(request["meta"], "payload 0: request.meta") if isinstance(request.get("meta"), dict) else []
    outputs = dict(_columns(response, "payload 0: response"))
    if prediction not in outputs:
        raise HTTPException(422, f"payload 0: the response has no prediction field {prediction!r}", headers=None)
    if probability is not None and probability not in outputs:
        raise HTTPException(422, f"payload 0: the response has no probability field {probability!r}")
    feature_names = props.get("feature_fields") or [n for n, _ in inputs]
    categorical = set(props.get("categorical_fields") or [])
    kinds = {
        n: (ColumnKind.CATEGORICAL if n in categorical or not _numeric(v) else ColumnKind.NUMERIC) for n, v in inputs
    }
    features = tuple(Column(n, kinds[n]) for n in feature_names if n in kinds)
    meta_columns = tuple(Column(n, ColumnKind.NUMERIC if _numeric(v) else ColumnKind.CATEGORICAL) for n, v in meta)
    predicted = outputs[prediction]
    problem = str(props.get("problem_type"))
    scores = outputs.get(probability) if probability else None
    class_labels: tuple[Any, ...] | None = None
    if problem == "regression":
        kind = ProblemType.REGRESSION
    elif scores is not None and all(isinstance(s, list) for s in scores if s is not None):
        kind = ProblemType.MULTICLASS
        width = max(len(s) for s in scores if s is not None)
        if not _numeric(predicted):
            raise HTTPException(
                422, "payload 0: class names with a probability vector: declare the classes in openmart"
            )
        class_labels = tuple(range(width))
    elif _numeric(predicted) and {float(p) for p in predicted if p is not None} <= {0.0, 1.0}:
        # a scalar probability (SageMaker's built-in binary classifier: predicted_label 0/1, score
        # the probability of 1): openmart's binary, whatever problem type was declared
        kind, class_labels = ProblemType.BINARY, (0, 1)
    else:
        raise HTTPException(
            422,
            f"payload 0: cannot tell the classes of a {problem} model from predictions {predicted[:5]} and a "
            "scalar probability: subscribe it in openmart with its class labels",
        )
    schema = SubscriptionSchema(
        features=features,
        label=label,
        problem_type=kind,
        prediction=prediction,
        probability=probability,
        class_labels=class_labels,
        meta=meta_columns,
    )
    numeric_output = kind is ProblemType.REGRESSION or all(isinstance(c, int | float) for c in class_labels or ())
    input_fields = [_field(c.name, c.kind is ColumnKind.NUMERIC, "feature") for c in features]
    input_fields += [_field(c.name, c.kind is ColumnKind.NUMERIC, "meta-field") for c in meta_columns]
    output_fields = list(input_fields)
    output_fields.append(_field(prediction, numeric_output, "prediction"))
    if probability:
        output_fields.append(
            {
                **_field(probability, True, "probability"),
                "type": "array" if kind is ProblemType.MULTICLASS else "double",
            }
        )
    learned = {
        **props,
        "input_data_schema": {"type": "struct", "fields": input_fields},
        "output_data_schema": {"type": "struct", "fields": output_fields},
        "training_data_schema": {
            "type": "struct",
            "fields": [*input_fields[: len(features)], _field(label, numeric_output, "target")],
        },
        "feature_fields": [c.name for c in features],
        "categorical_fields": [c.name for c in features if c.kind is ColumnKind.CATEGORICAL],
    }
    return schema, learned


def _name(record: OpenScaleSubscriptionRecord) -> str:
    base = str(record.deployments[0].get("name") or record.asset.get("name") or "openscale")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-._") or "openscale"
    return f"{slug[:50]}-{record.uid[:8]}"


def link(mart: Mart, record: OpenScaleSubscriptionRecord, first: Mapping[str, Any]) -> Subscription:
    """The openmart subscription of ``record``, made from its first payload record when it has
    none yet (two first payloads at once make one: the second finds it by name)."""
    if record.subscription_name:
        return mart.subscriptions.get(record.subscription_name)
    schema, learned = learn(record.asset_properties, first)
    binding = get_binding(mart, record.binding_uid)
    name = _name(record)
    try:
        sub = mart.subscriptions.add(
            name,
            schema=schema,
            binding=binding.binding_name,
            deployment=str(record.deployments[0]["deployment_id"]),
        )
    except (AlreadyExists, IntegrityError):  # another first payload made it: its transaction committed
        sub = mart.subscriptions.get(name)
    with mart.engine.begin() as conn:
        current = table.get_subscription(conn, record.uid, for_update=True)
        if current.subscription_id is None:
            table.update_subscription(conn, record.uid, asset_properties=learned, subscription_id=sub.id)
    configurations.apply_all(mart, get_subscription(mart, record.uid), sub)
    return sub
