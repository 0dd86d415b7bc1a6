"""SageMaker Data Capture and ground truth, from S3 into the mart.

Capture files (``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl``) hold one event a line:
``captureData.endpointInput/endpointOutput {observedContentType, mode, data, encoding}`` with
encodings CSV, JSON or BASE64 (input and output may differ), and ``eventMetadata`` with
``eventId``, optional ``inferenceId`` and ``inferenceTime``. Each event becomes payload records:
the scoring id is the ``inferenceId``, or the ``eventId`` when there is none; an event carrying
several rows becomes ``<id>-1 ... <id>-n`` (OpenScale's convention). Ingesting the same files
again adds nothing (scoring ids already stored are skipped). A malformed line is reported with
its file and line number and skipped; the rest goes in.

Ground truth in SageMaker's merge format (``{"groundTruthData": {"data", "encoding"},
"eventMetadata": {"eventId"}, "eventVersion"}``) becomes feedback records linked by id, with
the features of the payload record they label.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from openmart.errors import ValidationError
from openmart.mart.identifiers import quote

if TYPE_CHECKING:
    from openmart.api import Subscription


@dataclass
class IngestReport:
    files: int = 0
    events: int = 0
    ingested: int = 0
    skipped_duplicates: int = 0
    errors: list[tuple[str, int, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "events": self.events,
            "ingested": self.ingested,
            "skipped_duplicates": self.skipped_duplicates,
            "errors": [{"file": f, "line": n, "reason": r} for f, n, r in self.errors],
        }


def _split(uri: str) -> tuple[str, str]:
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix


def _data(part: dict[str, Any]) -> tuple[bytes, str]:
    encoding, data = part.get("encoding", "CSV"), part["data"]
    raw = base64.b64decode(data) if encoding == "BASE64" else data.encode()
    return raw, part.get("observedContentType", "text/csv")


def _rows(raw: bytes, content_type: str) -> list[list[Any]]:
    if content_type.startswith("text/csv"):
        return [r for r in csv.reader(io.StringIO(raw.decode())) if r]
    data = json.loads(raw)
    if isinstance(data, dict):
        data = data.get("instances", data.get("features", [data]))
    return [r["features"] if isinstance(r, dict) and "features" in r else r for r in data]


def _objects(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys, token = [], None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": prefix} | ({"ContinuationToken": token} if token else {})
        page = s3.list_objects_v2(**kwargs)
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".jsonl")]
        if not page.get("IsTruncated"):
            return sorted(keys)
        token = page["NextContinuationToken"]


def _lines(s3: Any, bucket: str, keys: list[str], report: IngestReport) -> Iterator[tuple[str, int, str]]:
    """(file, line number, line) of every non-empty line of the JSON-lines files."""
    for key in keys:
        report.files += 1
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        for number, line in enumerate(body.splitlines(), start=1):
            if line.strip():
                yield f"s3://{bucket}/{key}", number, line


def _existing(sub: Subscription, table: str, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    raw = sub.mart.engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute(f"SELECT scoring_id FROM {quote(table)} WHERE scoring_id = ANY(%s)", (ids,))
            return {r[0] for r in cur.fetchall()}
    finally:
        raw.close()


def ingest_capture(sub: Subscription, *, s3_uri: str | None = None, since: datetime | None = None) -> IngestReport:
    provider = sub.provider()
    if getattr(provider, "kind", None) != "sagemaker":
        raise ValidationError(f"subscription {sub.name!r} is not bound to SageMaker")
    if s3_uri is None:
        capture = provider.describe(sub.deployment_id or "").details.get("data_capture") or {}
        if not capture.get("DestinationS3Uri"):
            raise ValidationError(f"endpoint {sub.deployment_id!r} has no data capture configured; give --s3-uri")
        s3_uri = capture["DestinationS3Uri"].rstrip("/") + f"/{sub.deployment_id}/"
    bucket, prefix = _split(s3_uri)
    s3 = provider.session.client("s3")
    report = IngestReport()
    schema = sub.schema
    frames: list[pd.DataFrame] = []
    since_utc = _utc(since) if since is not None else None
    keys = [k for k in _objects(s3, bucket, prefix) if since_utc is None or _after(k, since_utc)]
    for file, number, line in _lines(s3, bucket, keys, report):
        try:
            event = json.loads(line)
            meta = event["eventMetadata"]
            sid = meta.get("inferenceId") or meta["eventId"]
            rows = _rows(*_data(event["captureData"]["endpointInput"]))
            out_raw, out_type = _data(event["captureData"]["endpointOutput"])
            preds, probs = provider.decode(out_raw, out_type, len(rows))
            frame = pd.DataFrame(rows, columns=schema.feature_names)
            frame["scoring_id"] = [sid] if len(rows) == 1 else [f"{sid}-{k}" for k in range(1, len(rows) + 1)]
            frame["scoring_timestamp"] = meta.get("inferenceTime")
            frame[schema.prediction] = preds
            if schema.probability and probs is not None:
                frame[schema.probability] = probs
            if since_utc is not None and _utc(meta["inferenceTime"]) < since_utc:
                continue
            report.events += 1
            frames.append(frame)
        except Exception as exc:  # a decoding failure of any kind spoils one line, not the run
            report.errors.append((file, number, f"{type(exc).__name__}: {exc}"))
    if frames:
        batch = pd.concat(frames, ignore_index=True)
        for c in schema.numeric_features:
            batch[c] = pd.to_numeric(batch[c], errors="coerce") if batch[c].dtype == object else batch[c]
        seen = _existing(sub, sub.payload.table, batch["scoring_id"].tolist())
        fresh = batch[~batch["scoring_id"].isin(seen)].drop_duplicates("scoring_id")
        report.skipped_duplicates = len(batch) - len(fresh)
        if len(fresh):
            sub.payload.log(fresh)
        report.ingested = len(fresh)
    return report


def _utc(when: datetime) -> pd.Timestamp:
    ts = pd.Timestamp(when)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _after(key: str, since: pd.Timestamp) -> bool:
    """Capture keys carry their hour (.../yyyy/mm/dd/hh/file): skip hours wholly before ``since``."""
    try:
        y, m, d, h = (int(p) for p in key.split("/")[-5:-1])
    except ValueError:
        return True
    return pd.Timestamp(year=y, month=m, day=d, hour=h, tz="UTC") >= since.floor("h")


def ingest_ground_truth(sub: Subscription, s3_uri: str) -> IngestReport:
    provider = sub.provider()
    s3 = provider.session.client("s3")
    bucket, prefix = _split(s3_uri)
    report = IngestReport()
    labels: dict[str, Any] = {}
    for file, number, line in _lines(s3, bucket, _objects(s3, bucket, prefix), report):
        try:
            event = json.loads(line)
            raw, _ = _data({**event["groundTruthData"], "observedContentType": "text/csv"})
            text = raw.decode().strip()
            value: Any = json.loads(text) if event["groundTruthData"].get("encoding") == "JSON" else text
            if isinstance(value, dict):
                value = value.get("label", next(iter(value.values())))
            labels[event["eventMetadata"]["eventId"]] = value
            report.events += 1
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
            report.errors.append((file, number, f"{type(exc).__name__}: {exc}"))
    if not labels:
        return report
    s = sub.schema
    already = _existing(sub, sub.feedback.table, list(labels))
    wanted = [i for i in labels if i not in already]
    report.skipped_duplicates = len(labels) - len(wanted)
    if not wanted:
        return report
    cols = ", ".join(["scoring_id", *(quote(c) for c in s.feature_names), *(quote(c.name) for c in s.meta)])
    raw_conn = sub.mart.engine.raw_connection()
    try:
        with raw_conn.cursor() as cur:
            cur.execute(f"SELECT {cols} FROM {quote(sub.payload.table)} WHERE scoring_id = ANY(%s)", (wanted,))
            names = [d[0] for d in cur.description]
            payload = pd.DataFrame(cur.fetchall(), columns=names)
    finally:
        raw_conn.close()
    missing = set(wanted) - set(payload["scoring_id"])
    for sid in sorted(missing):
        report.errors.append(
            (s3_uri, 0, f"ground truth for {sid!r}: no payload record with that id (ingest capture first)")
        )
    if payload.empty:
        return report
    label_values = [labels[i] for i in payload["scoring_id"]]
    if s.outputs_numeric:
        label_values = [float(v) for v in label_values]
    payload[s.label] = label_values
    for c in s.numeric_features:
        payload[c] = pd.to_numeric(payload[c])
    report.ingested = sub.feedback.log(payload)
    return report
