"""openmart's REST API (``/api/v1``) started for real (``openmart serve`` on a free port) and
driven with httpx: bindings, subscriptions and monitors, logging in every body shape, paging,
scopes, bad bodies (nothing stored), and concurrent posts (every record stored once). What the
service answers is checked against the mart's own tables."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import openmart
from tests.rest_support import FEATURES, count, keys, records, reference, service, subscribe, table

API = "/api/v1"


def test_bindings_subscriptions_and_monitors(
    database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart
) -> None:
    key = keys(mart)
    with service(database_url, schema_name, tmp_path) as svc, svc.client(key["admin"]) as admin:
        # bindings: the secret is sealed as mart.bindings.add seals it, and never answered in clear
        made = admin.post(
            f"{API}/bindings",
            json={
                "name": "web",
                "provider": "custom",
                "settings": {"url": "http://127.0.0.1:9/predict", "token": "s3cr3t-t0ken"},
            },
        )
        assert made.status_code == 201, made.text
        assert made.headers["location"] == f"{API}/bindings/web"
        assert made.json()["settings"]["token"] == "***" and "s3cr3t" not in made.text
        stored = mart.sql("SELECT settings::text AS s FROM bindings WHERE name = 'web'")["s"][0]
        assert "s3cr3t" not in stored and json.loads(stored)["token"].startswith("enc:")
        listed = admin.get(f"{API}/bindings")
        assert [b["name"] for b in listed.json()] == ["web"] and "s3cr3t" not in listed.text
        assert admin.get(f"{API}/bindings/web").json()["provider"] == "custom"
        bad = admin.post(f"{API}/bindings", json={"name": "x", "provider": "custom", "settings": {"mode": "single"}})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "url"
        assert (
            admin.post(
                f"{API}/bindings", json={"name": "web", "provider": "custom", "settings": {"url": "http://h/p"}}
            ).status_code
            == 409
        )
        assert admin.delete(f"{API}/bindings/web").status_code == 204
        assert admin.get(f"{API}/bindings/web").status_code == 404
        assert count(mart, "bindings") == 0

        # subscriptions: reference records as JSON, the schema inferred as the API infers it
        body = {
            "name": "credit",
            "reference": reference(),
            "label": "label",
            "problem_type": "binary",
            "categorical": ["sex"],
        }
        made = admin.post(f"{API}/subscriptions", json=body)
        assert made.status_code == 201, made.text
        assert made.headers["location"] == f"{API}/subscriptions/credit"
        sub = mart.subscriptions.get("credit")
        assert made.json()["schema"] == sub.schema.to_dict()
        assert [f["name"] for f in made.json()["schema"]["features"]] == FEATURES
        assert count(mart, table(mart, "credit", "reference")) == 200
        assert admin.post(f"{API}/subscriptions", json=body).status_code == 409
        # a second one from the first one's schema, with reference as OpenScale's fields/values
        ref = pd.DataFrame(reference(20))
        fields = {"fields": list(ref.columns), "values": ref.to_numpy().tolist()}
        twin = admin.post(
            f"{API}/subscriptions", json={"name": "twin", "schema": sub.schema.to_dict(), "reference": fields}
        )
        assert twin.status_code == 201, twin.text
        assert count(mart, table(mart, "twin", "reference")) == 20
        assert sorted(s["name"] for s in admin.get(f"{API}/subscriptions").json()) == ["credit", "twin"]
        assert admin.get(f"{API}/subscriptions/credit").json()["tables"] == sub.record.tables
        assert admin.get(f"{API}/subscriptions/nope").status_code == 404

        # monitors: enable, reconfigure, list, disable, as Monitors.enable takes them
        on = admin.put(
            f"{API}/subscriptions/credit/monitors/quality", json={"thresholds": ["accuracy=0.7"], "min_records": 5}
        )
        assert on.status_code == 200, on.text
        config = sub.monitors.get("quality")
        assert config.min_records == 5 and config.threshold("accuracy").value == 0.7
        again = admin.put(f"{API}/subscriptions/credit/monitors/quality", json={"thresholds": ["accuracy=0.9"]})
        assert again.json()["thresholds"][0] == {"metric": "accuracy", "type": "lower_limit", "value": 0.9}
        assert sub.monitors.get("quality").threshold("accuracy").value == 0.9
        drift = admin.put(f"{API}/subscriptions/credit/monitors/drift", json={"options": {"nope": 1}})
        assert drift.status_code == 422 and "nope" in drift.json()["error"]["message"]
        listed = admin.get(f"{API}/subscriptions/credit/monitors").json()
        assert [(m["kind"], m["enabled"]) for m in listed] == [("quality", True)]
        assert admin.delete(f"{API}/subscriptions/credit/monitors/quality").status_code == 204
        assert [c.enabled for c in sub.monitors.configs()] == [False]
        assert admin.delete(f"{API}/subscriptions/credit/monitors/fairness").status_code == 404

        assert admin.delete(f"{API}/subscriptions/twin").status_code == 204
        assert [s.name for s in mart.subscriptions.list()] == ["credit"]


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    return buf.getvalue().encode()


def _chunked(body: bytes, size: int = 7_000) -> Iterator[bytes]:
    """The body as a chunked upload (no Content-Length): the service reads it as a stream."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_logging_every_body_shape_and_paging(
    database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart
) -> None:
    subscribe(mart)
    payload, feedback = table(mart, "credit", "payload"), table(mart, "credit", "feedback")
    key = keys(mart)
    with service(database_url, schema_name, tmp_path) as svc, svc.client(key["write"]) as client:
        url = f"{API}/subscriptions/credit/payload"
        sent: list[str] = []

        def post(body: Any = None, **kwargs: Any) -> dict[str, Any]:
            answer = client.post(url, json=body, **kwargs) if body is not None else client.post(url, **kwargs)
            assert answer.status_code == 201, answer.text
            return dict(answer.json())

        # a list of records; ids given are kept
        done = post(records(3, 1, ids="list"))
        assert done["records"] == 3 and done["scoring_ids"] == ["list-0", "list-1", "list-2"]
        sent += done["scoring_ids"]
        # {"records": [...]}; ids generated and answered
        done = post({"records": records(4, 2)})
        assert done["records"] == 4 and len(set(done["scoring_ids"])) == 4
        sent += done["scoring_ids"]
        # OpenScale's fields/values, one and a list of them
        frame = pd.DataFrame(records(5, 3, ids="fv"))
        fv = {"fields": list(frame.columns), "values": frame.to_numpy().tolist()}
        sent += post(fv)["scoring_ids"]
        two = [
            {"fields": fv["fields"], "values": fv["values"][:2]},
            {"fields": fv["fields"], "values": fv["values"][2:]},
        ]
        for part in two:
            for row in part["values"]:
                row[-1] = row[-1] + "-again"
        done = post(two)
        assert done["records"] == 5 and done["scoring_ids"] == [f"fv-{k}-again" for k in range(5)]
        sent += done["scoring_ids"]
        # OpenScale payload records (request/response)
        rec = pd.DataFrame(records(2, 4))
        openscale = {
            "request": {"fields": FEATURES, "values": rec[FEATURES].to_numpy().tolist()},
            "response": {
                "fields": ["prediction", "probability"],
                "values": rec[["prediction", "probability"]].to_numpy().tolist(),
            },
            "scoring_id": "os",
        }
        done = post(openscale)
        assert done["scoring_ids"] == ["os-1", "os-2"]
        sent += done["scoring_ids"]
        # NDJSON and CSV, streamed as chunked uploads, bigger than one batch of the reader
        many = records(23_000, 5, ids="nd")
        ndjson = "\n".join(json.dumps(r) for r in many).encode()
        done = post(content=_chunked(ndjson), headers={"content-type": "application/x-ndjson"})
        assert done["records"] == 23_000 and done["scoring_ids"] is None and done["scoring_ids_omitted"]
        sent += [r["scoring_id"] for r in many]
        rows = records(1_500, 6, ids="csv")
        done = post(content=_chunked(_csv(rows)), headers={"content-type": "text/csv"})
        assert done["records"] == 1_500 and done["scoring_ids"] == [r["scoring_id"] for r in rows]
        sent += done["scoring_ids"]
        stored = set(mart.sql(f'SELECT scoring_id FROM "{payload}"')["scoring_id"])
        assert stored == set(sent) and count(mart, payload) == len(sent)
        # extra columns: refused by name, or dropped when allowed
        extra = [dict(r, note="x") for r in records(2, 7)]
        refused = client.post(url, json=extra)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "note"
        assert post(extra, params={"allow_extra_columns": "true"})["records"] == 2
        total = len(sent) + 2
        assert count(mart, payload) == total

        # feedback: on_duplicate refuse (the default) or replace
        fb = [dict(r, label=1 - r["prediction"]) for r in records(3, 1, ids="list")]
        fb_url = f"{API}/subscriptions/credit/feedback"
        assert client.post(fb_url, json=fb).status_code == 201
        again = client.post(fb_url, json=fb)
        assert again.status_code == 422 and again.json()["error"]["field"] == "scoring_id"
        replaced = client.post(
            fb_url, json=[dict(r, label=r["prediction"]) for r in fb], params={"on_duplicate": "replace"}
        )
        assert replaced.status_code == 201, replaced.text
        assert count(mart, feedback) == 3
        labels = mart.sql(f'SELECT scoring_id, label, prediction FROM "{feedback}"')
        assert (labels["label"] == labels["prediction"]).all()
        assert client.post(fb_url, json=fb, params={"on_duplicate": "sometimes"}).status_code == 422

        # reference: replaced whole, with its profile
        ref = _csv(reference(50))
        replaced = client.put(
            f"{API}/subscriptions/credit/reference", content=ref, headers={"content-type": "text/csv"}
        )
        assert replaced.status_code == 200 and replaced.json()["records"] == 50
        assert count(mart, table(mart, "credit", "reference")) == 50
        assert mart.subscriptions.get("credit").reference.profile()["rows"] == 50
        added = client.post(f"{API}/subscriptions/credit/reference", json=reference(10))
        assert added.status_code == 201 and added.json()["records"] == 10
        assert count(mart, table(mart, "credit", "reference")) == 60
        assert mart.subscriptions.get("credit").reference.profile()["rows"] == 60

        # paging: a cursor walks every payload record once, in order, while more are logged
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 5_000} | ({"cursor": cursor} if cursor else {})
            page = client.get(url, params=params).json()
            if pages == 0:
                assert page["total"] == total
                post(records(3, 8, ids="late"))  # logged while paging: later, so on a later page
            seen += [r["scoring_id"] for r in page["records"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == total + 3 and pages == (total + 3) // 5_000 + 1
        assert set(seen) == set(mart.sql(f'SELECT scoring_id FROM "{payload}"')["scoring_id"])
        by_offset = client.get(url, params={"limit": 3, "offset": 10}).json()
        assert [r["scoring_id"] for r in by_offset["records"]] == seen[10:13]
        first = by_offset["records"][0]
        assert set(first) >= {"scoring_id", "scoring_timestamp", *FEATURES, "prediction", "probability"}
        assert client.get(url, params={"cursor": "not-a-cursor"}).json()["error"]["field"] == "cursor"
        fb_page = client.get(fb_url, params={"limit": 2}).json()
        assert fb_page["total"] == 3 and len(fb_page["records"]) == 2 and fb_page["next_cursor"]
        rest = client.get(fb_url, params={"limit": 2, "cursor": fb_page["next_cursor"]}).json()
        assert len(rest["records"]) == 1 and rest["next_cursor"] is None
        ref_page = client.get(f"{API}/subscriptions/credit/reference", params={"limit": 100}).json()
        assert ref_page["total"] == 60 and len(ref_page["records"]) == 60


def test_bad_bodies_are_refused_by_record_and_field_and_store_nothing(
    database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart
) -> None:
    subscribe(mart)
    payload = table(mart, "credit", "payload")
    key = keys(mart)
    with service(database_url, schema_name, tmp_path) as svc, svc.client(key["admin"]) as client:
        url = f"{API}/subscriptions/credit/payload"
        assert client.post(url, json=records(5, 0, ids="kept")).status_code == 201
        before = count(mart, payload)

        def refused(answer: httpx.Response, status: int = 422) -> dict[str, Any]:
            assert answer.status_code == status, answer.text
            assert count(mart, payload) == before  # from the mart: nothing of the body was stored
            return dict(answer.json()["error"])

        bad = records(10, 1)
        bad[7]["income"] = "lots"
        for body in (bad, {"records": bad}):
            error = refused(client.post(url, json=body))
            assert (error["record"], error["field"]) == (7, "income") and "'lots'" in error["message"]
        frame = pd.DataFrame(bad)
        error = refused(client.post(url, json={"fields": list(frame.columns), "values": frame.to_numpy().tolist()}))
        assert (error["record"], error["field"]) == (7, "income")
        ndjson = "\n".join(json.dumps(r) for r in bad).encode()
        error = refused(client.post(url, content=ndjson, headers={"content-type": "application/x-ndjson"}))
        assert (error["record"], error["field"]) == (7, "income")
        lines = [json.dumps(r) for r in records(10, 1)]
        lines[7] = '{"sex": "female", "income": '
        error = refused(client.post(url, content="\n".join(lines), headers={"content-type": "application/x-ndjson"}))
        assert error["record"] == 7 and "not JSON" in error["message"]
        error = refused(client.post(url, content=_csv(bad), headers={"content-type": "text/csv"}))
        assert (error["record"], error["field"]) == (7, "income")
        # deep in a streamed body, after whole batches went to the database: all rolled back
        big = records(25_000, 2)
        big[23_456]["probability"] = 1.5
        error = refused(client.post(url, content=_chunked(_csv(big)), headers={"content-type": "text/csv"}))
        assert (error["record"], error["field"]) == (23_456, "probability")
        # a scoring id stored already (the default: refused), or repeated within the body
        error = refused(client.post(url, json=records(3, 3, ids="kept")))
        assert error["field"] == "scoring_id"
        twice = records(9, 4, ids="twice")
        twice[8]["scoring_id"] = twice[2]["scoring_id"]
        error = refused(client.post(url, json=twice))
        assert (error["record"], error["field"]) == (8, "scoring_id")
        missing = [{k: v for k, v in r.items() if k != "prediction"} for r in records(3, 5)]
        assert refused(client.post(url, json=missing))["field"] == "prediction"
        # not records at all
        assert (
            "not JSON"
            in refused(client.post(url, content=b"{garbage", headers={"content-type": "application/json"}))["message"]
        )
        assert (
            "NaN"
            in refused(client.post(url, content=b'[{"income": NaN}]', headers={"content-type": "application/json"}))[
                "message"
            ]
        )
        refused(client.post(url, json={"rows": []}))
        refused(client.post(url, json="records"))
        refused(client.post(url, json=[]))
        refused(client.post(url, json=[1, 2]))
        refused(client.post(url, json={"fields": ["income"], "values": [[1, 2]]}))
        refused(client.post(url, content=b"", headers={"content-type": "application/json"}))
        refused(client.post(url, content=b"sex,income\n", headers={"content-type": "text/csv"}))
        repeated = b"sex,income,debt,income,prediction\nfemale,1,2,3,0\n"
        for options in ({}, {"allow_extra_columns": "true"}):  # never one of them dropped in silence
            error = refused(client.post(url, content=repeated, params=options, headers={"content-type": "text/csv"}))
            assert error["field"] == "income" and "twice" in error["message"]
        long_row = _csv(records(3, 6)) + b"female,1,2,0,0.5,extra\n"
        assert refused(client.post(url, content=long_row, headers={"content-type": "text/csv"}))["record"] == 3
        refused(client.post(url, content=b"<records/>", headers={"content-type": "application/xml"}), 415)
        assert refused(client.post(f"{API}/subscriptions/nope/payload", json=records(1)), 404)["type"] == "NotFound"

        # pydantic bodies: wrong shapes named by field; a bad reference record by its index
        subs = count(mart, "subscriptions")
        wrong = client.post(f"{API}/subscriptions", json={"name": "x", "categorical": "sex"})
        assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "categorical"
        garbage = client.post(f"{API}/subscriptions", content=b"{nope", headers={"content-type": "application/json"})
        assert garbage.status_code == 422 and garbage.json()["error"]["type"] == "ValidationError"
        ref = reference(20)
        ref[7]["debt"] = "none"
        bad_ref = client.post(
            f"{API}/subscriptions",
            json={"name": "x", "reference": ref, "label": "label", "problem_type": "binary", "numeric": ["debt"]},
        )
        assert bad_ref.status_code == 422, bad_ref.text
        assert (bad_ref.json()["error"]["record"], bad_ref.json()["error"]["field"]) == (7, "debt")
        assert count(mart, "subscriptions") == subs
        assert client.post(f"{API}/subscriptions", json={"name": "y", "label": "label"}).status_code == 422
        assert count(mart, "subscriptions") == subs


ROUTES: list[tuple[str, str, str, Any]] = [
    # method, path, the scope it needs, a body
    ("GET", "/bindings", "read", None),
    ("GET", "/bindings/web", "read", None),
    ("POST", "/bindings", "admin", {"name": "b2", "provider": "custom", "settings": {"url": "http://h/p"}}),
    ("DELETE", "/bindings/web", "admin", None),
    ("GET", "/subscriptions", "read", None),
    ("GET", "/subscriptions/credit", "read", None),
    ("POST", "/subscriptions", "admin", {"name": "s2"}),
    ("DELETE", "/subscriptions/credit", "admin", None),
    ("GET", "/subscriptions/credit/monitors", "read", None),
    ("PUT", "/subscriptions/credit/monitors/quality", "admin", {"min_records": 5}),
    ("DELETE", "/subscriptions/credit/monitors/quality", "admin", None),
    ("POST", "/subscriptions/credit/payload", "write", [{"income": 1}]),
    ("POST", "/subscriptions/credit/feedback", "write", [{"income": 1}]),
    ("PUT", "/subscriptions/credit/reference", "write", [{"income": 1}]),
    ("POST", "/subscriptions/credit/reference", "write", [{"income": 1}]),
    ("GET", "/subscriptions/credit/payload", "read", None),
    ("GET", "/subscriptions/credit/feedback", "read", None),
    ("GET", "/subscriptions/credit/reference", "read", None),
    ("GET", "/subscriptions/credit/versions", "read", None),
    ("POST", "/subscriptions/credit/versions", "write", {"version": "2"}),
    ("POST", "/subscriptions/credit/evaluations", "write", {}),
    ("GET", "/subscriptions/credit/evaluations", "read", None),
    ("GET", "/subscriptions/credit/evaluations/1", "read", None),
    ("GET", "/subscriptions/credit/measurements", "read", None),
    ("GET", "/alerts", "read", None),
    ("POST", "/alerts/1/acknowledge", "write", {}),
    ("POST", "/alerts/1/resolve", "write", {}),
    ("POST", "/subscriptions/credit/explanations", "write", {"scoring_id": "x"}),
    ("GET", "/subscriptions/credit/explanations", "read", None),
]
RANK = {"read": 0, "write": 1, "admin": 2}


def test_every_route_checks_its_scope(database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart) -> None:
    subscribe(mart)
    mart.bindings.add("web", "custom", {"url": "http://127.0.0.1:9/predict"})
    key = keys(mart)
    before = {t: count(mart, t) for t in ("bindings", "subscriptions", "monitors", "evaluations", "alerts")}
    with service(database_url, schema_name, tmp_path) as svc:
        spec = httpx.get(svc.url + "/openapi.json").json()
        documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
        clients = {"none": svc.client()} | {scope: svc.client(k) for scope, k in key.items()}
        try:
            for method, path, needed, body in ROUTES:
                assert (
                    method,
                    API
                    + path.replace("/web", "/{name}")
                    .replace("/credit", "/{name}")
                    .replace("/quality", "/{kind}")
                    .replace("/evaluations/1", "/evaluations/{evaluation_id}")
                    .replace("/alerts/1", "/alerts/{alert_id}"),
                ) in documented, (method, path)
                kwargs = {"json": body} if body is not None else {}
                answer = clients["none"].request(method, API + path, **kwargs)
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.json()["error"]["type"] == "Unauthorized"
                for scope in ("read", "write"):
                    if RANK[scope] < RANK[needed]:
                        answer = clients[scope].request(method, API + path, **kwargs)
                        assert answer.status_code == 403, (scope, method, path, answer.text)
                        assert needed in answer.json()["error"]["message"]
                if method == "GET":  # reads change nothing: the scope they need lets them through
                    assert clients[needed].get(API + path).status_code not in (401, 403), path
        finally:
            for client in clients.values():
                client.close()
    # the refusals changed nothing
    assert {t: count(mart, t) for t in before} == before
    assert count(mart, table(mart, "credit", "payload")) == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_concurrent_payload_posts_store_every_record_once(
    database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart, workers: str
) -> None:
    """8 clients x 40 posts at once, 1-record and 100-record posts mixed, to one service
    process or two: every record once."""
    subscribe(mart)
    payload = table(mart, "credit", "payload")
    key = keys(mart)
    threads, posts = 8, 40
    answered: dict[str, list[str]] = {}
    failures: list[str] = []
    start = threading.Barrier(threads)

    def client_thread(t: int, svc_url: str) -> None:
        with httpx.Client(base_url=svc_url, headers={"X-API-Key": key["write"]}, timeout=300) as client:
            start.wait()
            for p in range(posts):
                size = 1 if (t + p) % 2 else 100
                body = records(size, seed=t * 1000 + p, ids=f"t{t}-p{p}")
                answer = client.post(f"{API}/subscriptions/credit/payload", json=body)
                if answer.status_code != 201:
                    failures.append(f"t{t} p{p}: {answer.status_code} {answer.text[:200]}")
                    continue
                answered[f"t{t}-p{p}"] = answer.json()["scoring_ids"]

    with service(database_url, schema_name, tmp_path, "--workers", workers) as svc:
        clients = [threading.Thread(target=client_thread, args=(t, svc.url)) for t in range(threads)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
    assert not failures, failures[:5]
    expected = {
        f"t{t}-p{p}-{k}" for t in range(threads) for p in range(posts) for k in range(1 if (t + p) % 2 else 100)
    }
    assert len(expected) == threads * posts // 2 * 101
    assert {i for ids in answered.values() for i in ids} == expected
    # from the mart: every record once
    assert count(mart, payload) == len(expected)
    assert count(mart, payload, "count(DISTINCT scoring_id)") == len(expected)
    assert set(mart.sql(f'SELECT scoring_id FROM "{payload}"')["scoring_id"]) == expected


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "text/csv"])
def test_a_streamed_body_cut_by_the_client_stores_nothing(
    database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart, content_type: str
) -> None:
    """A client that goes away in the middle of a streamed body: the transaction rolls back."""
    subscribe(mart)
    payload = table(mart, "credit", "payload")
    key = keys(mart)
    rows = records(30_000, 9, ids="cut")
    body = _csv(rows) if content_type == "text/csv" else "\n".join(json.dumps(r) for r in rows).encode()
    with service(database_url, schema_name, tmp_path) as svc:

        def cut() -> Iterator[bytes]:
            yield from _chunked(body[: len(body) * 2 // 3])
            raise ConnectionAbortedError("the client gave up")

        with svc.client(key["write"]) as client, pytest.raises((ConnectionAbortedError, httpx.HTTPError)):
            client.post(f"{API}/subscriptions/credit/payload", content=cut(), headers={"content-type": content_type})
        # the service is still there, and kept nothing of the cut body
        with svc.client(key["write"]) as client:
            assert (
                client.post(f"{API}/subscriptions/credit/payload", json=records(1, 1, ids="after")).status_code == 201
            )
    assert set(mart.sql(f'SELECT scoring_id FROM "{payload}"')["scoring_id"]) == {"after-0"}
