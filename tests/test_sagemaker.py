"""The OpenScale-on-SageMaker pattern against LocalStack with real boto3: breast-cancer logistic
regression deployed to the emulated SageMaker with data capture on; scored through openmart and
directly; capture and ground truth ingested; every request in the payload table once, with the
model's real predictions."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
import uuid

import boto3
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import openmart
from openmart.capture import ingest_capture, ingest_ground_truth
from openmart.errors import NotFound
from tests.localstack_support import aws_env, ensure_localstack

pytestmark = pytest.mark.localstack
ROLE = "arn:aws:iam::000000000000:role/sagemaker"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@pytest.fixture(scope="module")
def aws():
    url = ensure_localstack()
    mp = pytest.MonkeyPatch()
    for k, v in aws_env(url).items():
        mp.setenv(k, v)
    yield url
    mp.undo()


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _deploy(prefix: str, artifact: str, data: bytes, capture: dict | None = None, image: str = "sklearn") -> str:
    """Upload a model.tar.gz holding ``artifact``, create model, endpoint config and endpoint."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").put_object(Bucket="openmart-models", Key=f"{name}/model.tar.gz", Body=_tar(artifact, data))
    sm = boto3.client("sagemaker")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": image, "ModelDataUrl": f"s3://openmart-models/{name}/model.tar.gz"},
    )
    variants = [
        {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    ]
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=variants,
        **({"DataCaptureConfig": {**capture, "DestinationS3Uri": f"s3://openmart-capture/{name}"}} if capture else {}),
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return name


@pytest.fixture(scope="module")
def endpoint(aws):  # type: ignore[no-untyped-def]
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    features = [c for c in frame.columns if c != "target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(
        frame[features].to_numpy(), frame["target"]
    )
    buf = io.BytesIO()
    joblib.dump(model, buf)
    name = _deploy(
        "bc",
        "model.joblib",
        buf.getvalue(),
        image=SKLEARN_IMAGE,
        capture={
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
        },
    )
    sm = boto3.client("sagemaker")
    yield name, model, frame, features
    sm.delete_endpoint(EndpointName=name)


def test_provider_lists_describes_and_scores(endpoint, mart: openmart.Mart) -> None:
    name, model, frame, features = endpoint
    b = mart.bindings.add("aws", "sagemaker", {"region": "us-east-1"})
    provider = b.connect()
    assert name in {d.id for d in provider.list_deployments()}
    details = provider.describe(name).details
    assert details["variants"][0]["model_data_url"].endswith("model.tar.gz")
    assert details["data_capture"]["DestinationS3Uri"] == f"s3://openmart-capture/{name}"
    records = frame[features].iloc[:50]
    result = provider.score(name, records)
    assert result.predictions == model.predict(records.to_numpy()).tolist()
    assert np.allclose(result.probabilities, model.predict_proba(records.to_numpy())[:, 1])
    with pytest.raises(NotFound, match="not found"):
        provider.score("no-such-endpoint", records)
    from openmart.errors import ValidationError

    with pytest.raises(ValidationError, match="aws_secret_access_key"):
        mart.bindings.add("bad", "sagemaker", {"region": "us-east-1", "aws_secret_access_key": "x"})


def test_the_openscale_pattern_end_to_end(endpoint, mart: openmart.Mart) -> None:
    name, model, frame, features = endpoint
    mart.bindings.add("aws", "sagemaker", {"region": "us-east-1"})
    sub = mart.subscriptions.add(
        "bc", reference=frame, label="target", problem_type="binary", binding="aws", deployment=name
    )
    ours = sub.score(frame[features].iloc[:40], wait=True)  # through openmart: logged, with ids
    runtime = boto3.client("sagemaker-runtime")
    theirs = []  # traffic openmart did not send, with and without an inference id
    for i in range(40, 70):
        row = ",".join(str(v) for v in frame[features].iloc[i])
        kwargs = {"InferenceId": f"direct-{i}"} if i % 2 == 0 else {}
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=row, **kwargs)
        theirs.append(i)
    time.sleep(2.5)  # capture files are written within a second
    report = ingest_capture(sub)
    assert report.errors == []
    # openmart's own 40 rows were captured under the InferenceId it sent: already stored, skipped.
    # (the endpoint's capture also holds other tests' traffic, which this subscription had not seen)
    assert report.skipped_duplicates == 40 and report.ingested >= 30
    rows = sub.payload.read()
    assert len(rows) == 40 + report.ingested and rows["scoring_id"].is_unique
    assert rows["scoring_id"].isin(ours["scoring_id"]).sum() == 40
    direct = rows[rows["scoring_id"].str.startswith("direct-")]
    assert len(direct) == 15
    idx = [int(s.split("-")[1]) for s in direct["scoring_id"]]
    assert direct["prediction"].tolist() == model.predict(frame[features].iloc[idx].to_numpy()).tolist()
    assert rows["scoring_id"].is_unique
    again = ingest_capture(sub)
    assert again.ingested == 0 and again.skipped_duplicates == 40 + report.ingested
    # ground truth in SageMaker's merge format, for the direct calls that carried an id
    s3 = boto3.client("s3")
    lines = [
        json.dumps(
            {
                "groundTruthData": {"data": str(int(frame["target"].iloc[i])), "encoding": "CSV"},
                "eventMetadata": {"eventId": f"direct-{i}"},
                "eventVersion": "0",
            }
        )
        for i in idx
    ]
    s3.put_object(Bucket="openmart-ground-truth", Key=f"{name}/2026/11/22/10/gt.jsonl", Body="\n".join(lines).encode())
    gt = ingest_ground_truth(sub, f"s3://openmart-ground-truth/{name}/")
    assert gt.ingested == 15 and gt.errors == []
    assert ingest_ground_truth(sub, f"s3://openmart-ground-truth/{name}/").ingested == 0
    fb = sub.feedback.read().set_index("scoring_id").loc[[f"direct-{i}" for i in idx]]
    assert fb["target"].tolist() == frame["target"].iloc[idx].astype(float).tolist()
    assert len(ours) == 40


def test_all_encodings_and_malformed_lines(endpoint, mart: openmart.Mart) -> None:
    name, model, frame, features = endpoint
    mart.bindings.add("aws", "sagemaker", {"region": "us-east-1"})
    sub = mart.subscriptions.add(
        "enc", reference=frame, label="target", problem_type="binary", binding="aws", deployment=name
    )
    x = frame[features].iloc[100:103].to_numpy()
    csv_in = "\n".join(",".join(str(v) for v in r) for r in x)
    json_in = json.dumps({"instances": x.tolist()})
    out = json.dumps(
        {
            "predictions": [
                {"predicted_label": int(p), "score": float(q)}
                for p, q in zip(model.predict(x), model.predict_proba(x)[:, 1], strict=True)
            ]
        }
    )

    def event(eid: str, inp: dict, outp: dict) -> str:
        return json.dumps(
            {
                "captureData": {"endpointInput": inp, "endpointOutput": outp},
                "eventMetadata": {"eventId": eid, "inferenceTime": "2026-11-22T10:00:00.000Z"},
                "eventVersion": "0",
            }
        )

    b64 = base64.b64encode
    lines = [
        event(
            "csv-json",
            {"observedContentType": "text/csv", "mode": "INPUT", "data": csv_in, "encoding": "CSV"},
            {"observedContentType": "application/json", "mode": "OUTPUT", "data": out, "encoding": "JSON"},
        ),
        event(
            "json-b64",
            {"observedContentType": "application/json", "mode": "INPUT", "data": json_in, "encoding": "JSON"},
            {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": b64(out.encode()).decode(),
                "encoding": "BASE64",
            },
        ),
        "{not json",
        event(
            "b64-csv",
            {
                "observedContentType": "text/csv",
                "mode": "INPUT",
                "data": b64(csv_in.encode()).decode(),
                "encoding": "BASE64",
            },
            {"observedContentType": "application/json", "mode": "OUTPUT", "data": out, "encoding": "JSON"},
        ),
        json.dumps({"captureData": {}, "eventMetadata": {"eventId": "broken"}}),
        event(  # two features short
            "narrow",
            {
                "observedContentType": "text/csv",
                "mode": "INPUT",
                "data": ",".join(map(str, x[0][:-2])),
                "encoding": "CSV",
            },
            {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "1,0.9", "encoding": "CSV"},
        ),
        event(  # text where a number belongs
            "text",
            {"observedContentType": "text/csv", "mode": "INPUT", "data": "abc," + ",".join(map(str, x[0][1:]))},
            {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "1,0.9", "encoding": "CSV"},
        ),
    ]
    key = f"custom/{name}/AllTraffic/2026/11/22/10/00-00-000-x.jsonl"
    boto3.client("s3").put_object(Bucket="openmart-capture", Key=key, Body="\n".join(lines).encode())
    report = ingest_capture(sub, source=f"s3://openmart-capture/custom/{name}/")
    assert report.ingested == 9 and report.events == 3
    assert [(f.rsplit("/", 1)[-1], n) for f, n, _ in report.errors] == [
        ("00-00-000-x.jsonl", 3),
        ("00-00-000-x.jsonl", 5),
        ("00-00-000-x.jsonl", 6),
        ("00-00-000-x.jsonl", 7),
    ]
    assert report.errors[2].reason == f"{len(features) - 2} input values for {len(features)} features"
    assert report.errors[3].reason == f"feature {features[0]!r}: 'abc' is not a number"
    rows = sub.payload.read().set_index("scoring_id")
    for eid in ("csv-json", "json-b64", "b64-csv"):
        got = rows.loc[[f"{eid}-{k}" for k in (1, 2, 3)]]
        assert got["prediction"].tolist() == model.predict(x).tolist()
        assert np.allclose(got[features[0]], x[:, 0])


def test_sampling_zero_writes_no_capture(aws) -> None:  # type: ignore[no-untyped-def]
    sm, s3, rt = boto3.client("sagemaker"), boto3.client("s3"), boto3.client("sagemaker-runtime")
    x, y = load_breast_cancer(return_X_y=True)
    buf = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=5000).fit(x[:, :5], y), buf)
    name = _deploy(
        "zero",
        "model.joblib",
        buf.getvalue(),
        capture={
            "EnableCapture": True,
            "InitialSamplingPercentage": 0,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
    )
    try:
        body = (
            rt.invoke_endpoint(
                EndpointName=name, ContentType="text/csv", Accept="text/csv", Body=",".join(map(str, x[0, :5]))
            )["Body"]
            .read()
            .decode()
        )
        assert body.split(",")[0].strip() in {"0", "1"}
        time.sleep(2)
        assert s3.list_objects_v2(Bucket="openmart-capture", Prefix=name).get("KeyCount", 0) == 0
        described = sm.describe_endpoint(EndpointName=name)
        assert described["EndpointStatus"] == "InService"
        assert described["DataCaptureConfig"]["CurrentSamplingPercentage"] == 0
    finally:
        sm.delete_endpoint(EndpointName=name)
    with pytest.raises(rt.exceptions.ClientError, match="not found"):
        rt.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body="1,2,3,4,5")


def test_xgboost_artifact_served_with_json(aws, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import xgboost

    x, y = load_breast_cancer(return_X_y=True)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3}, xgboost.DMatrix(x, label=y), 20)
    booster.save_model(str(tmp_path / "xgboost-model"))
    sm, rt = boto3.client("sagemaker"), boto3.client("sagemaker-runtime")
    name = _deploy("xgb", "xgboost-model", (tmp_path / "xgboost-model").read_bytes(), image="xgboost")
    try:
        assert "DataCaptureConfig" not in sm.describe_endpoint(EndpointName=name)  # capture off: omitted, as AWS does
        answer = rt.invoke_endpoint(
            EndpointName=name, ContentType="application/json", Body=json.dumps({"instances": x[:25].tolist()})
        )
        scores = [p["score"] for p in json.loads(answer["Body"].read())["predictions"]]
        assert np.allclose(scores, booster.predict(xgboost.DMatrix(x[:25])), atol=1e-6)
        assert answer["InvokedProductionVariant"] == "AllTraffic"
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_since_skips_older_events(endpoint, mart: openmart.Mart) -> None:
    name, model, frame, features = endpoint
    mart.bindings.add("aws", "sagemaker", {"region": "us-east-1"})
    sub = mart.subscriptions.add(
        "since", reference=frame, label="target", problem_type="binary", binding="aws", deployment=name
    )
    x = frame[features].iloc[200:201].to_numpy()
    out = json.dumps({"predictions": [{"predicted_label": 1, "score": 0.9}]})

    def event(eid: str, when: str) -> str:
        return json.dumps(
            {
                "captureData": {
                    "endpointInput": {
                        "observedContentType": "text/csv",
                        "mode": "INPUT",
                        "encoding": "CSV",
                        "data": ",".join(str(v) for v in x[0]),
                    },
                    "endpointOutput": {
                        "observedContentType": "application/json",
                        "mode": "OUTPUT",
                        "encoding": "JSON",
                        "data": out,
                    },
                },
                "eventMetadata": {"eventId": eid, "inferenceTime": when},
                "eventVersion": "0",
            }
        )

    s3 = boto3.client("s3")
    s3.put_object(
        Bucket="openmart-capture",
        Key=f"since/{name}/AllTraffic/2026/11/21/09/a.jsonl",
        Body=event("old", "2026-11-21T09:10:00.000Z").encode(),
    )
    s3.put_object(
        Bucket="openmart-capture",
        Key=f"since/{name}/AllTraffic/2026/11/22/10/b.jsonl",
        Body=(event("early", "2026-11-22T10:05:00.000Z") + "\n" + event("late", "2026-11-22T10:45:00.000Z")),
    )
    from datetime import datetime

    report = ingest_capture(sub, source=f"s3://openmart-capture/since/{name}/", since=datetime(2026, 11, 22, 10, 30))
    assert report.files == 1 and report.errors == [] and report.ingested == 1
    assert sub.payload.read()["scoring_id"].tolist() == ["late"]


def test_cli_ingest_window_alias_and_ground_truth_errors(endpoint, mart: openmart.Mart, cli) -> None:  # type: ignore[no-untyped-def]
    """``openmart capture ingest`` / ``ground-truth`` through the provider: a --since/--until
    window, the --s3-uri alias, idempotence, and errors named by file and line."""
    name, model, frame, features = endpoint
    mart.bindings.add("aws", "sagemaker", {"region": "us-east-1"})
    mart.subscriptions.add(
        "win", reference=frame, label="target", problem_type="binary", binding="aws", deployment=name
    )
    row = ",".join(str(v) for v in frame[features].iloc[300])
    out = json.dumps({"predictions": [{"predicted_label": 1, "score": 0.8}]})

    def event(eid: str, when: str) -> str:
        part = {"observedContentType": "text/csv", "mode": "INPUT", "encoding": "CSV", "data": row}
        answer = {"observedContentType": "application/json", "mode": "OUTPUT", "encoding": "JSON", "data": out}
        return json.dumps(
            {
                "captureData": {"endpointInput": part, "endpointOutput": answer},
                "eventMetadata": {"eventId": eid, "inferenceTime": when},
                "eventVersion": "0",
            }
        )

    s3 = boto3.client("s3")
    base = f"cli/{name}/AllTraffic/2026/11/22"
    s3.put_object(
        Bucket="openmart-capture",
        Key=f"{base}/09/a.jsonl",
        Body=event("too-early", "2026-11-22T09:10:00Z").encode(),
    )
    s3.put_object(
        Bucket="openmart-capture",
        Key=f"{base}/10/b.jsonl",
        Body="\n".join(
            [event("early", "2026-11-22T10:05:00Z"), event("late", "2026-11-22T10:45:00Z"), "{broken"]
        ).encode(),
    )
    s3.put_object(Bucket="openmart-capture", Key=f"{base}/11/c.jsonl", Body=event("after", "2026-11-22T11:10:00Z"))
    uri = f"s3://openmart-capture/cli/{name}/"
    window = ("--since", "2026-11-22T10:30", "--until", "2026-11-22T11:00")
    first = json.loads(cli("capture", "ingest", "win", "--source", uri, *window, "--json").stdout)
    assert (first["files"], first["events"], first["ingested"], first["skipped_duplicates"]) == (2, 1, 1, 0)
    assert [(e["file"].rsplit("/", 1)[-1], e["line"]) for e in first["errors"]] == [("b.jsonl", 3)]
    again = cli("capture", "ingest", "win", "--s3-uri", uri, *window)
    assert "0 payload records ingested from 2 files (1 events); 1 already stored; 1 malformed" in again.stdout
    assert "b.jsonl:3: JSONDecodeError" in again.stderr
    assert mart.subscriptions.get("win").payload.read()["scoring_id"].tolist() == ["late"]

    truth = [
        json.dumps({"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": eid}})
        for eid in ("late", "never-scored")
    ]
    s3.put_object(Bucket="openmart-ground-truth", Key=f"cli/{name}/2026/11/22/10/gt.jsonl", Body="\n".join(truth))
    gt = cli("capture", "ground-truth", "win", f"s3://openmart-ground-truth/cli/{name}/")
    assert "1 feedback records ingested from 1 files (2 events); 0 already stored; 1 malformed" in gt.stdout
    assert "gt.jsonl:2: ground truth for 'never-scored': no payload record with that id" in gt.stderr
    assert (
        json.loads(cli("capture", "ground-truth", "win", f"s3://openmart-ground-truth/cli/{name}/", "--json").stdout)[
            "skipped_duplicates"
        ]
        == 1
    )
    fb = mart.subscriptions.get("win").feedback.read()
    assert fb["scoring_id"].tolist() == ["late"] and fb["target"].tolist() == [1.0]
    missing = cli("capture", "ground-truth", "win", ok=False)
    assert missing.exit_code != 0 and "give the S3 URI" in missing.stderr


def test_the_sagemaker_sdk_deploys_and_predicts(aws) -> None:  # type: ignore[no-untyped-def]
    """The SDK waits on DescribeEndpoint and validates its shape: the emulation must satisfy it."""
    import sagemaker
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.model import Model
    from sagemaker.model_monitor import DataCaptureConfig
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import CSVSerializer

    x, y = load_breast_cancer(return_X_y=True)
    estimator = LogisticRegression(max_iter=5000).fit(x[:, :4], y)
    buf = io.BytesIO()
    joblib.dump(estimator, buf)
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").put_object(
        Bucket="openmart-models", Key=f"{name}/model.tar.gz", Body=_tar("model.joblib", buf.getvalue())
    )
    session = sagemaker.Session(boto_session=boto3.Session(region_name="us-east-1"))
    model = Model(
        image_uri="sklearn",
        model_data=f"s3://openmart-models/{name}/model.tar.gz",
        role=ROLE,
        sagemaker_session=session,
        predictor_cls=Predictor,
    )
    predictor = model.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.large",
        endpoint_name=name,
        data_capture_config=DataCaptureConfig(
            enable_capture=True,
            sampling_percentage=100,
            destination_s3_uri=f"s3://openmart-capture/{name}",
            sagemaker_session=session,
        ),
        serializer=CSVSerializer(),
        deserializer=JSONDeserializer(),
    )
    try:
        answer = predictor.predict(x[:3, :4])
        assert [p["predicted_label"] for p in answer["predictions"]] == estimator.predict(x[:3, :4]).tolist()
        described = session.sagemaker_client.describe_endpoint(EndpointName=name)
        assert described["DataCaptureConfig"]["CaptureStatus"] == "Started"
    finally:
        predictor.delete_endpoint(delete_endpoint_config=False)
