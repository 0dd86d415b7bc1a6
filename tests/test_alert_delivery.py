"""Alert delivery through real receivers: a local HTTP receiver (the webhook) and a real SMTP
server (aiosmtpd, STARTTLS with a certificate made here, AUTH). Alerts open and resolve through
real evaluations. Retries move the dispatcher's clock (``now=``) instead of waiting.

What is counted: a message per (alert, channel, transition) arrives exactly once, a repeated
breach sends nothing, a receiver that fails twice gets the message once (attempts 3), a
receiver that always fails ends ``failed`` and ``retry`` brings it back, two senders at once
never send one message twice, a sender killed after its claim loses nothing, and one killed
while the receiver already has the message causes the one documented repeat (same idempotency
key). No secret is stored or shown in clear; no credential goes over a connection that did not
upgrade to TLS."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import openmart
from openmart import secrets
from openmart.alerting.channels import DeliveryError
from openmart.alerting.dispatcher import Backoff
from openmart.errors import AlreadyExists, NotFound, ValidationError
from openmart.mart import alert_deliveries
from tests.alert_delivery_support import (
    USERNAME,
    Mailbox,
    breach,
    http_receiver,
    passing,
    smtp_server,
    subscription,
)

SMTP_PASSWORD = "smtp-Pw-5e1d9a7c3b"
HOOK_TOKEN = "hooktok9f8e7d6c5b4a3921"  # the secret part of a Slack-style webhook URL
HOOK_PATH = f"/services/T0001/B0002/{HOOK_TOKEN}"
FAST = Backoff(base=30.0, max_attempts=6)


@pytest.fixture(autouse=True)
def _key(mart: openmart.Mart, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key in the test's data directory (as `openmart secrets init` makes), none from outside."""
    monkeypatch.delenv(secrets.KEY_ENV, raising=False)
    monkeypatch.delenv(secrets.KEY_FILE_ENV, raising=False)
    monkeypatch.delenv("OPENMART_PUBLIC_URL", raising=False)
    secrets.create_key_file(mart.settings)


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    with smtp_server(tmp_path, password=SMTP_PASSWORD) as box:
        yield box


def email_settings(box: Mailbox, **extra: str) -> dict[str, str]:
    settings = {
        "host": box.host,
        "port": str(box.port),
        "to": "ops@example.org, ml@example.org",
        "from": "openmart@example.org",
        "username": USERNAME,
        "password": SMTP_PASSWORD,
        "ca_file": str(box.ca_file),
    }
    return {**settings, **extra}


def deliveries(mart: openmart.Mart, **filters: str) -> list[alert_deliveries.DeliveryRecord]:
    with mart.engine.connect() as conn:
        return alert_deliveries.list_deliveries(conn, **filters)  # type: ignore[arg-type]


def later(hours: float) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


# -- one message per transition ----------------------------------------------------------------------


def test_one_message_per_transition_by_webhook_and_email(mart: openmart.Mart, mailbox: Mailbox) -> None:
    sub = subscription(mart)
    with http_receiver() as hook:
        sub.channels.add("slack", "webhook", {"url": hook.url + HOOK_PATH, "public_url": "https://om.example.org/"})
        sub.channels.add("mail", "email", email_settings(mailbox))
        breach(sub)

        first = sub.evaluate()
        [alert_id] = first.alerts.opened
        counts = mart.deliver_alerts(backoff=FAST)
        assert (counts.sent, counts.retrying, counts.failed) == (2, 0, 0)
        assert len(hook.taken) == 1 and len(mailbox.messages) == 1

        body = hook.taken[0].body
        assert hook.taken[0].path == HOOK_PATH
        assert body["openmart"]["event"] == "opened" and body["openmart"]["alert"]["id"] == alert_id
        assert body["openmart"]["alert"]["metric"] == "roc_auc" and body["openmart"]["alert"]["threshold"] == 0.99
        assert body["text"].startswith("openmart alert opened: credit quality.roc_auc")
        assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context"]
        link = "https://om.example.org/dashboard/subscriptions/credit?tab=alerts"
        assert body["openmart"]["link"] == link and link in body["blocks"][2]["text"]["text"]
        assert f"evaluation {first.evaluation_id}" in body["blocks"][1]["text"]["text"]
        [opened] = deliveries(mart, status="sent")[:1]
        assert hook.taken[0].delivery == str(opened.id)

        mail = mailbox.messages[0]
        assert mail["Subject"].startswith("[openmart] openmart alert opened: credit quality.roc_auc")
        assert mail["X-Openmart-Delivery"] and mail["Message-ID"].startswith("<openmart-delivery-")
        assert mailbox.envelopes[0] == ("openmart@example.org", ["ops@example.org", "ml@example.org"])
        assert mailbox.logins == [(USERNAME, SMTP_PASSWORD, True)]  # over TLS, after STARTTLS
        text = mail.get_payload(decode=True).decode()
        assert "Value: 0.9" in text and "against the lower limit 0.99" in text and "Subscription: credit" in text

        # the same breach again: the alert is updated, nobody is told again
        second = sub.evaluate()
        assert second.alerts.updated == (alert_id,)
        assert mart.deliver_alerts(backoff=FAST).claimed == 0
        mart.acknowledge_alert(alert_id, by="ana")  # an acknowledgement sends nothing either
        assert mart.deliver_alerts(backoff=FAST).claimed == 0
        assert len(hook.taken) == 1 and len(mailbox.messages) == 1

        # resolved by an evaluation: one message each
        passing(sub)
        third = sub.evaluate()
        assert third.alerts.resolved == (alert_id,)
        assert mart.deliver_alerts(backoff=FAST).sent == 2
        assert len(hook.taken) == 2 and len(mailbox.messages) == 2
        resolved = hook.taken[1].body["openmart"]
        assert resolved["event"] == "resolved" and resolved["alert"]["resolved_by"] == "evaluation"
        assert f"by evaluation {third.evaluation_id}" in hook.taken[1].body["blocks"][1]["text"]["text"]
        assert "alert resolved" in mailbox.messages[1]["Subject"]

        # breached again: a new alert, one message; resolved by a person: one message
        breach(sub)
        fourth = sub.evaluate()
        [new_id] = fourth.alerts.opened
        mart.resolve_alert(new_id, by="bo", note="false alarm")
        assert mart.deliver_alerts(backoff=FAST).sent == 4
        assert len(hook.taken) == 4 and len(mailbox.messages) == 4
        events = [(r.body["openmart"]["alert"]["id"], r.body["openmart"]["event"]) for r in hook.taken]
        assert events == [(alert_id, "opened"), (alert_id, "resolved"), (new_id, "opened"), (new_id, "resolved")]
        assert "Resolved: " in hook.taken[3].body["blocks"][1]["text"]["text"]
        assert "by bo" in hook.taken[3].body["blocks"][1]["text"]["text"]
        assert mart.deliver_alerts(backoff=FAST).claimed == 0

    rows = deliveries(mart)
    assert len(rows) == 8 and {(r.status, r.attempts) for r in rows} == {(alert_deliveries.DeliveryStatus.SENT, 1)}
    assert len({r.delivery for r in hook.taken}) == 4
    assert len({m["Message-ID"] for m in mailbox.messages}) == 4
    frame = mart.deliveries(subscription="credit")
    assert list(frame["status"].unique()) == ["sent"] and set(frame["channel"]) == {"slack", "mail"}


def test_a_disabled_channel_gets_nothing_new_and_a_removed_one_nothing_at_all(mart: openmart.Mart) -> None:
    sub = subscription(mart)
    with http_receiver() as hook:
        sub.channels.add("on", "webhook", {"url": hook.url + "/on"})
        sub.channels.add("off", "webhook", {"url": hook.url + "/off"})
        sub.channels.disable("off")
        breach(sub)
        sub.evaluate()
        mart.deliver_alerts()
        assert [r.path for r in hook.taken] == ["/on"]
        assert [c.enabled for c in sub.channels.list()] == [False, True]  # by name: off, on
        sub.channels.remove("on")
        passing(sub)
        sub.evaluate()
        assert mart.deliver_alerts().claimed == 0
        assert len(deliveries(mart)) == 0  # the removed channel's deliveries went with it
    with pytest.raises(NotFound, match="has no alert channel 'on'"):
        sub.channels.get("on")
    with pytest.raises(AlreadyExists, match="'off' already"):
        sub.channels.add("off", "webhook", {"url": "http://127.0.0.1:9/x"})


def test_resolved_never_goes_before_opened_to_the_same_channel(mart: openmart.Mart) -> None:
    sub = subscription(mart)
    with http_receiver(fail_first=1) as hook:
        sub.channels.add("slack", "webhook", {"url": hook.url + "/hook"})
        breach(sub)
        [alert_id] = sub.evaluate().alerts.opened
        mart.resolve_alert(alert_id, by="ana")  # both transitions queued before any is sent
        first = mart.deliver_alerts(backoff=FAST)
        assert (first.claimed, first.retrying) == (1, 1)  # the opening failed; the resolution waited
        assert mart.deliver_alerts(backoff=FAST, now=later(1)).sent == 2
    assert [r.body["openmart"]["event"] for r in hook.taken] == ["opened", "resolved"]


# -- retries ---------------------------------------------------------------------------------------


def test_a_receiver_that_fails_twice_then_succeeds_gets_the_message_once(mart: openmart.Mart) -> None:
    sub = subscription(mart)
    with http_receiver(fail_first=2, fail_status=500) as hook:
        sub.channels.add("slack", "webhook", {"url": hook.url + HOOK_PATH})
        breach(sub)
        sub.evaluate()
        start = datetime.now(UTC)
        assert mart.deliver_alerts(backoff=FAST).retrying == 1
        [row] = deliveries(mart)
        assert (row.status, row.attempts) == ("pending", 1) and "HTTP 500" in (row.last_error or "")
        # backoff: the next attempt is ~30 s away (jitter 20 %), not now
        assert start + timedelta(seconds=20) < row.next_attempt_at < start + timedelta(seconds=45)
        assert mart.deliver_alerts(backoff=FAST).claimed == 0
        second = mart.deliver_alerts(backoff=FAST, now=later(1))
        assert second.retrying == 1
        [row] = deliveries(mart)
        # the second wait is ~2 min after the (moved) clock
        assert later(1) + timedelta(seconds=90) < row.next_attempt_at < later(1) + timedelta(seconds=150)
        assert mart.deliver_alerts(backoff=FAST, now=later(2)).sent == 1
        assert mart.deliver_alerts(backoff=FAST, now=later(3)).claimed == 0
    assert len(hook.requests) == 3 and len(hook.taken) == 1
    assert len({r.delivery for r in hook.requests}) == 1  # one idempotency key for every attempt
    [row] = deliveries(mart)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None) and row.sent_at is not None


def test_a_receiver_that_always_fails_ends_failed_and_retry_brings_it_back(mart: openmart.Mart) -> None:
    sub = subscription(mart)
    with http_receiver(always_fail=True, fail_status=503) as hook:
        sub.channels.add("slack", "webhook", {"url": hook.url + HOOK_PATH})
        breach(sub)
        sub.evaluate()
        backoff = Backoff(base=30.0, max_attempts=4)
        outcomes = [mart.deliver_alerts(backoff=backoff, now=later(h)) for h in range(6)]
        assert [(c.retrying, c.failed) for c in outcomes] == [(1, 0), (1, 0), (1, 0), (0, 1), (0, 0), (0, 0)]
        assert len(hook.requests) == 4
        [row] = deliveries(mart, status="failed")
        assert row.attempts == 4 and "HTTP 503 try again later" in (row.last_error or "")
        with mart.engine.connect() as conn:
            assert alert_deliveries.failed_by_subscription(conn) == {sub.id: 1}
            assert [d.id for d in alert_deliveries.for_alerts(conn, [row.alert_id])[row.alert_id]] == [row.id]

        hook.always_fail = False
        again = mart.retry_delivery(row.id)
        assert (again.status, again.attempts) == ("pending", 0)
        assert mart.deliver_alerts(backoff=backoff).sent == 1
        with pytest.raises(ValidationError, match=f"delivery {row.id} is sent: only a failed or pending"):
            mart.retry_delivery(row.id)
        with pytest.raises(NotFound, match="no alert delivery 999999"):
            mart.retry_delivery(999999)
    assert len(hook.taken) == 1
    with mart.engine.connect() as conn:
        assert alert_deliveries.failed_by_subscription(conn) == {}


def test_a_refusal_that_will_not_change_fails_at_once(mart: openmart.Mart) -> None:
    """404 from a webhook (Slack's answer for a revoked hook) is permanent: failed after one try."""
    sub = subscription(mart)
    with http_receiver(always_fail=True, fail_status=404, fail_body="no_service") as hook:
        sub.channels.add("slack", "webhook", {"url": hook.url + HOOK_PATH})
        breach(sub)
        sub.evaluate()
        assert mart.deliver_alerts(backoff=FAST).failed == 1
        assert len(hook.requests) == 1
    [row] = deliveries(mart)
    assert (row.status, row.attempts) == ("failed", 1) and "HTTP 404 no_service" in (row.last_error or "")
    assert row.last_error.startswith(f"webhook {hook.url}/***: ")


# -- concurrency and crashes ---------------------------------------------------------------------------


def test_two_dispatchers_at_once_send_each_message_once(mart: openmart.Mart) -> None:
    subs = [subscription(mart, f"s{i}") for i in range(3)]
    with http_receiver() as hook:
        for sub in subs:
            for c in range(4):
                sub.channels.add(f"c{c}", "webhook", {"url": f"{hook.url}/{sub.name}/{c}"})
            breach(sub)
            sub.evaluate()
        expected = len(deliveries(mart))
        assert expected == 12
        results: list[object] = []
        barrier = threading.Barrier(4)

        def sender() -> None:
            barrier.wait()
            try:
                results.append(mart.deliver_alerts(backoff=FAST))
            except Exception as exc:  # reported below: a thread's failure must fail the test
                results.append(exc)

        threads = [threading.Thread(target=sender) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not [r for r in results if isinstance(r, Exception)], results
        assert sum(r.sent for r in results) == expected  # type: ignore[attr-defined]
    keys = Counter(r.delivery for r in hook.taken)
    assert len(keys) == expected and set(keys.values()) == {1}
    assert {r.status for r in deliveries(mart)} == {"sent"}


def _sender_script(database_url: str, schema: str, data_dir: Path, body: str) -> list[str]:
    code = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from openmart.config import Settings
        import openmart
        settings = Settings(database_url=None, data_dir=Path({str(data_dir)!r}), secret_key=None)
        mart = openmart.connect({database_url!r}, schema={schema!r}, settings=settings, upgrade=False)
        """
    )
    return [sys.executable, "-c", code + textwrap.dedent(body)]


def test_a_sender_killed_after_its_claim_loses_nothing(
    mart: openmart.Mart, database_url: str, schema_name: str
) -> None:
    sub = subscription(mart)
    with http_receiver() as hook:
        sub.channels.add("slack", "webhook", {"url": hook.url + HOOK_PATH})
        breach(sub)
        sub.evaluate()
        # another process claims the delivery (committed), then dies before sending anything
        script = """
        from openmart.mart import alert_deliveries
        with mart.engine.begin() as conn:
            [claim] = alert_deliveries.claim_due(conn, 5, 600)
        print(claim.delivery.id, flush=True)
        os.kill(os.getpid(), 9)
        """
        done = subprocess.run(
            _sender_script(database_url, schema_name, mart.settings.data_dir, script),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == -signal.SIGKILL, done.stderr
        [row] = deliveries(mart)
        assert (row.status, row.attempts, str(row.id)) == ("sending", 1, done.stdout.strip())
        # its lease holds: nobody sends it twice meanwhile
        assert mart.deliver_alerts(backoff=FAST).claimed == 0
        # the lease passed: claimed again, sent once
        assert mart.deliver_alerts(backoff=FAST, now=later(1)).sent == 1
    assert len(hook.requests) == 1 and len(hook.taken) == 1
    [row] = deliveries(mart)
    assert (row.status, row.attempts) == ("sent", 2)


def test_a_sender_killed_while_the_receiver_has_the_message_repeats_it_with_the_same_key(
    mart: openmart.Mart, database_url: str, schema_name: str
) -> None:
    """The one repeat at-least-once allows: the receiver took the message, the sender died
    before recording it. The repeat carries the same X-Openmart-Delivery, so it can be dropped."""
    sub = subscription(mart)
    with http_receiver() as hook:
        sub.channels.add("slack", "webhook", {"url": hook.url + HOOK_PATH})
        breach(sub)
        sub.evaluate()
        hook.hold.set()
        process = subprocess.Popen(
            _sender_script(database_url, schema_name, mart.settings.data_dir, "mart.deliver_alerts()"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = datetime.now(UTC) + timedelta(minutes=5)
            while not hook.arrived.wait(0.2):  # a condition with a deadline; the process may fail early
                assert process.poll() is None, process.communicate()
                assert datetime.now(UTC) < deadline, "the sender never posted"
            os.kill(process.pid, signal.SIGKILL)
            process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
        hook.hold.clear()
        hook.release.set()
        [row] = deliveries(mart)
        assert row.status == "sending"
        assert mart.deliver_alerts(backoff=FAST, now=later(1)).sent == 1
    keys = [r.delivery for r in hook.requests]
    assert len(keys) == 2 and keys[0] == keys[1] == str(row.id)
    [row] = deliveries(mart)
    assert (row.status, row.attempts) == ("sent", 2)


# -- SMTP security ---------------------------------------------------------------------------------


def test_a_server_without_starttls_gets_no_mail_and_no_credentials(mart: openmart.Mart, tmp_path: Path) -> None:
    sub = subscription(mart)
    with smtp_server(tmp_path, starttls=False, password=SMTP_PASSWORD) as plain:
        settings = email_settings(plain)
        settings.pop("ca_file")
        sub.channels.add("mail", "email", settings)
        with pytest.raises(DeliveryError, match="does not offer STARTTLS: openmart sends no mail and no credentials"):
            sub.channels.test("mail")
        breach(sub)
        sub.evaluate()
        assert mart.deliver_alerts(backoff=FAST).failed == 1  # permanent: a server will not grow STARTTLS
        assert plain.logins == [] and plain.messages == []
    [row] = deliveries(mart)
    assert row.status == "failed" and "does not offer STARTTLS" in (row.last_error or "")


def test_a_certificate_that_does_not_verify_is_refused(mart: openmart.Mart, mailbox: Mailbox) -> None:
    sub = subscription(mart)
    settings = email_settings(mailbox)
    settings.pop("ca_file")  # the self-signed certificate is trusted only through ca_file
    sub.channels.add("mail", "email", settings)
    with pytest.raises(DeliveryError, match="certificate did not verify .*set 'ca_file'"):
        sub.channels.test("mail")
    assert mailbox.logins == [] and mailbox.messages == []
    sub.channels.add("trusted", "email", email_settings(mailbox))
    sent = sub.channels.test("trusted")
    assert sent.event == "test" and len(mailbox.messages) == 1 and "X-Openmart-Delivery" not in mailbox.messages[0]


def test_a_wrong_password_fails_at_once(mart: openmart.Mart, mailbox: Mailbox) -> None:
    sub = subscription(mart)
    sub.channels.add("mail", "email", email_settings(mailbox, password="not-the-password"))
    breach(sub)
    sub.evaluate()
    assert mart.deliver_alerts(backoff=FAST).failed == 1
    [row] = deliveries(mart)
    assert "login refused: 535" in (row.last_error or "") and "not-the-password" not in (row.last_error or "")
    assert mailbox.messages == []


# -- settings and secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "given", "field", "message"),
    [
        ("webhook", {}, "url", "'url' is required"),
        ("webhook", {"url": "ftp://x/y"}, "url", "expected an http"),
        ("webhook", {"url": "http://x/y", "pasword": "p"}, "pasword", "not one a webhook channel takes"),
        ("email", {"host": "h", "to": "a@b"}, "from", "'from' is required"),
        ("email", {"host": "h", "to": "nobody", "from": "a@b"}, "to", "'nobody' is not an email address"),
        ("email", {"host": "h", "to": "a@b", "from": "a@b", "port": "0"}, "port", "is not in"),
        ("email", {"host": "h", "to": "a@b", "from": "a@b", "username": "u"}, "password", "'password' is required"),
        (
            "email",
            {"host": "h", "to": "a@b", "from": "a@b", "username": "u", "password": "p1234", "tls": "none"},
            "tls",
            "would send the password in clear",
        ),
        ("sms", {}, "kind", "channel kind 'sms'"),
    ],
)
def test_settings_are_checked_by_name(
    mart: openmart.Mart, kind: str, given: dict[str, str], field: str, message: str
) -> None:
    sub = subscription(mart)
    with pytest.raises(ValidationError, match=message) as raised:
        sub.channels.add("x", kind, given)
    assert raised.value.column == field
    assert sub.channels.list() == []


def test_channel_secrets_are_sealed_shown_masked_rotated_and_never_logged(
    mart: openmart.Mart, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sub = subscription(mart)
    # the receiver echoes the request path (the token) back in its error body
    with http_receiver(always_fail=True, fail_status=500, fail_body=f"bad hook {HOOK_PATH}") as hook:
        url = hook.url + HOOK_PATH
        hook_channel = sub.channels.add("slack", "webhook", {"url": url})
        mail_channel = sub.channels.add("mail", "email", email_settings(mailbox))
        assert hook_channel.settings["url"] == f"{hook.url}/***"
        assert mail_channel.settings["password"] == "***" and mail_channel.settings["username"] == USERNAME
        assert HOOK_TOKEN not in repr(hook_channel) and SMTP_PASSWORD not in repr(mail_channel.to_dict())
        breach(sub)
        sub.evaluate()
        mart.deliver_alerts(backoff=FAST)
        assert len(hook.requests) == 1 and len(mailbox.messages) == 1  # the clear URL works
        with pytest.raises(DeliveryError) as raised:
            sub.channels.test("slack")
        assert HOOK_TOKEN not in str(raised.value) and "/***" in str(raised.value)

        # every text column of the mart, channels and deliveries included: no secret in clear
        dump = mart.sql("SELECT settings::text AS s FROM alert_channels")["s"].str.cat()
        dump += mart.sql("SELECT coalesce(string_agg(last_error, ' '), '') AS e FROM alert_deliveries")["e"][0]
        assert "enc:" in dump
        for secret in (HOOK_TOKEN, SMTP_PASSWORD):
            assert secret not in dump
            assert secret not in caplog.text
            assert secret not in mart.deliveries().to_json()

        # key rotation re-encrypts channel secrets too; they still work under the new key
        new_key = secrets.new_key()
        assert mart.bindings.rotate_key(new_key) == 2  # sealed:url and password
        key_file = secrets.key_file_path(mart.settings)
        key_file.unlink()
        secrets.write_key_file(key_file, new_key)
        hook.always_fail = False
        sub.channels.test("slack")
        sub.channels.test("mail")
    assert hook.taken[-1].path == HOOK_PATH and len(mailbox.messages) == 2
    assert HOOK_TOKEN not in caplog.text and SMTP_PASSWORD not in caplog.text


def test_no_key_no_channel_with_a_secret(mart: openmart.Mart) -> None:
    secrets.key_file_path(mart.settings).unlink()
    sub = subscription(mart)
    with pytest.raises(ValidationError, match="webhook's URL is a secret") as raised:
        sub.channels.add("slack", "webhook", {"url": "https://hooks.example.org" + HOOK_PATH})
    assert raised.value.column == "url" and HOOK_TOKEN not in str(raised.value)
    with mart.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alert_channels")).scalar_one() == 0
