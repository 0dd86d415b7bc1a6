"""IBM's OpenScale-on-SageMaker notebook, with the real ``ibm-ai-openscale`` client (2.1.x and
2.2.x, each in a side virtualenv), against a real ``openmart serve`` and a SageMaker endpoint on
LocalStack: every payload and feedback record arrives once, the tables the client prints are the
mart's, and the binding's AWS keys are never stored nor shown in clear."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import openmart
from tests.localstack_support import aws_env, ensure_localstack
from tests.openscale_support import (
    FIELDS,
    VERSIONS,
    client_python,
    deploy_breast_cancer,
    notebook_script,
    openscale_service,
)

pytestmark = pytest.mark.localstack
RUN_TIMEOUT = 900.0

# what the script prints for the test to read, after the notebook's own cells
EPILOGUE = """
# -- the test's epilogue: what the client read, for comparison with the mart
import json as _json
_out = {
    "version": client.version,
    "binding_uid": binding_uid,
    "subscription_uid": subscription.uid,
    "subscriptions_uids": subscriptions_uids,
    "rest_ok": req_response.ok,
    "run_status": status,
    "payload": subscription.payload_logging.get_table_content(format="python"),
    "payload_count": subscription.payload_logging.get_records_count(),
    "feedback": subscription.feedback_logging.get_table_content(format="python"),
    "quality": subscription.quality_monitoring.get_table_content(format="python"),
    "performance": subscription.performance_monitoring.get_table_content(format="python"),
    "deployment_metrics": client.data_mart.get_deployment_metrics(),
    "binding_credentials": binding_details["entity"]["credentials"],
    "asset_properties": subscription.get_details()["entity"]["asset_properties"],
}
with open(__import__("os").environ["OPENSCALE_RESULT"], "w") as _f:
    _json.dump(_out, _f, default=str)
"""


@pytest.fixture(scope="module")
def aws() -> dict[str, str]:
    env = aws_env(ensure_localstack())
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    yield env
    mp.undo()


@pytest.fixture(scope="module")
def model(aws: dict[str, str]) -> str:
    import boto3

    name, endpoint = deploy_breast_cancer()
    yield name
    boto3.client("sagemaker").delete_endpoint(EndpointName=endpoint)


@pytest.mark.parametrize("version", VERSIONS)
def test_ibm_notebook_runs_with_the_real_client(
    version: str, model: str, aws: dict[str, str], database_url: str, schema_name: str, tmp_path: Path
) -> None:
    python = client_python(version)
    # keys LocalStack accepts, distinctive enough to be searched for everywhere afterwards
    access_key, secret_key = f"AKIA{uuid.uuid4().hex[:16].upper()}", f"secret-{uuid.uuid4().hex}"
    script = tmp_path / "walkthrough.py"
    script.write_text(notebook_script() + "\n" + EPILOGUE)
    result_file = tmp_path / "result.json"
    with openscale_service(database_url, schema_name, tmp_path, aws) as (url, key, env):
        run_env = {
            **env,
            "OPENMART_URL": url,
            "OPENMART_API_KEY": key,
            "OPENMART_DATA_MART": schema_name,
            "SAGEMAKER_MODEL": model,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "OPENSCALE_RESULT": str(result_file),
        }
        run_env.pop("PYTHONPATH", None)
        done = subprocess.run(
            [str(python), str(script)], env=run_env, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=tmp_path
        )
        output = done.stdout + done.stderr
        (tmp_path / "walkthrough.out").write_text(output)  # kept for a failure's inspection
        assert done.returncode == 0, output[-6000:]
        token = httpx.post(url + "/v1/preauth/validateAuth", data={"apikey": "om_not_a_key"})
        assert token.status_code == 401
        service_log = (tmp_path / next(p.name for p in tmp_path.glob("serve-*.log"))).read_text(errors="replace")
    got: dict[str, Any] = json.loads(result_file.read_text())
    assert got["version"] == version
    assert got["rest_ok"] is True and got["run_status"] == "completed", output[-3000:]

    mart = openmart.connect(database_url, schema=schema_name)
    try:
        _check_mart(mart, got, output)
        # the AWS keys: sealed in the binding, shown as ***, nowhere in clear
        assert got["binding_credentials"] == {"access_key_id": "***", "secret_access_key": "***", "region": "us-east-1"}
        stored = mart.sql("SELECT settings::text AS s FROM bindings")["s"].tolist()
        assert len(stored) == 1 and "enc:" in stored[0]
        dump = mart.sql(
            "SELECT string_agg(t::text, ' ') AS s FROM (SELECT row_to_json(b) AS t FROM bindings b "
            "UNION ALL SELECT row_to_json(o) FROM openscale_bindings o "
            "UNION ALL SELECT row_to_json(s) FROM openscale_subscriptions s) x"
        )["s"][0]
        for secret in (access_key, secret_key):
            assert secret not in dump
            assert secret not in output
            assert secret not in service_log
    finally:
        mart.close()


def _check_mart(mart: openmart.Mart, got: dict[str, Any], output: str) -> None:
    subs = mart.subscriptions.list()
    assert len(subs) == 1
    sub = subs[0]
    assert sub.schema.feature_names == FIELDS and sub.schema.label == "diagnosis"
    payload = sub.payload.read()
    # 11 records through the SDK and 1 through REST, each of the 2 request rows: <scoring_id>-1, -2
    assert len(payload) == 24 and payload["scoring_id"].is_unique
    bases = payload["scoring_id"].str.replace(r"-\d+$", "", regex=True)
    assert bases.nunique() == 12 and (bases.value_counts() == 2).all()
    assert set(payload["predicted_label"]) == {1.0}
    assert got["payload_count"] == 24
    # the schemas OpenScale learns from the first payload, output_data_schema with the output roles
    out = got["asset_properties"]["output_data_schema"]["fields"]
    assert [f["name"] for f in out] == [*FIELDS, "predicted_label", "score"]
    assert [f["metadata"]["modeling_role"] for f in out[-2:]] == ["prediction", "probability"]
    assert [f["name"] for f in got["asset_properties"]["input_data_schema"]["fields"]] == FIELDS
    # the client's payload table is the mart's, row for row
    fields, values = got["payload"]["fields"], got["payload"]["values"]
    assert fields[:4] == ["scoring_id", "scoring_timestamp", "deployment_id", "asset_revision"]
    assert fields[4:34] == FIELDS and fields[34:] == ["predicted_label", "score"]
    assert sorted(v[0] for v in values) == sorted(payload["scoring_id"])
    by_id = payload.set_index("scoring_id")
    for v in values:
        assert v[4] == pytest.approx(by_id.loc[v[0], "radius_mean"])
        assert v[35] == pytest.approx(by_id.loc[v[0], "score"])
    # feedback: the 9 records, once each
    feedback = sub.feedback.read()
    assert len(feedback) == 9 and (feedback["diagnosis"] == 1).all()
    assert got["feedback"]["fields"] == [*FIELDS, "diagnosis", "record_timestamp"]
    assert len(got["feedback"]["values"]) == 9
    assert all(row[30] == 1 for row in got["feedback"]["values"])
    # quality: the evaluation's measurements, OpenScale-named, with the threshold 0.7 on accuracy
    measured = sub.measurements(monitor="quality")
    assert not measured.empty
    accuracy = float(measured.loc[measured["metric"] == "accuracy", "value"].iloc[-1])
    assert accuracy == 1.0
    quality = {row[1]: row for row in got["quality"]["values"]}
    assert quality["accuracy"][3] == accuracy and quality["accuracy"][4] == 0.7
    assert len(got["quality"]["values"]) == int((measured["feature"].isna() & measured["group"].isna()).sum())
    # performance: one row per scoring request, its records and response time
    perf = got["performance"]["values"]
    assert len(perf) == 12 and all(row[2] == 2 for row in perf)
    times = sorted(payload.groupby(bases)["response_time"].max().tolist())
    assert sorted(row[1] for row in perf if row[1] is not None) == sorted(t for t in times if t == t)
    # each payload record is one scoring request for the performance monitor, enabled at subscribe
    requests = mart.sql(
        "SELECT request_id, records, latency_ms, source FROM scoring_requests WHERE subscription_id = :s",
        {"s": sub.id},
    )
    assert len(requests) == 12 and set(requests["source"]) == {"openscale"} and (requests["records"] == 2).all()
    assert sorted(requests["request_id"]) == sorted(set(bases))
    assert sub.monitors.get("performance").enabled and sub.monitors.get("quality").min_records == 5
    # deployment metrics carry both
    kinds = {m["metric_type"] for d in got["deployment_metrics"]["deployment_metrics"] for m in d["metrics"]}
    assert kinds == {"performance", "quality"}
    # the tables the client printed (text tables) name what the mart holds
    for title in ("Service bindings", "Available assets", "Subscriptions", "Schema of", "QualityMetrics"):
        assert title in output
    assert got["subscription_uid"] in output and got["binding_uid"] in output


def test_concurrent_first_payloads_make_one_subscription(
    model: str, aws: dict[str, str], database_url: str, schema_name: str, tmp_path: Path
) -> None:
    """Several clients post the first payloads of a subscription at once: one openmart
    subscription is made, and every record is stored once, with one scoring request each."""
    from concurrent.futures import ThreadPoolExecutor

    row = [17.02, 23.98, 112.8, 899.3, 0.1197, 0.1496, 0.2417, 0.1203, 0.2248, 0.06382] * 3
    with openscale_service(database_url, schema_name, tmp_path, aws) as (url, key, _):
        token = httpx.post(url + "/v1/preauth/validateAuth", data={"apikey": key}).json()["access_token"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120.0) as c:
            base = f"/v1/data_marts/{schema_name}"
            credentials = {"access_key_id": "test", "secret_access_key": "test", "region": "us-east-1"}
            made = c.post(
                f"{base}/service_bindings",
                json={"name": "aws", "service_type": "amazon_sagemaker", "credentials": credentials},
            )
            binding = made.json()["metadata"]["guid"]
            found = c.get(f"/v1/ml_instances/{binding}/deployments").json()["resources"]
            mine = next(r for r in found if r["entity"]["asset"]["asset_id"] == model)
            deployment = {"deployment_id": mine["metadata"]["guid"], "name": mine["entity"]["name"]}
            props = {"problem_type": "binary", "label_column": "diagnosis", "prediction_field": "predicted_label",
                     "probability_fields": ["score"], "input_data_type": "structured"}  # fmt: skip
            sub_uid = str(uuid.uuid4())
            body = {"asset": mine["entity"]["asset"], "asset_properties": props, "deployments": [deployment]}
            assert c.put(f"{base}/service_bindings/{binding}/subscriptions/{sub_uid}", json=body).status_code == 201

            def post(n: int) -> int:
                records = [
                    {
                        "subscription_id": sub_uid,
                        "scoring_id": f"c{n}-{i}",
                        "response_time": 10 + i,
                        "request": {"fields": FIELDS, "values": [row, row]},
                        "response": {"fields": ["predicted_label", "score"], "values": [[1, 0.99], [1, 0.98]]},
                    }
                    for i in range(5)
                ]
                return c.post(f"{base}/scoring_payloads", json=records).status_code

            with ThreadPoolExecutor(8) as pool:
                assert set(pool.map(post, range(8))) == {202}
    mart = openmart.connect(database_url, schema=schema_name)
    try:
        subs = mart.subscriptions.list()
        assert len(subs) == 1
        payload = subs[0].payload.read()
        assert len(payload) == 80 and payload["scoring_id"].is_unique
        requests = mart.sql("SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM scoring_requests")
        assert requests["n"][0] == 40 and requests["d"][0] == 40
        linked = mart.sql("SELECT subscription_id FROM openscale_subscriptions")
        assert linked["subscription_id"].tolist() == [subs[0].id]
    finally:
        mart.close()
