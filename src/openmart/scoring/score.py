"""Score records through a subscription's binding and capture the traffic."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

from openmart.errors import ValidationError
from openmart.mart.records import new_scoring_ids
from openmart.mart.scoring_requests import RequestRow
from openmart.scoring.intake import Intake, IntakeBuilder

if TYPE_CHECKING:
    from openmart.context import SubscriptionContext
    from openmart.providers.base import Provider


def score_for_capture(sub: SubscriptionContext, records: pd.DataFrame) -> tuple[pd.DataFrame, Intake]:
    """Score ``records`` (``sub.score``): the scored frame, and its intake for capture carrying
    the call's request row (source ``score``; one row per call, its latency the whole call's)."""
    timing: list[float] = []
    scored = score_frame(sub, records, timing=timing)
    intake = IntakeBuilder(sub.schema).build([scored])
    intake.requests.append(
        RequestRow(
            at=datetime.now(UTC),
            status=200,
            records=len(scored),
            latency_ms=timing[0],
            source="score",
            request_id=str(uuid.uuid4()),
        )
    )
    return scored, intake


def score_frame(
    sub: SubscriptionContext,
    records: pd.DataFrame,
    *,
    provider: Provider | None = None,
    timing: list[float] | None = None,
) -> pd.DataFrame:
    """Score ``records`` through the deployment; returns them with scoring_id, prediction and
    probability (and response_time in ms). A failed scoring raises and nothing is logged.
    ``timing``: the call's latency in ms is appended to it."""
    schema = sub.schema
    missing = [c for c in schema.feature_names if c not in records.columns]
    if missing:
        raise ValidationError(f"records to score: column {missing[0]!r} is missing", row=0, column=missing[0])
    if not sub.deployment_id:
        raise ValidationError(f"subscription {sub.name!r} names no deployment to score")
    own = provider is None
    provider = provider or sub.provider()
    try:
        t0 = time.perf_counter()
        result = provider.score(sub.deployment_id, records.loc[:, schema.feature_names])
        elapsed_ms = (time.perf_counter() - t0) * 1000
        if timing is not None:
            timing.append(elapsed_ms)
    finally:
        if own:
            provider.close()
    if len(result.predictions) != len(records):
        raise ValidationError(
            f"the deployment answered {len(result.predictions)} predictions for {len(records)} records"
        )
    keep = [
        c
        for c in records.columns
        if c
        in set(schema.feature_names)
        | {c.name for c in schema.meta}
        | {"scoring_id", "scoring_timestamp", "asset_revision"}
    ]
    out = records.loc[:, keep].copy()
    if "scoring_id" not in out.columns:
        ids = result.record_ids if result.record_ids is not None else new_scoring_ids(len(out)).to_pylist()
        out.insert(0, "scoring_id", ids)
    out[schema.prediction] = list(result.predictions)
    if schema.probability and result.probabilities is not None:
        out[schema.probability] = list(result.probabilities)
    out["response_time"] = elapsed_ms / max(result.requests, 1)
    return out  # its model version is stamped by the mart as it is written (mart/versions.stamp).reset_index(drop=True)
