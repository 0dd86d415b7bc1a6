"""openmart's errors as JSON answers: ``{"error": {"type", "message", "record"?, "field"?}}``,
with the HTTP status each kind of failure deserves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openmart import errors, secrets

# the most specific class first: a subclass is found before its base
STATUS: tuple[tuple[type[errors.OpenmartError], int], ...] = (
    (errors.NotFound, 404),
    (errors.AlreadyExists, 409),
    (errors.EvaluationBusy, 409),
    (errors.RecordsRefused, 422),
    (errors.ValidationError, 422),
    (errors.MonitorError, 422),
    (errors.ConfigError, 400),
    (errors.SecretError, 400),
    (errors.CapabilityMissing, 400),
    (errors.ProviderNotInstalled, 400),
    (errors.ProviderTimeout, 504),
    (errors.ProviderError, 502),
    (errors.MartUnavailable, 503),
    (errors.MartError, 500),
    (errors.EvaluationFailed, 500),
    (errors.ExplanationError, 500),
)


def status_of(exc: errors.OpenmartError) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def error_body(
    kind: str, message: str, *, record: Any = None, field: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, "message": secrets.scrub(message)}
    if record is not None:
        body["record"] = record
    if field is not None:
        body["field"] = field
    body.update({k: v for k, v in extra.items() if v is not None})
    return {"error": body}


def _openmart_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.OpenmartError)
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.RecordsRefused):
        extra["refused"] = exc.refused
        extra["counts"] = exc.counts
    if isinstance(exc, errors.EvaluationFailed):
        extra["evaluation_id"] = exc.evaluation_id
    body = error_body(
        type(exc).__name__,
        str(exc),
        record=getattr(exc, "row", None),
        field=getattr(exc, "column", None),
        **extra,
    )
    return JSONResponse(body, status_code=status_of(exc))


def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own body and parameter checks, in the same shape: the first problem named."""
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ())]
    where = ".".join(loc)
    record = next((int(p) for p in loc if p.isdigit()), None)
    field = next((p for p in reversed(loc) if not p.isdigit() and p not in ("body", "query", "path")), None)
    body = error_body(
        "ValidationError",
        f"{where}: {first.get('msg')}" if where else str(first.get("msg")),
        record=record,
        field=field,
        problems=[{"loc": list(p.get("loc", ())), "msg": p.get("msg")} for p in problems[:20]],
    )
    return JSONResponse(body, status_code=422)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kinds = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed", 413: "TooLarge"}
    body = error_body(kinds.get(exc.status_code, "HTTPError"), str(exc.detail))
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.OpenmartError, _openmart_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
