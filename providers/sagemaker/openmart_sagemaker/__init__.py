"""openmart's ``sagemaker`` provider: endpoints on Amazon SageMaker, through boto3.

Credentials come from the standard AWS chain (environment, shared config, instance role);
a binding stores a ``region`` and optionally a ``profile`` or a ``role_arn`` to assume. An
OpenScale client binds with keys (``access_key_id`` and ``secret_access_key``, both or neither):
they are declared secrets, stored sealed like any binding secret and never shown; any other
key-like setting is refused. Another endpoint (LocalStack) is reached only through the standard
``AWS_ENDPOINT_URL``.

Settings: ``region`` (required), ``profile``, ``role_arn``, ``content_type`` (``text/csv``
default, or ``application/json``), ``accept`` (default ``application/json``), ``prediction`` /
``probability`` (JSON paths into the answer; defaults ``$.predictions[*].predicted_label`` and
``$.predictions[*].score``, the built-in algorithms' shape), ``label_map``, ``batch_size`` (rows
per invoke, default 500), ``retries`` (default 4: botocore's standard retry mode, bounded; see
``botocore_config``).

It declares every capability: besides scoring, listing and describing endpoints it reads the
endpoints' Data Capture and ground truth (in SageMaker's merge format) from S3
(:mod:`openmart_sagemaker.capture`); the core writes them into the mart.

It needs boto3, which openmart's core does not: ``pip install 'openmart[sagemaker]'``. Without
it the plug-in does not load (openmart logs why, and ``openmart bind add`` says what to install).
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

import pandas as pd

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError
except ModuleNotFoundError as exc:  # the registry skips this plug-in and says why
    raise ModuleNotFoundError(
        f"the sagemaker provider needs {exc.name}, which is not installed: pip install 'openmart[sagemaker]'",
        name=exc.name,
    ) from exc

from openmart.errors import (
    NotFound,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderThrottled,
    ValidationError,
)
from openmart.providers import httpkit
from openmart.providers.base import (
    Capability,
    CaptureBatch,
    Deployment,
    GroundTruthBatch,
    ScoreResult,
    record_ids,
)

_THROTTLING = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "RequestLimitExceeded",
    "SlowDown",
}
_NOT_FOUND = {"ResourceNotFound", "NoSuchBucket", "NoSuchKey"}


class SageMakerProvider:
    kind: ClassVar[str] = "sagemaker"
    settings_help: ClassVar[Mapping[str, str]] = {
        "region": "AWS region (required)",
        "profile": "a profile of the shared AWS config (optional)",
        "role_arn": "a role to assume through STS (optional)",
        "content_type": "text/csv (default) or application/json",
        "accept": "application/json (default) or text/csv",
        "prediction": "JSON path to predictions (default $.predictions[*].predicted_label)",
        "probability": "JSON path to probabilities (default $.predictions[*].score)",
        "label_map": 'JSON object mapping model outputs to class labels, e.g. {"yes": 1}',
        "batch_size": "rows per invoke_endpoint call (default 500)",
        "retries": "retries of throttling and transient failures (default 4)",
        "access_key_id": "an AWS access key id (sealed; with secret_access_key; default: the AWS chain)",
        "secret_access_key": "its secret access key (sealed)",
    }
    # the keys an OpenScale binding brings (sealed at rest); profile and role_arn name credentials
    # (references), they are not secrets themselves; validate_settings refuses other key-like names
    secret_settings: ClassVar[frozenset[str]] = frozenset({"access_key_id", "secret_access_key"})
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(self, settings: Mapping[str, str], session: Any = None) -> None:
        self.settings = dict(settings)
        self.region = settings["region"]
        self.content_type = settings.get("content_type", "text/csv")
        self.accept = settings.get("accept", "application/json")
        self.outputs = httpkit.OutputPaths.from_settings(
            settings, "$.predictions[*].predicted_label", "$.predictions[*].score"
        )
        self.batch_size = int(httpkit.number(settings, "batch_size", 500))
        self.retries = int(httpkit.number(settings, "retries", 4))
        self.client_config = botocore_config(self.retries)
        if session is None and settings.get("access_key_id"):
            session = boto3.Session(
                aws_access_key_id=settings["access_key_id"],
                aws_secret_access_key=settings["secret_access_key"],
                region_name=self.region,
            )
        session = session or boto3.Session(profile_name=settings.get("profile") or None, region_name=self.region)
        if settings.get("role_arn"):
            creds = session.client("sts").assume_role(RoleArn=settings["role_arn"], RoleSessionName="openmart")[
                "Credentials"
            ]
            session = boto3.Session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
                region_name=self.region,
            )
        self.session = session
        self.sagemaker = session.client("sagemaker", config=self.client_config)
        self.runtime = session.client("sagemaker-runtime", config=self.client_config)

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> dict[str, str]:
        keys = [k for k in cls.secret_settings if settings.get(k)]
        if keys and len(keys) != len(cls.secret_settings):
            missing = sorted(cls.secret_settings - set(keys))[0]
            raise ValidationError(
                "sagemaker provider: give access_key_id and secret_access_key together", column=missing
            )
        for key in settings:
            if key in cls.secret_settings:
                continue
            if "key" in key.lower() or "secret" in key.lower() or "token" in key.lower():
                raise ValidationError(
                    f"setting {key!r}: not a setting of the sagemaker provider; use the standard "
                    "credential chain, a profile, a role_arn, or access_key_id with secret_access_key (sealed)",
                    column=key,
                )
        unknown = sorted(set(settings) - set(cls.settings_help))
        if unknown:
            raise ValidationError(f"sagemaker provider: unknown setting(s) {unknown}", column=unknown[0])
        if not settings.get("region"):
            raise ValidationError("sagemaker provider: setting region is required", column="region")
        if settings.get("content_type", "text/csv") not in ("text/csv", "application/json"):
            raise ValidationError(
                "sagemaker provider: content_type must be text/csv or application/json", column="content_type"
            )
        httpkit.label_map(settings)
        httpkit.RetryPolicy.from_settings(settings)  # the same range check of retries as the HTTP providers
        return dict(settings)

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> SageMakerProvider:
        cls.validate_settings(settings)
        return cls(settings)

    # -- errors ---------------------------------------------------------------------------------
    def call(self, fn: Any, service: str = "SageMaker", **kwargs: Any) -> Any:
        """One AWS call. Retries happen inside botocore (``botocore_config``), bounded; here its
        errors are mapped into openmart's tree."""
        try:
            return fn(**kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = err.get("Code", ""), err.get("Message", str(exc))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _THROTTLING:
                raise ProviderThrottled(f"{service} throttled the call ({code}): {message}") from exc
            if code == "ValidationException" and "not found" in message.lower() or code in _NOT_FOUND:
                raise NotFound(f"{service}: {message}") from exc
            if code == "ModelError":
                raise ProviderHTTPError(
                    f"the model failed: {exc.response.get('OriginalMessage', message)}",
                    status=exc.response.get("OriginalStatusCode", status),
                ) from exc
            raise ProviderHTTPError(f"{service} {code}: {message}", status=status) from exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise ProviderConnectionError(f"cannot reach {service}: {exc}") from exc
        except BotoCoreError as exc:
            raise ProviderError(f"{service} call failed: {exc}") from exc

    # -- the protocol ---------------------------------------------------------------------------
    def list_deployments(self) -> list[Deployment]:
        found, token = [], None
        while True:
            page = self.call(self.sagemaker.list_endpoints, **({"NextToken": token} if token else {}))
            for e in page.get("Endpoints", []):
                found.append(
                    Deployment(
                        e["EndpointName"],
                        e["EndpointName"],
                        "endpoint",
                        {"status": e.get("EndpointStatus"), "arn": e.get("EndpointArn")},
                    )
                )
            token = page.get("NextToken")
            if not token:
                return found

    def describe(self, deployment_id: str) -> Deployment:
        ep = self.call(self.sagemaker.describe_endpoint, EndpointName=deployment_id)
        cfg = self.call(self.sagemaker.describe_endpoint_config, EndpointConfigName=ep["EndpointConfigName"])
        variants = []
        for v in cfg.get("ProductionVariants", []):
            model = self.call(self.sagemaker.describe_model, ModelName=v["ModelName"])
            container = model.get("PrimaryContainer", {})
            variants.append(
                {
                    "name": v["VariantName"],
                    "model": v["ModelName"],
                    "instance_type": v.get("InstanceType"),
                    "image": container.get("Image"),
                    "model_data_url": container.get("ModelDataUrl"),
                    "created_at": _when(model.get("CreationTime")),
                }
            )
        return Deployment(
            deployment_id,
            deployment_id,
            "endpoint",
            {
                "status": ep.get("EndpointStatus"),
                "arn": ep.get("EndpointArn"),
                "created_at": _when(ep.get("CreationTime")),
                "config": ep["EndpointConfigName"],
                "variants": variants,
                "data_capture": cfg.get("DataCaptureConfig") or None,
            },
        )

    def close(self) -> None:
        pass

    # -- capture and ground truth (openmart_sagemaker.capture) ----------------------------------
    def capture_records(
        self,
        deployment_id: str,
        *,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[CaptureBatch]:
        """The endpoint's Data Capture files (``source``: an S3 URI; default: the endpoint's
        DataCaptureConfig destination), one decoded batch per file."""
        from openmart_sagemaker.capture import capture_records

        return capture_records(self, deployment_id, source, since, until)

    def ground_truth_records(
        self,
        deployment_id: str,
        *,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[GroundTruthBatch]:
        """Ground truth in SageMaker's merge format under the S3 URI ``source``."""
        from openmart_sagemaker.capture import ground_truth_records

        return ground_truth_records(self, deployment_id, source, since, until)

    def _body(self, records: pd.DataFrame) -> bytes:
        if self.content_type == "text/csv":
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(records.itertuples(index=False, name=None))
            return buf.getvalue().encode()
        return json.dumps({"instances": records.to_numpy().tolist()}).encode()

    def decode(self, body: bytes, content_type: str, n: int) -> tuple[list[Any], list[Any] | None]:
        """Predictions and probabilities of an answer (JSON by the paths; CSV as label[,score])."""
        if content_type.startswith("text/csv"):
            rows = [r for r in csv.reader(io.StringIO(body.decode())) if r]
            preds = [_number(r[0]) for r in rows]
            probs = [float(r[1]) for r in rows] if rows and all(len(r) > 1 for r in rows) else None
        else:
            return self.outputs.decode(json.loads(body), n)
        if len(preds) != n:
            raise ProviderResponseError(f"{len(preds)} predictions for {n} records")
        return httpkit.apply_label_map(preds, self.outputs.label_map), probs

    def invoke(
        self, deployment_id: str, body: bytes, content_type: str, inference_id: str | None = None
    ) -> tuple[bytes, str]:
        kwargs: dict[str, Any] = {
            "EndpointName": deployment_id,
            "ContentType": content_type,
            "Body": body,
            "Accept": self.accept,
        }
        if inference_id:
            kwargs["InferenceId"] = inference_id
        answer = self.call(self.runtime.invoke_endpoint, **kwargs)
        return answer["Body"].read(), answer.get("ContentType", self.accept)

    def score(self, deployment_id: str, records: pd.DataFrame) -> ScoreResult:
        started = time.perf_counter()
        preds: list[Any] = []
        probs: list[Any] | None = []
        ids: list[str] = []
        calls = 0
        for start in range(0, len(records), self.batch_size):
            part = records.iloc[start : start + self.batch_size]
            # the InferenceId lands in Data Capture: ingesting it later finds these rows already logged
            inference_id = str(uuid.uuid4())
            body, ctype = self.invoke(deployment_id, self._body(part), self.content_type, inference_id)
            p, q = self.decode(body, ctype, len(part))
            preds += p
            probs = None if probs is None or q is None else probs + q
            ids += record_ids(inference_id, len(part))
            calls += 1
        return ScoreResult(preds, probs, calls, (time.perf_counter() - started) * 1000, record_ids=ids)


def botocore_config(retries: int) -> Any:
    """boto3 client settings: botocore's ``standard`` retry mode (throttling, 500/502/503/504 and
    connection errors, exponential backoff with jitter, a client-side rate limit on retries)
    capped at ``retries`` retries, so one call is at most ``retries + 1`` requests. Model errors
    (ModelError) and other 4xx are not retried. Connect timeout 10 s; the read timeout stays at
    60 s, as long as SageMaker lets an endpoint answer."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": retries + 1},
        connect_timeout=10,
        read_timeout=60,
    )


def _when(value: Any) -> str | None:
    """An AWS timestamp as ISO 8601 in UTC with milliseconds (``...T10:00:00.000Z``)."""
    if not isinstance(value, datetime):
        return None
    from datetime import UTC

    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _number(text: str) -> Any:
    try:
        value = float(text)
        return int(value) if value.is_integer() else value
    except ValueError:
        return text
