"""Captured traffic and ground truth into the mart, from any provider that can read them.

The provider of the subscription's binding reads and decodes its platform's files
(:class:`~openmart.providers.base.CaptureSource`,
:class:`~openmart.providers.base.GroundTruthSource`); this module writes what it decoded into
the subscription's record tables, in ONE transaction per ingest (all of it, or on a refused
record nothing). Ingesting the same files again adds nothing: scoring ids stored already are
skipped and counted. A line the provider could not decode, or whose record does not fit the
schema's features, is reported with its file and line number and skipped; the rest goes in.

A provider without the capability is refused before anything is read, in one line naming the
provider and what it supports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy.engine import Connection

from openmart.context import HasContext, SubscriptionContext, context_of
from openmart.errors import ProviderError, ValidationError
from openmart.mart import bindings, record_store
from openmart.mart.lookup import rows_by_id, stored_ids
from openmart.mart.records import RecordKind
from openmart.providers import registry
from openmart.providers.base import Capability, CaptureBatch, GroundTruthBatch, LineError

if TYPE_CHECKING:
    from openmart.providers.base import Provider
    from openmart.schema import SubscriptionSchema


@dataclass
class IngestReport:
    files: int = 0
    events: int = 0
    ingested: int = 0
    skipped_duplicates: int = 0
    #: (file, line, reason) of every line skipped
    errors: list[LineError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "events": self.events,
            "ingested": self.ingested,
            "skipped_duplicates": self.skipped_duplicates,
            "errors": [{"file": f, "line": n, "reason": r} for f, n, r in self.errors],
        }

    def _count(self, batch: CaptureBatch | GroundTruthBatch) -> None:
        self.files += batch.files
        self.events += batch.events
        self.errors += batch.errors


def _connect(ctx: SubscriptionContext, capability: Capability) -> tuple[Provider, str]:
    """The subscription's provider, once it is known to offer ``capability``; and its deployment."""
    if not ctx.binding:
        raise ValidationError(f"subscription {ctx.name!r} has no binding to read captured records through")
    with ctx.engine.connect() as conn:
        kind = bindings.get(conn, ctx.binding).provider
    registry.require(kind, capability, binding=ctx.binding)
    if not ctx.deployment_id:
        raise ValidationError(f"subscription {ctx.name!r} names no deployment to read captured records of")
    provider = ctx.provider()
    method = {
        Capability.INGEST_CAPTURE: "capture_records",
        Capability.INGEST_GROUND_TRUTH: "ground_truth_records",
    }[capability]
    if not callable(getattr(provider, method, None)):
        provider.close()
        raise ProviderError(f"provider {kind!r} declares {capability.label} but has no {method}()")
    return provider, ctx.deployment_id


def _utc(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    ts = pd.Timestamp(when)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


# -- payload --------------------------------------------------------------------------------------


def ingest_capture(
    sub: SubscriptionContext | HasContext,
    *,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> IngestReport:
    """Read the traffic the platform captured for the subscription's deployment into its payload
    table. ``source``: where the capture is (default: where the deployment says, e.g. an
    endpoint's capture configuration); ``since``/``until``: only events in that window (naive
    times are UTC)."""
    ctx = context_of(sub)
    provider, deployment = _connect(ctx, Capability.INGEST_CAPTURE)
    report = IngestReport()
    schema = ctx.schema
    seen: set[str] = set()

    def batches(conn: Connection) -> Iterator[pd.DataFrame]:
        for batch in provider.capture_records(  # type: ignore[attr-defined]
            deployment, source=source, since=_utc(since), until=_utc(until)
        ):
            report._count(batch)
            frame = _payload_frame(batch, schema, report)
            if frame is None:
                continue
            unique = frame.drop_duplicates("scoring_id", keep="first")
            unique = unique[~unique["scoring_id"].isin(seen)]
            stored = stored_ids(conn, ctx.payload_table, unique["scoring_id"])
            seen.update(unique["scoring_id"])
            fresh = unique[~unique["scoring_id"].isin(stored)]
            report.skipped_duplicates += len(frame) - len(fresh)
            if len(fresh):
                yield fresh.reset_index(drop=True)

    try:
        with ctx.engine.begin() as conn:  # one transaction: all of it, or nothing
            report.ingested = record_store.log_batches(conn, ctx.record, RecordKind.PAYLOAD, batches(conn))[1]
    finally:
        provider.close()
    report.errors.sort(key=lambda e: (e.source, e.line))
    return report


def _payload_frame(batch: CaptureBatch, schema: SubscriptionSchema, report: IngestReport) -> pd.DataFrame | None:
    """The batch as payload records of this schema. An event whose inputs do not fit the
    features (another count of values, text where a number belongs) is reported at its file and
    line, and all its rows left out."""
    features = schema.feature_names
    named = features + [c.name for c in schema.meta]
    rows: list[list[Any]] = []
    bad: dict[tuple[str, int], str] = {}
    for origin, values in zip(batch.origins, batch.values, strict=True):
        if isinstance(values, Mapping):
            rows.append([values.get(n) for n in named])
        elif not isinstance(values, Sequence) or isinstance(values, str | bytes):
            bad.setdefault(origin, f"an input row is neither a list of values nor a record: {values!r:.80}")
            rows.append([None] * len(named))
        elif len(values) != len(features):
            bad.setdefault(origin, f"{len(values)} input values for {len(features)} features")
            rows.append([None] * len(named))
        else:
            rows.append([*values, *([None] * (len(named) - len(features)))])
    frame = pd.DataFrame(rows, columns=named)
    for c in schema.numeric_features:
        if frame[c].dtype == object:
            given = frame[c].where(frame[c] != "")  # an empty CSV field is a missing value
            numbers = pd.to_numeric(given, errors="coerce")
            for i in (numbers.isna() & given.notna()).to_numpy().nonzero()[0]:
                bad.setdefault(batch.origins[i], f"feature {c!r}: {given.iloc[i]!r} is not a number")
            frame[c] = numbers
    report.errors += [LineError(file, line, reason) for (file, line), reason in bad.items()]
    report.events -= len(bad)  # events counts those that fit
    keep = [i for i, origin in enumerate(batch.origins) if origin not in bad]
    if not keep:
        return None
    frame = frame.iloc[keep].reset_index(drop=True)
    frame = frame.drop(columns=[c.name for c in schema.meta if frame[c.name].isna().all()])  # no event gave them
    frame.insert(0, "scoring_id", [str(batch.scoring_ids[i]) for i in keep])
    stamps = [batch.timestamps[i] for i in keep]
    if any(t is not None for t in stamps):
        frame.insert(1, "scoring_timestamp", stamps)
    frame[schema.prediction] = [batch.predictions[i] for i in keep]
    probabilities = [batch.probabilities[i] for i in keep]
    if schema.probability and any(p is not None for p in probabilities):
        frame[schema.probability] = probabilities
    return frame


# -- ground truth ---------------------------------------------------------------------------------


def ingest_ground_truth(
    sub: SubscriptionContext | HasContext,
    source: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> IngestReport:
    """Read ground truth kept on the platform into the subscription's feedback table: each label
    joins the payload record of its scoring id (its features and attributes copied from it).
    A label whose payload record is not stored is reported (ingest the capture first)."""
    ctx = context_of(sub)
    provider, deployment = _connect(ctx, Capability.INGEST_GROUND_TRUTH)
    report = IngestReport()
    s = ctx.schema
    columns = s.feature_names + [c.name for c in s.meta]
    seen: set[str] = set()

    def batches(conn: Connection) -> Iterator[pd.DataFrame]:
        for batch in provider.ground_truth_records(  # type: ignore[attr-defined]
            deployment, source=source, since=_utc(since), until=_utc(until)
        ):
            report._count(batch)
            labels: dict[str, tuple[Any, tuple[str, int]]] = {}
            for sid, label, origin in zip(batch.scoring_ids, batch.labels, batch.origins, strict=True):
                labels[str(sid)] = (label, origin)  # a label given twice in one batch: the last one
            if s.outputs_numeric:
                for sid, (label, (file, line)) in list(labels.items()):
                    try:
                        labels[sid] = (float(label), (file, line))
                    except (TypeError, ValueError):
                        report.errors.append(LineError(file, line, f"label {label!r} of {sid!r} is not a number"))
                        del labels[sid]
            fresh_ids = [i for i in labels if i not in seen]
            stored = stored_ids(conn, ctx.feedback_table, fresh_ids)
            seen.update(fresh_ids)
            wanted = [i for i in fresh_ids if i not in stored]
            report.skipped_duplicates += len(labels) - len(wanted)
            if not wanted:
                continue
            payload = rows_by_id(conn, ctx.payload_table, wanted, columns)
            for sid in sorted(set(wanted) - set(payload["scoring_id"])):
                file, line = labels[sid][1]
                report.errors.append(
                    LineError(
                        file, line, f"ground truth for {sid!r}: no payload record with that id (ingest capture first)"
                    )
                )
            if payload.empty:
                continue
            payload[s.label] = [labels[i][0] for i in payload["scoring_id"]]
            for c in s.numeric_features:
                payload[c] = pd.to_numeric(payload[c])
            yield payload

    try:
        with ctx.engine.begin() as conn:
            report.ingested = record_store.log_batches(conn, ctx.record, RecordKind.FEEDBACK, batches(conn))[1]
    finally:
        provider.close()
    report.errors.sort(key=lambda e: (e.source, e.line))
    return report
