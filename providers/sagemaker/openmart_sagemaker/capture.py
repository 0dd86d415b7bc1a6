"""SageMaker Data Capture and ground truth, read from S3 and decoded (the core writes them).

Capture files (``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl``) hold one event a line:
``captureData.endpointInput/endpointOutput {observedContentType, mode, data, encoding}`` with
encodings CSV, JSON or BASE64 (input and output may differ), and ``eventMetadata`` with
``eventId``, optional ``inferenceId`` and ``inferenceTime``. Each event becomes payload records:
the scoring id is the ``inferenceId`` (what :meth:`SageMakerProvider.score` sends, so traffic
openmart scored and logged is recognised), or the ``eventId`` when there is none; an event
carrying several rows becomes ``<id>-1 ... <id>-n`` (OpenScale's convention). A malformed line
is reported with its file and line number; the rest is decoded.

Ground truth in SageMaker's merge format (``{"groundTruthData": {"data", "encoding"},
"eventMetadata": {"eventId"}, "eventVersion"}``) becomes labels by scoring id.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from openmart.errors import ValidationError
from openmart.providers.base import CaptureBatch, GroundTruthBatch, LineError, record_ids

if TYPE_CHECKING:
    from openmart_sagemaker import SageMakerProvider


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValidationError(f"{uri!r}: expected an S3 URI (s3://bucket/prefix/)")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValidationError(f"{uri!r}: no bucket")
    return bucket, prefix


def capture_uri(provider: SageMakerProvider, endpoint: str) -> str:
    """Where the endpoint's Data Capture writes: its DataCaptureConfig's destination."""
    capture = provider.describe(endpoint).details.get("data_capture") or {}
    if not capture.get("DestinationS3Uri"):
        raise ValidationError(f"endpoint {endpoint!r} has no data capture configured; give the capture's S3 URI")
    return capture["DestinationS3Uri"].rstrip("/") + f"/{endpoint}/"


def _data(part: dict[str, Any]) -> tuple[bytes, str]:
    encoding, data = part.get("encoding", "CSV"), part["data"]
    raw = base64.b64decode(data) if encoding == "BASE64" else data.encode()
    return raw, part.get("observedContentType", "text/csv")


def _rows(raw: bytes, content_type: str) -> list[Any]:
    """Input rows: lists of values (CSV, JSON arrays, ``{"features": [...]}``) or records by name."""
    if content_type.startswith("text/csv"):
        return [r for r in csv.reader(io.StringIO(raw.decode())) if r]
    data = json.loads(raw)
    if isinstance(data, dict):
        data = data.get("instances", data.get("features", [data]))
    if data and not isinstance(data[0], list | dict):
        data = [data]  # one row given as a flat array
    return [r["features"] if isinstance(r, dict) and "features" in r else r for r in data]


def _utc(when: Any) -> pd.Timestamp:
    ts = pd.Timestamp(when)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _hour_of(key: str) -> pd.Timestamp | None:
    """Capture keys carry their hour (.../yyyy/mm/dd/hh/file)."""
    try:
        y, m, d, h = (int(p) for p in key.split("/")[-5:-1])
        return pd.Timestamp(year=y, month=m, day=d, hour=h, tz="UTC")
    except ValueError:
        return None


def _in_window(key: str, since: pd.Timestamp | None, until: pd.Timestamp | None) -> bool:
    """Skip files whose hour lies wholly outside the window (without reading them)."""
    hour = _hour_of(key)
    if hour is None:
        return True
    return (since is None or hour >= since.floor("h")) and (until is None or hour <= until)


def _keys(provider: SageMakerProvider, s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    token = None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": prefix} | ({"ContinuationToken": token} if token else {})
        page = provider.call(s3.list_objects_v2, service="S3", **kwargs)
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".jsonl")]
        if not page.get("IsTruncated"):
            return sorted(keys)
        token = page["NextContinuationToken"]


def _files(
    provider: SageMakerProvider, uri: str, since: datetime | None, until: datetime | None
) -> Iterator[tuple[str, list[str]]]:
    """(file URI, its lines) of every JSON-lines file under ``uri`` within the window."""
    bucket, prefix = split_uri(uri)
    s3 = provider.session.client("s3", config=provider.client_config)
    lo, hi = (_utc(since) if since else None), (_utc(until) if until else None)
    for key in _keys(provider, s3, bucket, prefix):
        if _in_window(key, lo, hi):
            body = provider.call(s3.get_object, service="S3", Bucket=bucket, Key=key)["Body"].read()
            yield f"s3://{bucket}/{key}", body.decode().splitlines()


def capture_records(
    provider: SageMakerProvider,
    endpoint: str,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[CaptureBatch]:
    """One batch per capture file: the events within [since, until], decoded."""
    lo, hi = (_utc(since) if since else None), (_utc(until) if until else None)
    for file, lines in _files(provider, source or capture_uri(provider, endpoint), since, until):
        batch = CaptureBatch(files=1)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                meta = event["eventMetadata"]
                when = meta.get("inferenceTime")
                if when is not None and ((lo is not None and _utc(when) < lo) or (hi is not None and _utc(when) > hi)):
                    continue
                rows = _rows(*_data(event["captureData"]["endpointInput"]))
                preds, probs = provider.decode(*_data(event["captureData"]["endpointOutput"]), len(rows))
                sid = str(meta.get("inferenceId") or meta["eventId"])
                batch.add((file, number), record_ids(sid, len(rows)), when, rows, preds, probs)
            except Exception as exc:  # a decoding failure of any kind spoils one line, not the run
                batch.errors.append(LineError(file, number, f"{type(exc).__name__}: {exc}"))
        yield batch


def ground_truth_records(
    provider: SageMakerProvider,
    endpoint: str,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[GroundTruthBatch]:
    """One batch per ground-truth file (merge format), labels by event id."""
    if not source:
        raise ValidationError("SageMaker ground truth: give the S3 URI it is kept under (s3://bucket/prefix/)")
    for file, lines in _files(provider, source, since, until):
        batch = GroundTruthBatch(files=1)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                truth = event["groundTruthData"]
                raw, _ = _data({**truth, "observedContentType": "text/csv"})
                text = raw.decode().strip()
                value: Any = json.loads(text) if truth.get("encoding") == "JSON" else text
                if isinstance(value, dict):
                    value = value.get("label", next(iter(value.values())))
                batch.scoring_ids.append(str(event["eventMetadata"]["eventId"]))
                batch.labels.append(value)
                batch.origins.append((file, number))
                batch.events += 1
            except (KeyError, ValueError, TypeError, StopIteration, AttributeError) as exc:
                batch.errors.append(LineError(file, number, f"{type(exc).__name__}: {exc}"))
        yield batch
