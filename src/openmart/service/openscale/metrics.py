"""Evaluations (``POST .../subscriptions/{uid}/evaluations``: 202, then poll
``GET .../evaluations/{id}``), ``GET /v1/data_marts/{dm}/metrics`` (performance samples per
scoring request; quality per evaluation, in both the V1 ``metric_type`` and the
``monitor_definition_id`` shapes) and ``GET /v1/data_marts/{dm}/deployment_metrics``."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from fastapi import APIRouter, HTTPException, Query, Request

from openmart.api import Mart, Subscription
from openmart.mart.openscale import OpenScaleSubscriptionRecord
from openmart.service.auth import MART, READ, WRITE, Principal
from openmart.service.openscale.common import (
    check_data_mart,
    deployment_id,
    get_subscription,
    iso,
    list_bindings,
    list_subscriptions,
    openmart_subscription,
    parse_time,
    require_openmart_subscription,
    subscription_href,
)

router = APIRouter(tags=["openscale"])

#: openmart's quality metric names -> OpenScale's
OPENSCALE_METRIC = {
    "roc_auc": "area_under_roc",
    "average_precision": "area_under_pr",
    "f1": "f1_measure",
    "precision_weighted": "weighted_precision",
    "recall_weighted": "weighted_recall",
    "f1_weighted": "weighted_f_measure",
    "mae": "mean_absolute_error",
    "mse": "mean_squared_error",
    "rmse": "root_mean_squared_error",
    "r2": "r2",
}
_STATUS = {"running": "running", "finished": "completed", "failed": "error", "abandoned": "error"}


# -- evaluations ----------------------------------------------------------------------------------


class Runs:
    """This worker's runs: id -> {"evaluation_id", "status", "error"}; another worker finds a run
    by the start time its id carries."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, dict[str, Any]] = {}


def _runs(request: Request) -> Runs:
    runs = getattr(request.app.state, "openscale_runs", None)
    if runs is None:
        runs = request.app.state.openscale_runs = Runs()
    assert isinstance(runs, Runs)
    return runs


def _start(runs: Runs, run_id: str, sub: Subscription) -> None:
    def started(evaluation_id: int) -> None:
        with runs.lock:
            runs.runs[run_id]["evaluation_id"] = evaluation_id

    def work() -> None:
        try:
            result = sub.evaluate(kinds=["quality"], on_started=started)
            with runs.lock:
                runs.runs[run_id].update(status="completed", evaluation_id=getattr(result, "evaluation_id", None))
        except Exception as exc:  # recorded as the run's error; the evaluation row says failed
            with runs.lock:
                runs.runs[run_id].update(status="error", error=f"{type(exc).__name__}: {exc}")

    threading.Thread(target=work, name=f"openscale-run-{run_id}", daemon=True).start()


def _run_details(runs: Runs, sub: Subscription, run_id: str) -> dict[str, Any]:
    with runs.lock:
        mine = dict(runs.runs.get(run_id) or {})
    evaluation = None
    if mine.get("evaluation_id") is not None:
        evaluation = sub.evaluation(int(mine["evaluation_id"]))
    if not mine:
        try:
            started = datetime.fromtimestamp(int(run_id.split("-")[0]) / 1000, UTC)
        except ValueError:
            raise HTTPException(404, f"no evaluation run {run_id!r}") from None
        later = [e for e in sub.evaluations() if e.started_at >= started]
        if not later:
            return {"id": run_id, "status": "initializing"}
        evaluation = min(later, key=lambda e: e.started_at)
    status = mine.get("status") or "initializing"
    if evaluation is not None:
        status = _STATUS.get(evaluation.status, evaluation.status)
    out: dict[str, Any] = {"id": run_id, "status": status}
    if evaluation is not None:
        out["evaluation_id"] = evaluation.id
        out["summary"] = evaluation.summary
        if evaluation.error_message:
            out["error"] = evaluation.error_message
    if mine.get("error") and "error" not in out:
        out["error"] = mine["error"]
    return out


_EVAL = "/v1/data_marts/{data_mart_id}/service_bindings/{binding_uid}/subscriptions/{uid}/evaluations"


@router.post(_EVAL, status_code=202, summary="Run quality monitoring now (202; poll the run)")
def run_evaluation(
    request: Request,
    data_mart_id: str,
    binding_uid: str,
    uid: str,
    model_type: str = Query("original"),
    principal: Principal = WRITE,
    mart: Mart = MART,
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    record = get_subscription(mart, uid, binding_uid)
    if not (record.configurations.get("quality_monitoring") or {}).get("enabled"):
        raise HTTPException(400, "quality monitoring is not enabled for this subscription")
    sub = require_openmart_subscription(mart, record, "evaluation")
    runs = _runs(request)
    run_id = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}"
    with runs.lock:
        runs.runs[run_id] = {"status": "initializing"}
    _start(runs, run_id, sub)
    return {"id": run_id, "status": "initializing", "model_type": model_type}


@router.get(_EVAL + "/{run_id}", summary="An evaluation run's status")
def get_evaluation(
    request: Request,
    data_mart_id: str,
    binding_uid: str,
    uid: str,
    run_id: str,
    principal: Principal = READ,
    mart: Mart = MART,
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    sub = require_openmart_subscription(mart, get_subscription(mart, uid, binding_uid), "evaluation")
    return _run_details(_runs(request), sub, run_id)


@router.get(_EVAL, summary="The newest evaluation run")
def last_evaluation(
    request: Request, data_mart_id: str, binding_uid: str, uid: str, principal: Principal = READ, mart: Mart = MART
) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    sub = require_openmart_subscription(mart, get_subscription(mart, uid, binding_uid), "evaluation")
    newest = sub.evaluations(limit=1)
    if not newest:
        raise HTTPException(404, "no evaluation has run")
    e = newest[0]
    return {"id": str(e.id), "status": _STATUS.get(e.status, e.status), "evaluation_id": e.id, "summary": e.summary}


# -- metrics --------------------------------------------------------------------------------------


def performance_samples(sub: Subscription) -> list[dict[str, Any]]:
    """One sample per scoring request (an OpenScale payload record): when, its records, its
    response time; from the payload table (``<scoring_id>-n`` rows grouped by their id)."""
    frame = sub.payload.read(columns=["scoring_id", "scoring_timestamp", "response_time"])
    if frame.empty:
        return []
    request = frame["scoring_id"].astype(str).str.replace(r"-\d+$", "", regex=True)
    grouped = (
        frame.assign(request=request)
        .groupby("request", sort=False)
        .agg(ts=("scoring_timestamp", "min"), records=("scoring_id", "size"), response_time=("response_time", "max"))
        .sort_values("ts")
    )
    return [
        {
            "timestamp": iso(pd.Timestamp(r.ts).to_pydatetime()),
            "value": {
                "records": int(r.records),
                "response_time": None if pd.isna(r.response_time) else float(r.response_time),
            },
            "process": "",
            "asset_revision": sub.asset_revision or "",
        }
        for r in grouped.itertuples()
    ]


def _quality(sub: Subscription) -> list[dict[str, Any]]:
    """Per finished evaluation with quality measurements: its metrics, OpenScale-named."""
    frame = sub.measurements(monitor="quality")
    out = []
    if frame.empty:
        return out
    for evaluation_id, group in frame.groupby("evaluation_id", sort=True):
        rows = group[group["feature"].isna() & group["group"].isna()] if "group" in group else group
        metrics = [
            {
                "id": OPENSCALE_METRIC.get(r.metric, r.metric),
                "value": None if pd.isna(r.value) else float(r.value),
                **(
                    {("lower_limit" if r.threshold_type == "lower_limit" else "upper_limit"): float(r.threshold)}
                    if r.threshold is not None and not pd.isna(r.threshold)
                    else {}
                ),
            }
            for r in rows.itertuples()
        ]
        headline = next(
            (m for m in metrics if "lower_limit" in m or "upper_limit" in m), metrics[0] if metrics else None
        )
        out.append(
            {
                "ts": iso(pd.Timestamp(rows["measured_at"].max()).to_pydatetime()),
                "measurement_id": str(evaluation_id),
                "metrics": metrics,
                "tags": [],
                "issues": int(rows["breached"].sum()),
                "quality": headline["value"] if headline else None,
                "threshold": headline.get("lower_limit", headline.get("upper_limit")) if headline else None,
            }
        )
    return out


def _in_window(ts: str, start: datetime | None, end: datetime | None) -> bool:
    when = pd.Timestamp(ts).to_pydatetime()
    return (start is None or when >= start) and (end is None or when <= end)


@router.get("/v1/data_marts/{data_mart_id}/metrics", summary="Performance and quality metrics of a subscription")
def metrics(
    data_mart_id: str,
    subscription_id: str = Query(...),
    binding_id: str | None = Query(None),
    metric_type: str | None = Query(None),
    monitor_definition_id: str | None = Query(None),
    format: str = Query("samples"),
    start: str | None = Query(None),
    end: str | None = Query(None),
    limit: int = Query(100, ge=1),
    principal: Principal = READ,
    mart: Mart = MART,
) -> Any:
    check_data_mart(mart, data_mart_id)
    record = get_subscription(mart, subscription_id, binding_id)
    sub = openmart_subscription(mart, record)
    since, until = parse_time(start, "start"), parse_time(end, "end")
    kind = monitor_definition_id or metric_type
    if kind not in ("performance", "quality"):
        raise HTTPException(400, f"metrics of {kind!r} are not kept here (performance, quality)")
    if monitor_definition_id is not None:  # the newer shape: a list of measurements
        rows = _quality(sub) if sub is not None and kind == "quality" else []
        return [
            {
                **r,
                "binding_id": record.binding_uid,
                "subscription_id": record.uid,
                "deployment_id": deployment_id(record),
            }
            for r in rows
            if _in_window(r["ts"], since, until)
        ][-limit:]
    if kind == "performance":
        samples = performance_samples(sub) if sub is not None else []
    else:
        samples = [
            {
                "timestamp": q["ts"],
                "value": {
                    "metrics": [{"name": m["id"], "value": m["value"]} for m in q["metrics"]],
                    "quality": q["quality"],
                    "threshold": q["threshold"],
                },
                "process": f"quality_evaluation_{q['measurement_id']}",
                "asset_revision": sub.asset_revision or "" if sub else "",
            }
            for q in (_quality(sub) if sub is not None else [])
        ]
    return {
        "start": start,
        "end": end,
        "metrics": [s for s in samples if _in_window(s["timestamp"], since, until)],
    }


def _deployment_metrics(mart: Mart, record: OpenScaleSubscriptionRecord) -> dict[str, Any]:
    sub = openmart_subscription(mart, record)
    metrics: list[dict[str, Any]] = []
    if sub is not None:
        samples = performance_samples(sub)
        if samples:
            last = samples[-1]
            metrics.append(
                {"metric_type": "performance", "value": last["value"], "issues": 0, "timestamp": last["timestamp"]}
            )
        quality = _quality(sub)
        if quality:
            q = quality[-1]
            metrics.append(
                {
                    "metric_type": "quality",
                    "value": {
                        "metrics": [{"name": m["id"], "value": m["value"]} for m in q["metrics"]],
                        "quality": q["quality"],
                        "threshold": q["threshold"],
                    },
                    "issues": q["issues"],
                    "timestamp": q["ts"],
                }
            )
    deployment = dict(record.deployments[0]) if record.deployments else {}
    return {
        "subscription": {
            "subscription_id": record.uid,
            "url": subscription_href(mart, record.binding_uid, record.uid),
        },
        "asset": record.asset,
        "deployment": deployment,
        "metrics": metrics,
    }


@router.get("/v1/data_marts/{data_mart_id}/deployment_metrics", summary="The newest metrics of every deployment")
def deployment_metrics(data_mart_id: str, principal: Principal = READ, mart: Mart = MART) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    records = [r for b in list_bindings(mart) for r in list_subscriptions(mart, b.uid)]
    return {"deployment_metrics": [_deployment_metrics(mart, r) for r in records]}
