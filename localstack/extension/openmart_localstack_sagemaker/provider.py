"""The emulation: moto answers the control plane; CreateEndpoint really serves the model
artifact behind the inference container contract (a model server process per endpoint);
InvokeEndpoint forwards to it; Data Capture writes SageMaker's own files to S3.

State is kept in this module (one LocalStack process), keyed by account, region and name.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localstack.aws.api import CommonServiceException, RequestContext
from localstack.aws.connect import connect_to
from localstack.aws.spec import load_service
from localstack.services.moto import call_moto

LOG = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0  # capture files are written at most this long after the invocation


@dataclass
class Endpoint:
    name: str
    config: str
    variant: str
    port: int
    process: subprocess.Popen
    capture: dict[str, Any] | None
    workdir: Path
    buffer: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


MODELS: dict[tuple[str, str, str], dict[str, Any]] = {}
CONFIGS: dict[tuple[str, str, str], dict[str, Any]] = {}
ENDPOINTS: dict[tuple[str, str, str], Endpoint] = {}


def _key(context: RequestContext, name: str) -> tuple[str, str, str]:
    return context.account_id, context.region, name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _split_s3(uri: str) -> tuple[str, str]:
    rest = uri.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    return bucket, key


def _validation(message: str) -> CommonServiceException:
    return CommonServiceException("ValidationException", message, status_code=400, sender_fault=True)


def _start_server(context: RequestContext, model: dict[str, Any], name: str) -> tuple[subprocess.Popen, int, Path]:
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    url = container.get("ModelDataUrl")
    if not url:
        raise _validation(f"model {model['ModelName']} has no ModelDataUrl")
    bucket, key = _split_s3(url)
    s3 = connect_to(region_name=context.region, aws_access_key_id=context.account_id).s3
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    workdir = Path(tempfile.mkdtemp(prefix=f"sagemaker-{name}-"))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(workdir, filter="data")
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openmart_localstack_sagemaker.model_server",
            "--model-dir",
            str(workdir),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "server.log", "wb"),  # noqa: SIM115 (the server keeps writing to it)
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _validation(f"the model server for {name} failed: {(workdir / 'server.log').read_text()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                if r.status == 200:
                    return process, port, workdir
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise _validation(f"the model server for {name} did not answer /ping")


class SageMakerControl:
    service = "sagemaker"

    def dispatch_table(self) -> dict[str, Any]:
        table = {op: (lambda context, request: call_moto(context)) for op in load_service("sagemaker").operation_names}
        table.update(
            {
                "CreateModel": self.create_model,
                "CreateEndpointConfig": self.create_endpoint_config,
                "CreateEndpoint": self.create_endpoint,
                "DescribeEndpoint": self.describe_endpoint,
                "DeleteEndpoint": self.delete_endpoint,
            }
        )
        return table

    def create_model(self, context: RequestContext, request: dict[str, Any]) -> Any:
        response = call_moto(context)
        MODELS[_key(context, request["ModelName"])] = dict(request)
        return response

    def create_endpoint_config(self, context: RequestContext, request: dict[str, Any]) -> Any:
        response = call_moto(context)
        CONFIGS[_key(context, request["EndpointConfigName"])] = dict(request)
        return response

    def create_endpoint(self, context: RequestContext, request: dict[str, Any]) -> Any:
        name, config_name = request["EndpointName"], request["EndpointConfigName"]
        config = CONFIGS.get(_key(context, config_name))
        if config is None:
            raise _validation(f'Could not find endpoint configuration "{config_name}".')
        variant = config["ProductionVariants"][0]
        model = MODELS.get(_key(context, variant["ModelName"]))
        if model is None:
            raise _validation(f'Could not find model "{variant["ModelName"]}".')
        response = call_moto(context)
        process, port, workdir = _start_server(context, model, name)
        capture = config.get("DataCaptureConfig")
        ENDPOINTS[_key(context, name)] = Endpoint(
            name,
            config_name,
            variant["VariantName"],
            port,
            process,
            capture if capture and capture.get("EnableCapture", True) else None,
            workdir,
        )
        return response

    def describe_endpoint(self, context: RequestContext, request: dict[str, Any]) -> Any:
        response = call_moto(context)
        endpoint = ENDPOINTS.get(_key(context, request["EndpointName"]))
        # moto says DataCaptureConfig: {} when capture is off, which the sagemaker SDK rejects;
        # AWS omits it, or gives the capture summary
        response.pop("DataCaptureConfig", None)
        if endpoint is not None:
            response["EndpointStatus"] = "InService"
            if endpoint.capture:
                response["DataCaptureConfig"] = {
                    "EnableCapture": True,
                    "CaptureStatus": "Started",
                    "CurrentSamplingPercentage": endpoint.capture.get("InitialSamplingPercentage", 100),
                    "DestinationS3Uri": endpoint.capture["DestinationS3Uri"],
                }
        return response

    def delete_endpoint(self, context: RequestContext, request: dict[str, Any]) -> Any:
        response = call_moto(context)
        endpoint = ENDPOINTS.pop(_key(context, request["EndpointName"]), None)
        if endpoint is not None:
            _flush(context.region, context.account_id, endpoint)
            endpoint.process.terminate()
        return response


def _encoding(content_type: str, header: dict[str, Any] | None) -> str:
    """SageMaker's rule: CSV or JSON when the content type is listed for it, else BASE64."""
    header = header or {}
    if content_type in (header.get("CsvContentTypes") or []):
        return "CSV"
    if content_type in (header.get("JsonContentTypes") or []):
        return "JSON"
    return "BASE64"


def _payload(data: bytes, content_type: str, mode: str, header: dict[str, Any] | None) -> dict[str, Any]:
    encoding = _encoding(content_type, header)
    text = base64.b64encode(data).decode() if encoding == "BASE64" else data.decode()
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


def _flush(region: str, account: str, endpoint: Endpoint) -> None:
    with endpoint.lock:
        events, endpoint.buffer = endpoint.buffer, []
    if not events or not endpoint.capture:
        return
    now = datetime.now(UTC)
    bucket, prefix = _split_s3(endpoint.capture["DestinationS3Uri"])
    key = "/".join(
        p
        for p in (
            prefix.strip("/"),
            endpoint.name,
            endpoint.variant,
            now.strftime("%Y/%m/%d/%H"),
            f"{now.strftime('%M-%S-%f')[:-3]}-{uuid.uuid4()}.jsonl",
        )
        if p
    )
    body = "".join(json.dumps(e) + "\n" for e in events).encode()
    connect_to(region_name=region, aws_access_key_id=account).s3.put_object(Bucket=bucket, Key=key, Body=body)


def _flusher() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        for (account, region, _), endpoint in list(ENDPOINTS.items()):
            try:
                _flush(region, account, endpoint)
            except Exception:  # keep capturing whatever one write did
                LOG.exception("data capture flush failed for %s", endpoint.name)


threading.Thread(target=_flusher, name="sagemaker-data-capture", daemon=True).start()


class SageMakerRuntime:
    service = "sagemaker-runtime"

    def dispatch_table(self) -> dict[str, Any]:
        table = {op: self.unsupported for op in load_service("sagemaker-runtime").operation_names}
        table["InvokeEndpoint"] = self.invoke_endpoint
        return table

    def unsupported(self, context: RequestContext, request: dict[str, Any]) -> Any:
        raise CommonServiceException("InternalFailure", f"{context.operation.name} is not emulated", 501)

    def invoke_endpoint(self, context: RequestContext, request: dict[str, Any]) -> dict[str, Any]:
        name = request["EndpointName"]
        endpoint = ENDPOINTS.get(_key(context, name))
        if endpoint is None:
            raise _validation(f"Endpoint {name} of account {context.account_id} not found.")
        body = request["Body"]
        body = body.read() if hasattr(body, "read") else body
        content_type = request.get("ContentType") or "application/octet-stream"
        accept = request.get("Accept") or "application/json"
        req = urllib.request.Request(
            f"http://127.0.0.1:{endpoint.port}/invocations",
            data=body,
            method="POST",
            headers={"Content-Type": content_type, "Accept": accept},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                out, out_type = r.read(), r.headers.get("Content-Type", accept)
        except urllib.error.HTTPError as exc:
            message = exc.read().decode(errors="replace")
            raise CommonServiceException(
                "ModelError",
                f'Received client error ({exc.code}) from primary with message "{message}". '
                f"See logs for more information.",
                status_code=424,
            ) from exc
        capture = endpoint.capture
        if capture and random.uniform(0, 100) < float(capture.get("InitialSamplingPercentage", 100)):
            modes = {o.get("CaptureMode") for o in capture.get("CaptureOptions", [])} or {"Input", "Output"}
            header = capture.get("CaptureContentTypeHeader")
            data: dict[str, Any] = {}
            if "Input" in modes:
                data["endpointInput"] = _payload(body, content_type, "INPUT", header)
            if "Output" in modes:
                data["endpointOutput"] = _payload(out, out_type, "OUTPUT", header)
            meta = {
                "eventId": str(uuid.uuid4()),
                "inferenceTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            }
            if request.get("InferenceId"):
                meta["inferenceId"] = request["InferenceId"]
            with endpoint.lock:
                endpoint.buffer.append({"captureData": data, "eventMetadata": meta, "eventVersion": "0"})
        return {"Body": out, "ContentType": out_type, "InvokedProductionVariant": endpoint.variant}
