"""The performance monitor, end to end: a real deployment (http.server on a thread) behind the
real capture proxy, a real mart. Counts are checked against what the test sent, percentiles
against numpy over the rows the mart stored (an independent oracle), alerts through a real
evaluation, the spool through a real outage (the mart's TCP connection cut), the CLI, and the
REST route of a real ``openmart serve``."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import openmart
from openmart.config import Settings
from openmart.errors import ValidationError
from openmart.mart import scoring_requests
from openmart.mart.records import RecordKind, prepare
from openmart.mart.scoring_requests import RequestRow
from openmart.scoring import journal
from openmart.scoring.capture import PayloadCapture
from openmart.scoring.intake import Exchange
from openmart.scoring.proxy import SCORING_ID_HEADER, CaptureProxy, exchange_parser
from openmart.scoring.spool import spool_of
from tests.models import credit_data
from tests.service_support import running_service
from tests.test_proxy_http import _Relay

PERCENTILES = [50, 95, 99]


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll a condition (never a fixed sleep as synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class _Deployment:
    """A model on loopback (records mode: a JSON list in, ``{"predictions", "probabilities"}``
    out). Query options: ``status=N`` answers N, ``delay=S`` answers after S seconds, ``drop``
    closes the connection without answering."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"[]")
                if "drop" in query:
                    self.close_connection = True
                    return
                if "delay" in query:
                    time.sleep(float(query["delay"][0]))  # the model is slow: the latency it adds is the point
                status = int(query.get("status", ["200"])[0])
                if status == 200:
                    records = body if isinstance(body, list) else body.get("records", [])
                    answer = {
                        "predictions": [int(r["income"] > 50) for r in records],
                        "probabilities": [0.75] * len(records),
                    }
                else:
                    answer = {"error": "the model failed"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the proxy gave up (504)
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def deployment() -> Iterator[_Deployment]:
    d = _Deployment()
    yield d
    d.close()


def _subscribe(mart: openmart.Mart, url: str) -> Any:
    mart.bindings.add("credit-api", "custom", {"url": f"{url}/predict", "mode": "records"})
    return mart.subscriptions.add(
        "credit",
        reference=credit_data(200),
        label="label",
        problem_type="binary",
        binding="credit-api",
        deployment="/predict",
    )


def _body(n: int, seed: int) -> bytes:
    rows = credit_data(n, seed)[["sex", "income", "debt"]]
    return json.dumps(rows.to_dict(orient="records")).encode()


class _Sent:
    """What the test sent through the proxy and what came back, to compare with the mart."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, int, int, int, str | None]] = []  # status, records, sent, got, id

    def post(self, client: httpx.Client, n: int, query: str = "", seed: int = 0) -> httpx.Response:
        body = _body(n, seed)
        answer = client.post("/predict" + query, content=body, headers={"Content-Type": "application/json"})
        records = n if 200 <= answer.status_code < 300 else 0
        self.answers.append(
            (answer.status_code, records, len(body), len(answer.content), answer.headers.get(SCORING_ID_HEADER))
        )
        return answer

    @property
    def errors(self) -> int:
        return sum(1 for a in self.answers if not 200 <= a[0] < 300)

    @property
    def records(self) -> int:
        return sum(a[1] for a in self.answers)


def _stored(mart: openmart.Mart, sub: Any) -> pd.DataFrame:
    """The request rows as the mart holds them (read with SQL of the test's own)."""
    return mart.sql(
        "SELECT request_id, status, records, request_bytes, response_bytes, latency_ms, source "
        "FROM scoring_requests WHERE subscription_id = :s ORDER BY id",
        {"s": sub.id},
    )


def _traffic(proxy: CaptureProxy, sent: _Sent) -> None:
    """Answered requests of 1 to 4 records, some slow, some failed by the model (500), one the
    deployment drops (the proxy's own 502) and one it answers too late (the proxy's own 504)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=30) as client:
        for i in range(24):
            sent.post(client, 1 + i % 4, seed=i)
        for i in range(4):
            assert sent.post(client, 2, "?delay=0.25", seed=100 + i).status_code == 200
        for i in range(3):
            assert sent.post(client, 3, "?status=500", seed=200 + i).status_code == 500
        assert sent.post(client, 1, "?status=400", seed=300).status_code == 400
        assert sent.post(client, 1, "?drop", seed=301).status_code == 502
        assert sent.post(client, 1, "?delay=3", seed=302).status_code == 504
        # not scoring requests: not counted
        assert client.get("/predict").status_code == 501
        assert client.get("/_openmart/health").status_code == 200


@pytest.fixture
def measured(mart: openmart.Mart, deployment: _Deployment) -> tuple[Any, _Sent]:
    sub = _subscribe(mart, deployment.url)
    sent = _Sent()
    proxy = CaptureProxy(sub, timeout=1.0)
    proxy.start_in_thread()
    try:
        _traffic(proxy, sent)
        assert proxy.capture.flush(60)
        _wait_for(lambda: len(_stored(mart, sub)) >= len(sent.answers), "the request rows")
    finally:
        proxy.stop()
    return sub, sent


def test_request_rows_are_what_the_clients_sent_and_got(mart: openmart.Mart, measured: tuple[Any, _Sent]) -> None:
    sub, sent = measured
    rows = _stored(mart, sub)
    assert len(rows) == len(sent.answers) == 34
    assert set(rows["source"]) == {"proxy"}
    assert rows["request_id"].is_unique
    ok = rows[rows["status"].between(200, 299)]
    assert sorted(rows["status"]) == sorted(a[0] for a in sent.answers)
    assert int(ok["records"].sum()) == sent.records == sub.payload.count()
    assert int((rows["records"] > 0).sum()) == len(ok)  # failed requests are not decoded: 0 records
    # byte for byte what went each way, and the answered ones carry the id their client got
    assert sorted(rows["request_bytes"]) == sorted(a[2] for a in sent.answers)
    assert sorted(rows["response_bytes"]) == sorted(a[3] for a in sent.answers)
    assert set(ok["request_id"]) == {a[4] for a in sent.answers if a[4]}
    ids = set(ok["request_id"])  # a record's id is its request's (one record) or <id>-<n>
    payload_ids = set(sub.payload.read()["scoring_id"])
    assert {i if i in ids else i.rsplit("-", 1)[0] for i in payload_ids} == ids


def test_figures_equal_an_independent_computation_over_the_stored_rows(
    mart: openmart.Mart, measured: tuple[Any, _Sent]
) -> None:
    sub, sent = measured
    rows = _stored(mart, sub)
    ok = rows[rows["status"].between(200, 299) & (rows["records"] > 0)]
    latency = np.percentile(rows["latency_ms"].astype(float), PERCENTILES, method="linear")
    per_record = np.percentile(ok["latency_ms"] / ok["records"], PERCENTILES, method="linear")
    report = sub.performance()
    m = report.metrics
    for i, p in enumerate(PERCENTILES):
        assert m[f"latency_p{p}_ms"] == pytest.approx(latency[i], rel=1e-12, abs=1e-9)
        assert m[f"latency_per_record_p{p}_ms"] == pytest.approx(per_record[i], rel=1e-12, abs=1e-9)
    assert m["error_rate"] == pytest.approx(sent.errors / len(sent.answers))
    assert m["records_per_request"] == pytest.approx(sent.records / len(ok))
    assert m["request_bytes_mean"] == pytest.approx(np.mean([a[2] for a in sent.answers]))
    assert m["response_bytes_mean"] == pytest.approx(np.mean([a[3] for a in sent.answers]))
    counts = report.to_dict()
    assert (counts["requests"], counts["errors"], counts["records"]) == (34, sent.errors, sent.records)
    assert m["requests_per_minute"] == pytest.approx(34 / counts["minutes"])
    assert m["records_per_minute"] == pytest.approx(sent.records / counts["minutes"])
    # the slow answers are the slowest requests: the model waited 0.25 s (or the proxy 1 s) on them
    assert m["latency_p99_ms"] >= 250.0
    # the time series adds up to the window
    series = sub.performance(bucket="1s").series
    assert series is not None and int(series["requests"].sum()) == 34
    assert int(series["errors"].sum()) == sent.errors and int(series["records"].sum()) == sent.records
    # a window: the newest 5 requests only
    newest = sub.performance(last=5).to_dict()
    assert newest["requests"] == 5


def test_thresholds_breach_and_open_alerts_in_a_real_evaluation(
    mart: openmart.Mart, measured: tuple[Any, _Sent]
) -> None:
    sub, sent = measured
    sub.monitors.enable(
        "performance", thresholds=["error_rate=0.05", "latency_p99_ms=200", "records_per_request:lower=1"]
    )
    result = sub.evaluate(kinds=["performance"])
    found = {m.metric: m for o in result.outcomes for m in o.measurements}
    assert set(found) == {
        "requests_per_minute",
        "records_per_minute",
        "records_per_request",
        "request_bytes_mean",
        "response_bytes_mean",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_per_record_p50_ms",
        "latency_per_record_p95_ms",
        "latency_per_record_p99_ms",
        "error_rate",
    }
    assert found["error_rate"].breached and found["error_rate"].value == pytest.approx(sent.errors / 34)
    assert found["latency_p99_ms"].breached
    assert not found["records_per_request"].breached
    assert found["latency_p99_ms"].details["unit"] == "ms"
    alerts = mart.alerts(subscription="credit")
    assert set(alerts["metric"]) == {"error_rate", "latency_p99_ms"}
    stored = sub.measurements(monitor="performance")
    assert len(stored) == 12 and int(stored["breached"].sum()) == 2


def test_too_few_requests_is_not_enough_data(mart: openmart.Mart) -> None:
    sub = mart.subscriptions.add("quiet", reference=credit_data(100), label="label", problem_type="binary")
    sub.monitors.enable("performance", min_records=3)
    sub.log_requests([{"status": 200, "records": 1, "latency_ms": 5.0}])
    (outcome,) = sub.evaluate().outcomes
    assert outcome.status == "not_enough_data" and "1 scoring requests" in str(outcome.reason)


def test_score_writes_one_request_row_per_call(mart: openmart.Mart, deployment: _Deployment) -> None:
    sub = _subscribe(mart, deployment.url)
    sub.score(credit_data(7, 1)[["sex", "income", "debt"]], wait=True)
    sub.score(credit_data(3, 2)[["sex", "income", "debt"]], wait=True)
    rows = _stored(mart, sub)
    assert list(rows["source"]) == ["score", "score"]
    assert list(rows["records"]) == [7, 3] and list(rows["status"]) == [200, 200]
    assert (rows["latency_ms"] > 0).all()


def test_log_requests_all_or_none_and_retries_counted_once(mart: openmart.Mart) -> None:
    sub = mart.subscriptions.add("os", reference=credit_data(100), label="label", problem_type="binary")
    good = {"status": 200, "records": 2, "latency_ms": 12.5, "request_bytes": 80, "response_bytes": 40}
    with pytest.raises(ValidationError, match="request 1: field 'status'") as bad:
        sub.log_requests([good, {**good, "status": 42}], source="openscale")
    assert bad.value.column == "status"
    with pytest.raises(ValidationError, match="latency_ms"):
        sub.log_requests([{**good, "latency_ms": -1}])
    with pytest.raises(ValidationError, match="unknown field 'bytes'"):
        sub.log_requests([{**good, "bytes": 3}])
    assert len(_stored(mart, sub)) == 0
    assert sub.log_requests([{**good, "request_id": "r1"}, {**good, "status": 503, "request_id": "r2"}]) == 2
    assert sub.log_requests([{**good, "request_id": "r1"}], source="openscale") == 0  # a client's retry
    assert sub.log_requests(pd.DataFrame([good, good]), source="openscale") == 2  # no id: each one counts
    rows = _stored(mart, sub)
    assert list(rows["source"]) == ["rest", "rest", "openscale", "openscale"]
    assert sub.performance().to_dict()["errors"] == 1


# -- the mart away ---------------------------------------------------------------------------------


def test_request_rows_survive_a_mart_outage_through_the_spool(
    mart: openmart.Mart,
    deployment: _Deployment,
    database_url: str,
    schema_name: str,
    settings: Settings,
    tmp_path: Path,
) -> None:
    _subscribe(mart, deployment.url)
    url = sa.engine.make_url(database_url)
    relay = _Relay(url.host or "127.0.0.1", url.port or 5432)
    relayed = openmart.connect(
        url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False),
        schema=schema_name,
        settings=settings,
    )
    sub = relayed.subscriptions.get("credit")
    capture = PayloadCapture(sub, spool_dir=tmp_path / "spool", decoder=exchange_parser(sub, sub.provider()))
    sent = _Sent()
    try:
        with httpx.Client(timeout=30) as client:
            proxy = CaptureProxy(sub, capture=capture, timeout=5.0)
            client.base_url = httpx.URL(proxy.start_in_thread())
            try:
                for i in range(5):
                    sent.post(client, 2, seed=i)
                _wait_for(lambda: len(_stored(mart, sub)) == 5, "the first requests in the mart")
                relay.cut()  # the mart goes away: records and requests go to the spool
                for i in range(6):
                    sent.post(client, 1 + i % 3, seed=10 + i)
                for i in range(2):
                    assert sent.post(client, 2, "?status=500", seed=20 + i).status_code == 500
                _wait_for(lambda: capture.stats.requests_spooled == 8, "the outage's requests in the spool")
                assert capture.spool.stats().requests == 8
                assert len(_stored(mart, sub)) == 5
                relay.open()  # back: the writer drains the spool, each batch with its requests
                _wait_for(lambda: len(_stored(mart, sub)) >= 13 and not capture.spool.pending(), "the drain")
            finally:
                proxy.stop()
    finally:
        relayed.close()
        with contextlib.suppress(OSError):  # cut already, when the test failed during the outage
            relay.cut()
    rows = _stored(mart, sub)
    assert len(rows) == len(sent.answers) == 13 and rows["request_id"].is_unique
    assert int((~rows["status"].between(200, 299)).sum()) == sent.errors == 2
    assert int(rows["records"].sum()) == sent.records == mart.subscriptions.get("credit").payload.count()
    assert capture.health()["requests"] == {"seen": 13, "stored": 13, "spooled": 8, "dropped": 0}


def test_a_batch_spooled_twice_is_counted_once(mart: openmart.Mart, settings: Settings, tmp_path: Path) -> None:
    """A commit whose acknowledgement was lost: the batch was stored, then spooled and drained again."""
    sub = mart.subscriptions.add("twice", reference=credit_data(100), label="label", problem_type="binary")
    frame = credit_data(4, 3).assign(prediction=1, probability=0.75).drop(columns=["label"])
    frame["scoring_id"] = [f"x-{i}" for i in range(4)]
    table, _ = prepare(RecordKind.PAYLOAD, frame, sub.schema)
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    requests = [RequestRow(now, 200, 4, 100, 50, 3.0, "proxy", "x"), RequestRow(now, 502, 0, 10, 20, 1.0, "proxy", "y")]
    spool = spool_of(sub, tmp_path / "spool")
    spool.put(table, requests[:1])
    spool.put(table, requests[:1])
    spool.put(None, requests[1:])
    spool.put(None, requests[1:])
    assert spool.stats().requests == 4
    spool.drain(mart.engine.raw_connection, sub.payload.table)
    assert not spool.pending()
    rows = _stored(mart, sub)
    assert sorted(rows["request_id"]) == ["x", "y"] and sub.payload.count() == 4


def test_journal_frames_keep_the_status_and_old_frames_still_read(tmp_path: Path) -> None:
    stamp = pd.Timestamp("2026-11-23T10:00:00.123456Z")
    ex = Exchange("sid-1", stamp, 12.5, b'[{"a": 1}]', b'{"predictions": [1]}', 201)
    path = tmp_path / "seg.journal"
    # an OMJ1 frame, as an older proxy wrote it
    body = journal._BODY_V1.pack(stamp.value // 1000, 3.0, 5, 1, 1) + b"sid-0" + b"q" + b"r"
    v1 = journal._FRAME.pack(journal._MAGIC_V1, zlib.crc32(body), len(body)) + body
    path.write_bytes(v1 + journal.encode(ex))
    old, new = list(journal.decode_file(path))
    assert (old.scoring_id, old.status, old.request) == ("sid-0", 200, b"q")
    assert new == ex
    row = scoring_requests.from_arrow(scoring_requests.to_arrow([RequestRow(stamp.to_pydatetime(), 201, 1)]))[0]
    assert row.status == 201 and row.at == stamp.to_pydatetime()


# -- CLI and REST ----------------------------------------------------------------------------------


def test_cli_performance(mart: openmart.Mart, cli) -> None:  # type: ignore[no-untyped-def]
    sub = mart.subscriptions.add("credit", reference=credit_data(100), label="label", problem_type="binary")
    sub.log_requests([{"status": 200, "records": 4, "latency_ms": float(v)} for v in range(1, 11)])
    sub.log_requests([{"status": 504, "latency_ms": 1000.0}])
    shown = json.loads(cli("performance", "credit", "--json", "--bucket", "hour").stdout)
    assert (shown["requests"], shown["errors"], shown["records"]) == (11, 1, 40)
    assert shown["metrics"]["error_rate"] == pytest.approx(1 / 11)
    assert shown["units"]["latency_p99_ms"] == "ms"
    assert sum(r["requests"] for r in shown["series"]["rows"]) == 11
    table = cli("performance", "credit", "--series").stdout
    assert "latency_p95_ms" in table and "11 requests (1 errors), 40 records" in table
    bad = cli("performance", "credit", "--bucket", "fortnight", ok=False)
    assert bad.exit_code != 0 and "bucket" in bad.stderr
    assert cli("performance", "nope", ok=False).exit_code != 0


def test_rest_performance_route(mart: openmart.Mart, database_url: str, schema_name: str, tmp_path: Path) -> None:
    sub = mart.subscriptions.add("credit", reference=credit_data(100), label="label", problem_type="binary")
    sub.log_requests([{"status": 200, "records": 2, "latency_ms": 10.0}, {"status": 500, "latency_ms": 30.0}])
    _, reader = mart.keys.create("reader", "read")
    _, writer = mart.keys.create("writer", "write")
    with running_service(database_url, schema_name, tmp_path) as svc:
        with svc.client() as anonymous:
            assert anonymous.get("/api/v1/subscriptions/credit/performance").status_code == 401
        with svc.client(reader) as client:
            answer = client.get("/api/v1/subscriptions/credit/performance", params={"bucket": "hour"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["requests"], body["errors"], body["records"]) == (2, 1, 2)
            assert body["metrics"]["latency_p50_ms"] == pytest.approx(20.0)
            assert body["series"]["bucket_seconds"] == 3600 and body["series"]["rows"][0]["requests"] == 2
            refused = client.post("/api/v1/subscriptions/credit/requests", json={"requests": [{"status": 200}]})
            assert refused.status_code == 403
            assert client.get("/api/v1/subscriptions/nope/performance").status_code == 404
            assert client.get("/api/v1/subscriptions/credit/performance?bucket=x").status_code in (400, 422)
        with svc.client(writer) as client:
            posted = client.post(
                "/api/v1/subscriptions/credit/requests",
                json={"requests": [{"status": 200, "records": 3, "latency_ms": 5.0, "request_id": "a"}]},
            )
            assert posted.status_code == 200 and posted.json() == {"received": 1, "added": 1}
            bad = client.post("/api/v1/subscriptions/credit/requests", json={"requests": [{"status": 1000}]})
            assert bad.status_code in (400, 422) and "status" in bad.text
            body = client.get("/api/v1/subscriptions/credit/performance", params={"series": "false"}).json()
            assert body["requests"] == 3 and "series" not in body
    assert list(_stored(mart, sub)["source"]) == ["rest", "rest", "rest"]


def test_report_draws_throughput_and_latency_over_time(mart: openmart.Mart, tmp_path: Path) -> None:
    from openmart.report.html import write_report

    sub = mart.subscriptions.add("credit", reference=credit_data(100), label="label", problem_type="binary")
    empty = write_report(sub, tmp_path / "empty.html").read_text()
    assert "no scoring requests captured yet" in empty
    start = pd.Timestamp("2026-11-23T10:00:00Z")
    sub.log_requests(
        [
            {"at": start + pd.Timedelta(minutes=i % 30), "status": 500 if i % 10 == 0 else 200, "latency_ms": i}
            for i in range(90)
        ]
    )
    page = write_report(sub, tmp_path / "report.html").read_text()
    section = page[page.index("<h2>Performance") :]
    assert "90 requests (9 errors)" in section and "<svg" in section
    assert "throughput" in section and "latency per request" in section


def test_a_journal_replayed_twice_counts_its_requests_once(
    mart: openmart.Mart, deployment: _Deployment, tmp_path: Path
) -> None:
    """What a killed --durable proxy left is stored at the next start; a segment read twice (a
    crash after storing, before removing it) adds nothing the second time."""
    sub = _subscribe(mart, deployment.url)
    stamp = pd.Timestamp.now(tz="UTC")
    answer = b'{"predictions": [1, 0], "probabilities": [0.75, 0.25]}'
    exchanges = [Exchange(f"j-{i}", stamp, 7.0 + i, _body(2, i), answer, 200 + i) for i in range(3)]
    folder = spool_of(sub, tmp_path / "spool").folder / "journal"
    folder.mkdir(parents=True)
    data = b"".join(journal.encode(ex) for ex in exchanges)
    for _ in range(2):
        (folder / "left-by-a-killed-proxy.journal").write_bytes(data)
        capture = PayloadCapture(sub, spool_dir=tmp_path / "spool", decoder=exchange_parser(sub, sub.provider()))
        assert capture.flush(60)
        capture.close()
        _wait_for(lambda: not any(folder.glob("*.journal")), "the segment to be released")
    rows = _stored(mart, sub)
    assert sorted(rows["request_id"]) == ["j-0", "j-1", "j-2"]
    assert sorted(rows["status"]) == [200, 201, 202] and list(rows["records"]) == [2, 2, 2]
    assert sub.payload.count() == 6
