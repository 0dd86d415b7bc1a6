"""Model versions and labelled sets through the REST API (``openmart serve`` started for real):
listing and starting versions, logging with ``version``, loading a set with ``environment`` and
``version``; scopes and refusals; answers checked against the mart's own tables."""

from __future__ import annotations

from pathlib import Path

import openmart
from tests.rest_support import count, keys, records, reference, service, subscribe, table

API = "/api/v1"


def test_versions_and_labelled_sets_over_rest(
    database_url: str, schema_name: str, tmp_path: Path, mart: openmart.Mart
) -> None:
    subscribe(mart)
    key = keys(mart)
    payload, ref = table(mart, "credit", "payload"), table(mart, "credit", "reference")
    with service(database_url, schema_name, tmp_path) as svc, svc.client(key["read"]) as reader:
        with svc.client(key["write"]) as writer:
            listed = reader.get(f"{API}/subscriptions/credit/versions").json()
            assert [(v["version"], v["source"], v["current"], v["training"]) for v in listed] == [
                ("1", "subscribe", True, 200)
            ]
            # starting a version is a write; a read key is refused and nothing changes
            refused = reader.post(f"{API}/subscriptions/credit/versions", json={"version": "2"})
            assert refused.status_code == 403
            assert count(mart, "model_versions") == 1

            started = writer.post(f"{API}/subscriptions/credit/versions", json={"version": "2", "note": "retrained"})
            assert started.status_code == 201, started.text
            body = started.json()
            assert (body["version"], body["current"], body["new"], body["note"]) == ("2", True, True, "retrained")
            again = writer.post(f"{API}/subscriptions/credit/versions", json={"version": "1"})
            assert again.status_code == 200 and again.json()["new"] is False and again.json()["current"] is True
            writer.post(f"{API}/subscriptions/credit/versions", json={"version": "2"})

            # records without a version: the current one (2); ?version= names another
            assert writer.post(f"{API}/subscriptions/credit/payload", json=records(30)).status_code == 201
            logged = writer.post(f"{API}/subscriptions/credit/payload?version=1", json=records(20, seed=1))
            assert logged.status_code == 201 and logged.json()["records"] == 20
            assert count(mart, payload, "count(*) FILTER (WHERE asset_revision = '2')") == 30
            assert count(mart, payload, "count(*) FILTER (WHERE asset_revision = '1')") == 20

            # a validation set of version 2, then version 2's training set, which becomes the reference
            sets = f"{API}/subscriptions/credit/reference"
            valid = writer.put(f"{sets}?environment=validation&version=2", json=reference(40))
            assert valid.status_code == 200 and valid.json()["records"] == 40
            assert mart.subscriptions.get("credit").reference_version == "1"
            train = writer.put(f"{sets}?environment=training", json=reference(60))
            assert train.status_code == 200, train.text
            sub = mart.subscriptions.get("credit")
            assert sub.reference_version == "2" and sub.reference.count() == 60
            added = writer.post(f"{sets}?version=2", json=reference(10))
            assert added.status_code == 201 and sub.reference.count() == 70

            # refusals: named, nothing stored
            bad_env = writer.put(f"{sets}?environment=production", json=reference(5))
            assert bad_env.status_code == 422 and "production" in bad_env.json()["error"]["message"]
            bad_version = writer.post(f"{API}/subscriptions/credit/versions", json={"version": ""})
            assert bad_version.status_code == 422
            assert writer.post(f"{API}/subscriptions/nope/versions", json={"version": "3"}).status_code == 404
            mismatch = writer.post(
                f"{API}/subscriptions/credit/payload?version=3", json=[{**records(1)[0], "asset_revision": "1"}]
            )
            assert mismatch.status_code == 422 and mismatch.json()["error"]["field"] == "asset_revision"

        listed = {v["version"]: v for v in reader.get(f"{API}/subscriptions/credit/versions").json()}
    assert list(listed) == ["1", "2"]
    assert (listed["1"]["payload"], listed["1"]["training"], listed["1"]["validation"]) == (20, 200, 0)
    assert (listed["2"]["payload"], listed["2"]["training"], listed["2"]["validation"]) == (30, 70, 40)
    assert listed["2"]["current"] and not listed["1"]["current"]
    assert count(mart, ref) == 200 + 70 + 40
    assert count(mart, payload) == 50
    assert count(mart, "model_versions") == 2
