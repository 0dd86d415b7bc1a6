"""Payload, feedback and reference records: logging (JSON, or streamed NDJSON and CSV, into the
same fast ingest as the CLI: all of a body in one transaction, or nothing) and paging."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pandas as pd
from fastapi import APIRouter, HTTPException, Query, Request

from openmart.api import Mart, RecordStore, Subscription
from openmart.errors import ValidationError
from openmart.mart.record_store import PAGE_ORDER, OnDuplicate
from openmart.mart.records import RecordKind, to_frame
from openmart.service.auth import MART, READ, WRITE, Principal
from openmart.service.rest import bodies
from openmart.service.rest.common import ERRORS, TAG_RECORDS, frame_records, subscription
from openmart.service.rest.models import Logged, RecordsPage

router = APIRouter(tags=[TAG_RECORDS], responses=ERRORS)

#: above this many records the answer leaves the scoring ids out (they are in the mart)
IDS_LIMIT = 10_000

BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'records as JSON (a list of objects, {"records": [...]}, OpenScale\'s {"fields", "values"} '
        "or a list of those, OpenScale payload records), or streamed as NDJSON or CSV",
        "content": {
            "application/json": {
                "schema": {"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]},
                "example": [{"income": 52.0, "sex": "female", "prediction": 1, "probability": 0.8}],
            },
            "application/x-ndjson": {"schema": {"type": "string"}, "example": '{"income": 52.0, "sex": "female"}\n'},
            "text/csv": {"schema": {"type": "string"}, "example": "income,sex,prediction\n52.0,female,1\n"},
        },
    }
}


async def _batches_then(request: Request, work: Callable[[Iterator[Any]], Any]) -> Any:
    """Run ``work`` over the body's batches in a worker thread (the mart's calls block): a JSON
    body is read whole first; NDJSON and CSV are pulled from the request stream chunk by chunk
    while ``work`` consumes them, so a bulk body never sits in memory whole."""
    try:
        kind = bodies.media_type(request.headers.get("content-type"))
    except bodies.UnsupportedBody as exc:
        raise HTTPException(415, str(exc)) from None
    if kind == "json":
        raw = await request.body()
        if not raw.strip():
            raise ValidationError("the body is empty; send records")
        batches = bodies.json_batches(bodies.loads(raw))
        return await anyio.to_thread.run_sync(lambda: work(iter(batches)))
    stream = request.stream().__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    def chunks() -> Iterator[bytes]:
        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            if chunk:
                yield chunk

    reader = bodies.STREAMED[kind]
    return await anyio.to_thread.run_sync(lambda: work(reader(chunks())))


def _logged(sub: Subscription, kind: RecordKind, ids: list[Any], rows: int) -> Logged:
    omitted = rows > IDS_LIMIT
    scoring_ids: list[str] | None = None
    if not omitted:
        scoring_ids = [str(i) for arr in ids if arr is not None for i in arr.to_pylist()] or None
    return Logged(
        subscription=sub.name, kind=str(kind), records=rows, scoring_ids=scoring_ids, scoring_ids_omitted=omitted
    )


async def _log(
    request: Request,
    mart: Mart,
    name: str,
    kind: RecordKind,
    on_duplicate: OnDuplicate,
    allow_extra_columns: bool,
    version: str | None,
) -> Logged:
    sub = await anyio.to_thread.run_sync(subscription, mart, name)
    store: RecordStore = sub.payload if kind is RecordKind.PAYLOAD else sub.feedback

    def work(batches: Iterator[Any]) -> Logged:
        ids, rows = store.log_batches(
            batches, on_duplicate=on_duplicate, allow_extra_columns=allow_extra_columns, version=version
        )
        return _logged(sub, kind, ids, rows)

    return await _batches_then(request, work)  # type: ignore[no-any-return]


ON_DUPLICATE = Query(
    OnDuplicate.REFUSE, description="a record whose scoring id is stored already: refuse the body, or replace it"
)
EXTRA = Query(False, description="drop columns the subscription has no place for, instead of refusing the body")
VERSION = Query(
    None,
    description="the model version of records without an asset_revision of their own (default: the current "
    "version; one new to the mart becomes current)",
)
ENVIRONMENT = Query("training", description="the labelled set's environment: training or validation")
SET_VERSION = Query(None, description="the labelled set's model version (default: the current version)")


@router.post(
    "/subscriptions/{name}/payload",
    status_code=201,
    response_model=Logged,
    summary="Log scored records (payload): JSON, NDJSON or CSV; all of the body or, on a bad record, nothing",
    openapi_extra=BODY_DOC,
)
async def log_payload(
    name: str,
    request: Request,
    on_duplicate: OnDuplicate = ON_DUPLICATE,
    allow_extra_columns: bool = EXTRA,
    version: str | None = VERSION,
    principal: Principal = WRITE,
    mart: Mart = MART,
) -> Logged:
    return await _log(request, mart, name, RecordKind.PAYLOAD, on_duplicate, allow_extra_columns, version)


@router.post(
    "/subscriptions/{name}/feedback",
    status_code=201,
    response_model=Logged,
    summary="Log labelled records (feedback), linked to payload records by scoring_id; all or nothing",
    openapi_extra=BODY_DOC,
)
async def log_feedback(
    name: str,
    request: Request,
    on_duplicate: OnDuplicate = ON_DUPLICATE,
    allow_extra_columns: bool = EXTRA,
    version: str | None = VERSION,
    principal: Principal = WRITE,
    mart: Mart = MART,
) -> Logged:
    return await _log(request, mart, name, RecordKind.FEEDBACK, on_duplicate, allow_extra_columns, version)


async def _load_reference(
    request: Request,
    mart: Mart,
    name: str,
    replace: bool,
    allow_extra_columns: bool,
    environment: str,
    version: str | None,
) -> Logged:
    sub = await anyio.to_thread.run_sync(subscription, mart, name)

    def work(batches: Iterator[Any]) -> Logged:
        # the reference's profile is computed over all of it: the batches are gathered first
        frames = [to_frame(b, sub.schema) for b in batches]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        rows = sub.reference.load(
            frame, replace=replace, allow_extra_columns=allow_extra_columns, environment=environment, version=version
        )
        return Logged(subscription=sub.name, kind=str(RecordKind.REFERENCE), records=rows)

    return await _batches_then(request, work)  # type: ignore[no-any-return]


@router.put(
    "/subscriptions/{name}/reference",
    response_model=Logged,
    summary="Replace a labelled set (default: the current version's training set, the reference) and, when it is "
    "the reference, its profile, in one transaction",
    openapi_extra=BODY_DOC,
)
async def replace_reference(
    name: str,
    request: Request,
    allow_extra_columns: bool = EXTRA,
    environment: str = ENVIRONMENT,
    version: str | None = SET_VERSION,
    principal: Principal = WRITE,
    mart: Mart = MART,
) -> Logged:
    return await _load_reference(request, mart, name, True, allow_extra_columns, environment, version)


@router.post(
    "/subscriptions/{name}/reference",
    status_code=201,
    response_model=Logged,
    summary="Add records to a labelled set (default: the current version's training set; the reference's "
    "profile is computed again), in one transaction",
    openapi_extra=BODY_DOC,
)
async def add_reference(
    name: str,
    request: Request,
    allow_extra_columns: bool = EXTRA,
    environment: str = ENVIRONMENT,
    version: str | None = SET_VERSION,
    principal: Principal = WRITE,
    mart: Mart = MART,
) -> Logged:
    return await _load_reference(request, mart, name, False, allow_extra_columns, environment, version)


# -- paging ------------------------------------------------------------------------------------------


def encode_cursor(kind: RecordKind, row: pd.Series) -> str:
    values = []
    for column in PAGE_ORDER[kind]:
        value = row[column]
        values.append(value.isoformat() if isinstance(value, datetime | pd.Timestamp) else _plain(value))
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def decode_cursor(kind: RecordKind, cursor: str) -> list[Any]:
    """The cursor's values, each checked (a made-up cursor is refused by name, never sent on)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise ValidationError(f"cursor {cursor!r} is not one this API made", column="cursor", value=cursor) from None
    order = PAGE_ORDER[kind]
    if not isinstance(values, list) or len(values) != len(order):
        raise ValidationError(f"cursor {cursor!r} is not one this API made", column="cursor", value=cursor)
    out: list[Any] = []
    for column, value in zip(order, values, strict=True):
        try:
            if column == "record_id":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError
                out.append(value)
            elif column == "scoring_timestamp":
                out.append(datetime.fromisoformat(value))
            else:
                out.append(str(value))
        except (TypeError, ValueError):
            raise ValidationError(
                f"cursor {cursor!r} is not one this API made", column="cursor", value=cursor
            ) from None
    return out


def _page(mart: Mart, name: str, kind: RecordKind, limit: int, cursor: str | None, offset: int) -> RecordsPage:
    sub = subscription(mart, name)
    store: RecordStore = {RecordKind.PAYLOAD: sub.payload, RecordKind.FEEDBACK: sub.feedback}.get(kind, sub.reference)
    after = decode_cursor(kind, cursor) if cursor else None
    frame, total = store.page(limit=limit, after=after, offset=offset)
    following = encode_cursor(kind, frame.iloc[-1]) if len(frame) == limit else None
    return RecordsPage(
        subscription=sub.name,
        kind=str(kind),
        total=total,
        limit=limit,
        offset=offset,
        records=frame_records(frame),
        next_cursor=following,
    )


LIMIT = Query(100, ge=1, le=10_000, description="records per page")
CURSOR = Query(None, description="next_cursor of the previous page (stable while records are added)")
OFFSET = Query(0, ge=0, description="records to skip (after the cursor, when one is given)")


@router.get(
    "/subscriptions/{name}/payload",
    response_model=RecordsPage,
    summary="Payload records, a page at a time (by scoring_timestamp, scoring_id), with the total",
)
def payload_page(
    name: str,
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
    offset: int = OFFSET,
    principal: Principal = READ,
    mart: Mart = MART,
) -> RecordsPage:
    return _page(mart, name, RecordKind.PAYLOAD, limit, cursor, offset)


@router.get(
    "/subscriptions/{name}/feedback",
    response_model=RecordsPage,
    summary="Feedback records, a page at a time (in the order they were stored), with the total",
)
def feedback_page(
    name: str,
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
    offset: int = OFFSET,
    principal: Principal = READ,
    mart: Mart = MART,
) -> RecordsPage:
    return _page(mart, name, RecordKind.FEEDBACK, limit, cursor, offset)


@router.get(
    "/subscriptions/{name}/reference",
    response_model=RecordsPage,
    summary="Reference records, a page at a time (in the order they were stored), with the total",
)
def reference_page(
    name: str,
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
    offset: int = OFFSET,
    principal: Principal = READ,
    mart: Mart = MART,
) -> RecordsPage:
    return _page(mart, name, RecordKind.REFERENCE, limit, cursor, offset)
