"""Alert delivery through the CLI (``openmart alerts channel|deliveries|retry|deliver``, and the
pass after ``openmart evaluate``) and through ``openmart serve`` (its background sender and the
REST routes), against a real local HTTP receiver and a real SMTP server. Secrets never show."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import openmart
from openmart import secrets
from tests.alert_delivery_support import Mailbox, breach, http_receiver, passing, smtp_server, subscription
from tests.service_support import running_service, service_env

TOKEN = "clitok8d7c6b5a4f3e2d1c0b"
HOOK_PATH = f"/services/T1/B2/{TOKEN}"
PASSWORD = "cli-Pw-4f2a8c6e1d"
# long names: a table must show them whole at 80 columns
SUB = "credit-risk-scoring-model-version-2-eu"
CHANNEL = "ops-team-slack-alerts-channel-primary"


@pytest.fixture(autouse=True)
def _key(mart: openmart.Mart, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(secrets.KEY_ENV, raising=False)
    monkeypatch.delenv(secrets.KEY_FILE_ENV, raising=False)
    monkeypatch.delenv("OPENMART_PUBLIC_URL", raising=False)
    secrets.create_key_file(mart.settings)  # the CLI's OPENMART_DATA_DIR is the same directory


def wait_for(condition: Callable[[], Any], what: str, deadline: float = 180.0) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        time.sleep(0.1)  # polling interval while waiting for the condition, not synchronisation by sleep
    raise AssertionError(f"timed out waiting for {what}")


def _all_output(*results: Any) -> str:
    return "".join(r.stdout + r.stderr for r in results)


def test_cli_channels_deliveries_retry_and_the_pass_after_evaluate(
    mart: openmart.Mart, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMART_ALERT_MAX_ATTEMPTS", "1")  # the first failure is final: failed at once
    sub = subscription(mart, SUB)
    breach(sub)
    outputs = []
    with http_receiver(always_fail=True, fail_status=500) as hook, smtp_server(tmp_path, password=PASSWORD) as box:
        outputs.append(
            cli("alerts", "channel", "add", SUB, CHANNEL, "--kind", "webhook", "--set", f"url={hook.url}{HOOK_PATH}")
        )
        assert f"alert channel '{CHANNEL}' (webhook) added" in outputs[-1].stdout
        outputs.append(cli("alerts", "channel", "add", SUB, "mail", "--kind", "email", *_email_args(box), "--json"))
        assert json.loads(outputs[-1].stdout)["settings"]["password"] == "***"

        listed = cli("alerts", "channel", "list", SUB)
        outputs.append(listed)
        assert SUB in listed.stdout and CHANNEL in listed.stdout and f"url={hook.url}/***" in listed.stdout
        assert "password=***" in listed.stdout

        # the evaluation opens an alert; its pass sends the email and fails the webhook for good
        evaluated = cli("evaluate", SUB)
        outputs.append(evaluated)
        assert "alert messages: 1 sent, 1 failed (openmart alerts deliveries --status failed)" in evaluated.stderr
        assert len(box.messages) == 1 and len(hook.requests) == 1

        failed = cli("alerts", "deliveries", "--status", "failed")
        outputs.append(failed)
        assert SUB in failed.stdout and CHANNEL in failed.stdout and "HTTP 500" in failed.stdout
        [row] = json.loads(cli("alerts", "deliveries", "--status", "failed", "--json").stdout)
        assert (row["channel"], row["event"], row["status"], row["attempts"]) == (CHANNEL, "opened", "failed", 1)
        assert row["last_error"].startswith(f"webhook {hook.url}/***: HTTP 500")

        hook.always_fail = False
        retried = cli("alerts", "retry", str(row["id"]))
        outputs.append(retried)
        assert f"delivery {row['id']} (opened of alert {row['alert_id']} to {SUB}/{CHANNEL}) queued again" in (
            retried.stdout
        )
        delivered = cli("alerts", "deliver")
        outputs.append(delivered)
        assert "alert messages: 1 sent" in delivered.stderr
        assert len(hook.taken) == 1 and hook.taken[0].path == HOOK_PATH
        assert cli("alerts", "retry", str(row["id"]), ok=False).exit_code == 2  # sent: nothing to retry

        # resolved by an evaluation: one message per channel, told after the evaluation
        passing(sub)
        outputs.append(again := cli("evaluate", SUB))
        assert "alert messages: 2 sent" in again.stderr
        assert len(hook.taken) == 2 and len(box.messages) == 2

        outputs.append(tested := cli("alerts", "channel", "test", SUB, CHANNEL))
        assert f"test message sent through '{CHANNEL}'" in tested.stdout
        outputs.append(cli("alerts", "channel", "disable", SUB, "mail"))
        outputs.append(cli("alerts", "channel", "list", "--json"))
        assert [c["enabled"] for c in json.loads(outputs[-1].stdout)] == [False, True]
        outputs.append(cli("alerts", "channel", "remove", SUB, CHANNEL))
        missing = cli("alerts", "channel", "test", SUB, CHANNEL, ok=False)
        assert missing.exit_code == 1 and f"has no alert channel '{CHANNEL}'" in missing.stderr
        bad = cli("alerts", "channel", "add", SUB, "x", "--kind", "webhook", "--set", "pasword=oops", ok=False)
        assert bad.exit_code == 2 and "setting 'pasword' is not one a webhook channel takes" in bad.stderr
    text = _all_output(*outputs)
    assert TOKEN not in text and PASSWORD not in text


def _email_args(box: Mailbox) -> list[str]:
    pairs = {
        "host": box.host,
        "port": box.port,
        "to": "a@example.org,b@example.org",
        "from": "openmart@example.org",
        "username": "alerts@example.org",
        "password": PASSWORD,
        "ca_file": box.ca_file,
    }
    return [arg for k, v in pairs.items() for arg in ("--set", f"{k}={v}")]


def test_serve_sends_in_the_background_and_answers_over_rest(
    mart: openmart.Mart, database_url: str, schema_name: str, tmp_path: Path
) -> None:
    _, admin = mart.keys.create("admin", "admin")
    _, reader = mart.keys.create("reader", "read")
    _, writer = mart.keys.create("writer", "write")
    sub = subscription(mart, "credit")
    env = service_env(
        database_url,
        schema_name,
        tmp_path / "data",
        OPENMART_ALERT_RETRY_BASE="0.05",  # tiny backoff: retries within a second
        OPENMART_ALERT_MAX_ATTEMPTS="3",
    )
    with (
        http_receiver(fail_first=2, fail_status=500) as flaky,
        http_receiver(always_fail=True, fail_status=503) as down,
        running_service(database_url, schema_name, tmp_path, "--deliver-interval", "0.2", env=env) as svc,
    ):
        with svc.client(admin) as api, svc.client(reader) as ro, svc.client(writer) as rw:
            body = {"name": "flaky", "kind": "webhook", "settings": {"url": flaky.url + HOOK_PATH}}
            refused = ro.post("/api/v1/subscriptions/credit/channels", json=body)
            assert refused.status_code == 403 and refused.json()["error"]["type"]
            assert rw.post("/api/v1/subscriptions/credit/channels", json=body).status_code == 403
            made = api.post("/api/v1/subscriptions/credit/channels", json=body)
            assert made.status_code == 201, made.text
            assert made.json()["settings"] == {"url": f"{flaky.url}/***", "timeout": "10.0"}
            down_body = {"name": "down", "kind": "webhook", "settings": {"url": down.url + HOOK_PATH}}
            assert api.post("/api/v1/subscriptions/credit/channels", json=down_body).status_code == 201
            bad = api.post("/api/v1/subscriptions/credit/channels", json={**body, "name": "x", "kind": "pager"})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "kind"
            listed = ro.get("/api/v1/subscriptions/credit/channels")
            assert [c["name"] for c in listed.json()] == ["down", "flaky"]

            breach(sub)
            sub.evaluate()  # in this process; the service's sender does the rest
            wait_for(lambda: flaky.taken, "the flaky receiver to take the message")
            failed = wait_for(
                lambda: ro.get("/api/v1/alert-deliveries", params={"status": "failed"}).json(),
                "the message to the receiver that is down to fail",
            )
            assert len(flaky.requests) == 3 and len(flaky.taken) == 1
            [sent] = ro.get("/api/v1/alert-deliveries", params={"status": "sent", "subscription": "credit"}).json()
            assert (sent["channel"], sent["attempts"], sent["event"]) == ("flaky", 3, "opened")
            [row] = failed
            assert (row["channel"], row["attempts"], row["status"]) == ("down", 3, "failed")
            assert len(down.requests) == 3

            assert ro.post(f"/api/v1/alert-deliveries/{row['id']}/retry").status_code == 403
            down.always_fail = False
            retried = rw.post(f"/api/v1/alert-deliveries/{row['id']}/retry")
            assert retried.status_code == 200 and retried.json()["status"] in ("pending", "sending", "sent")
            wait_for(lambda: down.taken, "the retried message")
            wait_for(
                lambda: len(ro.get("/api/v1/alert-deliveries", params={"status": "sent"}).json()) == 2,
                "both deliveries sent",
            )
            done = ro.get("/api/v1/alert-deliveries").json()
            assert {(d["channel"], d["status"]) for d in done} == {("flaky", "sent"), ("down", "sent")}
            again = rw.post(f"/api/v1/alert-deliveries/{row['id']}/retry")
            assert again.status_code == 422 and again.json()["error"]["field"] == "status"
            assert rw.post("/api/v1/alert-deliveries/999999/retry").status_code == 404

            tested = rw.post("/api/v1/subscriptions/credit/channels/flaky/test")
            assert tested.status_code == 200 and tested.json()["event"] == "test"
            down.always_fail = True
            broken = rw.post("/api/v1/subscriptions/credit/channels/down/test")
            assert broken.status_code == 502 and broken.json()["error"]["type"] == "DeliveryError"
            assert rw.post("/api/v1/subscriptions/credit/channels/down/disable").json()["enabled"] is False
            assert api.delete("/api/v1/subscriptions/credit/channels/down").status_code == 204
            assert ro.get("/api/v1/subscriptions/credit/channels/down").status_code == 404
            answers = listed.text + made.text + broken.text + json.dumps(ro.get("/api/v1/alert-deliveries").json())
        log = svc.output()
    assert TOKEN not in answers and TOKEN not in log
    assert {r.delivery for r in flaky.requests[:3]} == {str(sent["id"])}  # one idempotency key, every attempt
