"""Evaluations (started in the background: 202 with the id, then polled) and measurements."""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import APIRouter, Query, Response

from openmart.api import Mart, Subscription
from openmart.errors import EvaluationFailed
from openmart.mart.evaluations import EvaluationRecord, EvaluationStatus
from openmart.service.auth import MART, READ, WRITE, Principal
from openmart.service.rest.common import ERRORS, TAG_EVALUATIONS, frame_records, subscription
from openmart.service.rest.models import EvaluationIn, EvaluationStarted

log = logging.getLogger(__name__)

router = APIRouter(tags=[TAG_EVALUATIONS], responses=ERRORS)

#: summary entries that are not a monitor's
NOT_MONITORS = frozenset({"elapsed_s", "error", "feedback_scoring"})


def location(name: str, evaluation_id: int) -> str:
    return f"/api/v1/subscriptions/{name}/evaluations/{evaluation_id}"


def start_in_background(sub: Subscription, body: EvaluationIn) -> int:
    """Start an evaluation in a thread of its own; its id as soon as its ``running`` row exists.
    What fails before that (a bad window, another evaluation running with ``wait`` false) is
    raised here; what fails after is recorded in the evaluation's row, as the runner does."""
    started = threading.Event()
    box: dict[str, Any] = {}

    def on_started(evaluation_id: int) -> None:
        box["id"] = evaluation_id
        started.set()

    def run() -> None:
        try:
            sub.evaluate(
                since=body.since,
                until=body.until,
                last=body.last,
                kinds=body.kinds,
                wait=body.wait,
                on_started=on_started,
            )
        except EvaluationFailed as exc:  # recorded as failed by the runner: GET shows it
            log.info("evaluation %s of %r failed: %s", exc.evaluation_id, sub.name, exc)
        except BaseException as exc:  # before the row existed: the request answers with it
            box.setdefault("error", exc)
            if "id" in box:
                log.exception("evaluation %s of %r", box["id"], sub.name)
        finally:
            started.set()

    # a daemon thread: a service that stops mid-evaluation leaves its row, which the next
    # evaluation of the subscription marks abandoned (the lock died with the connection)
    threading.Thread(target=run, name=f"evaluation:{sub.name}", daemon=True).start()
    started.wait()
    if "id" not in box:
        raise box["error"]
    return int(box["id"])


@router.post(
    "/subscriptions/{name}/evaluations",
    status_code=202,
    response_model=EvaluationStarted,
    summary="Start an evaluation of the enabled monitors: 202 with its id (poll Location); 409 when busy, wait false",
    responses={409: {"description": "another evaluation of this subscription is running (wait false)"}},
)
def start_evaluation(
    name: str, response: Response, body: EvaluationIn | None = None, principal: Principal = WRITE, mart: Mart = MART
) -> EvaluationStarted:
    sub = subscription(mart, name)
    evaluation_id = start_in_background(sub, body or EvaluationIn())
    response.headers["Location"] = location(sub.name, evaluation_id)
    return EvaluationStarted(
        id=evaluation_id,
        subscription=sub.name,
        status=str(EvaluationStatus.RUNNING),
        location=location(sub.name, evaluation_id),
    )


@router.get("/subscriptions/{name}/evaluations", summary="The subscription's evaluations, newest first")
def list_evaluations(
    name: str,
    status: EvaluationStatus | None = Query(None, description="only evaluations with this status"),
    limit: int = Query(50, ge=1, le=1000),
    principal: Principal = READ,
    mart: Mart = MART,
) -> list[dict[str, Any]]:
    return [e.to_dict() for e in subscription(mart, name).evaluations(status=status, limit=limit)]


def result(sub: Subscription, record: EvaluationRecord) -> dict[str, Any]:
    out = record.to_dict()
    out["subscription"] = sub.name
    out["monitors"] = {k: v for k, v in record.summary.items() if k not in NOT_MONITORS}
    if record.status is EvaluationStatus.FINISHED:
        out["measurements"] = frame_records(sub.measurements(evaluation_id=record.id))
        out["alerts"] = [a.to_dict() for a in sub.evaluation_alerts(record.id)]
    return out


@router.get(
    "/subscriptions/{name}/evaluations/{evaluation_id}",
    summary="One evaluation: its status and, once finished, its measurements, alerts and per-monitor summary",
)
def get_evaluation(name: str, evaluation_id: int, principal: Principal = READ, mart: Mart = MART) -> dict[str, Any]:
    sub = subscription(mart, name)
    return result(sub, sub.evaluation(evaluation_id))


@router.get(
    "/subscriptions/{name}/measurements",
    summary="Measurements, oldest first (filters: monitor, metric, measured in [since, until); the newest limit)",
)
def measurements(
    name: str,
    monitor: str | None = None,
    metric: str | None = None,
    since: str | None = Query(None, description="ISO 8601"),
    until: str | None = Query(None, description="ISO 8601, exclusive"),
    limit: int | None = Query(None, ge=1, le=100_000),
    principal: Principal = READ,
    mart: Mart = MART,
) -> list[dict[str, Any]]:
    sub = subscription(mart, name)
    return frame_records(sub.measurements(monitor=monitor, metric=metric, since=since, until=until, limit=limit))
