"""What the REST modules share: tags, the subscription a path names, DataFrames as JSON."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from openmart.api import Mart, Subscription

TAG_BINDINGS = "bindings"
TAG_SUBSCRIPTIONS = "subscriptions"
TAG_MONITORS = "monitors"
TAG_RECORDS = "records"
TAG_EVALUATIONS = "evaluations"
TAG_ALERTS = "alerts"
TAG_EXPLANATIONS = "explanations"

#: the errors every route may answer with, for the OpenAPI document
ERROR_SCHEMA: dict[str, Any] = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "message": {"type": "string"},
                        "record": {"type": "integer", "description": "the refused record's index in the body"},
                        "field": {"type": "string", "description": "the refused field (column)"},
                    },
                    "required": ["type", "message"],
                }
            },
        }
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no key, or a key that is not valid", "content": ERROR_SCHEMA},
    403: {"description": "the key's scope is too small for this route", "content": ERROR_SCHEMA},
    404: {"description": "no such binding, subscription, evaluation or alert", "content": ERROR_SCHEMA},
    422: {"description": "the request was refused: the record and field are named", "content": ERROR_SCHEMA},
}


def subscription(mart: Mart, name: str) -> Subscription:
    """The subscription the path names (404 when there is none)."""
    return mart.subscriptions.get(name)


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as JSON records: timestamps in ISO 8601, missing values as null, numpy
    values as plain numbers (pandas' own encoder does all three in C)."""
    if frame.empty:
        return []
    return list(json.loads(frame.to_json(orient="records", date_format="iso", date_unit="us")))
