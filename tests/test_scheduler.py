"""The scheduler: due runs claimed atomically (each slot once, even with two ``openmart serve``
processes on one mart), missed slots run once after downtime, a failed run does not stop the
others, and the manual triggers (Python, CLI, REST).

Time is controlled where the logic is tested (``run_due(now=...)``); where real services run,
the test polls the mart for its condition with a deadline, and asserts only on what the mart
recorded (never on how long anything took)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.errors import ValidationError
from openmart.mart import schedules
from openmart.monitors.schedule import defaults, describe, parse_every
from tests.service_support import running_service

FEATURES = ["sex", "income", "debt"]
DEADLINE = 300.0  # seconds a condition may take on a loaded machine before the test gives up


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.uniform(0, 100, n).round(2)
    return pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], n),
            "income": income,
            "debt": rng.uniform(0, 10, n).round(2),
            "label": np.where(rng.random(n) < 0.8, (income > 50).astype(int), (income <= 50).astype(int)),
        }
    )


def subscribe(mart: openmart.Mart, name: str = "credit", *kinds: str) -> openmart.api.Subscription:
    """Labelled payload (predictions stored, no deployment needed) and the monitors ``kinds``."""
    sub = mart.subscriptions.add(name, reference=_frame(200, 0), label="label", problem_type="binary")
    payload = _frame(200, 1)
    ids = sub.payload.log(payload[FEATURES].assign(prediction=(payload["income"] > 50).astype(int), probability=0.75))
    sub.feedback.log(payload.assign(scoring_id=list(ids)))
    for kind in kinds or ("quality",):
        sub.monitors.enable(kind, min_records=10)
    return sub


def next_run(mart: openmart.Mart, sub: str, kind: str) -> datetime:
    found = next(s for s in mart.schedules(sub) if s.kind == kind)
    assert found.next_run_at is not None
    return found.next_run_at


def set_next_run(mart: openmart.Mart, at: datetime | str) -> None:
    """Move every monitor's next run (the clock of a test, not of the scheduler)."""
    with mart.engine.begin() as conn:
        if isinstance(at, str):
            conn.exec_driver_sql(f"UPDATE monitors SET next_run_at = {at} WHERE next_run_at IS NOT NULL")
        else:
            conn.exec_driver_sql("UPDATE monitors SET next_run_at = %s WHERE next_run_at IS NOT NULL", (at,))


def evaluations(mart: openmart.Mart) -> pd.DataFrame:
    return mart.sql(
        "SELECT e.id, s.name AS subscription, e.status, e.window_start, e.window_end, e.runner, e.summary "
        "FROM evaluations e JOIN subscriptions s ON s.id = e.subscription_id ORDER BY e.id"
    )


def poll(condition: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        time.sleep(0.1)  # the polling interval while waiting for the condition
    raise AssertionError(f"{what}: not within {deadline:g} s")


# -- periods ---------------------------------------------------------------------------------------


def test_periods_parse_and_defaults() -> None:
    assert [parse_every(v) for v in (3600, "90s", "15m", "1h", "3h", "1d", "1h30m", "7", None, "OFF")] == [
        3600,
        90,
        900,
        3600,
        10800,
        86400,
        5400,
        7,
        "default",
        "off",
    ]
    for bad in (0, -5, 1.5, "1x", "h", "", True, "1h 2"):
        with pytest.raises(ValidationError, match="expected a period"):
            parse_every(bad)
    assert describe(5400) == "1h30m" and describe(2) == "2s" and describe(None) == "off"
    assert {k: defaults()[k] for k in ("quality", "fairness", "drift")} == {
        "quality": 3600,
        "fairness": 3600,
        "drift": 10800,
    }
    assert "explainability" not in defaults()


def test_enabling_schedules_and_schedule_changes_it(mart: openmart.Mart) -> None:
    sub = subscribe(mart, "credit", "quality", "drift")
    shown = {s.kind: s.to_dict() for s in mart.schedules()}
    assert shown["quality"]["every"] == "1h" and shown["quality"]["default"] is True
    assert shown["drift"]["every"] == "3h" and shown["drift"]["next_run_at"]
    assert sub.monitors.get("quality").to_dict()["schedule"]["every"] == "1h"
    first = next_run(mart, "credit", "quality")
    sub.monitors.enable("quality", min_records=20)  # reconfiguring keeps the schedule
    assert next_run(mart, "credit", "quality") == first
    own = sub.monitors.schedule("quality", "2h").to_dict()
    assert own["every"] == "2h" and own["every_seconds"] == 7200 and own["default"] is False
    assert sub.monitors.schedule("quality", "off").to_dict()["scheduled"] is False
    assert sub.monitors.schedule("quality", "default").to_dict()["every"] == "1h"
    sub.monitors.disable("drift")
    assert not next(s for s in mart.schedules("credit") if s.kind == "drift").scheduled
    before = next_run(mart, "credit", "drift")
    sub.monitors.enable("drift")  # re-enabled: its clock starts again
    assert next_run(mart, "credit", "drift") > before
    with pytest.raises(openmart.errors.NotFound, match="no fairness monitor"):
        sub.monitors.schedule("fairness", "1h")


# -- claiming, with a controllable now --------------------------------------------------------------


def test_claims_each_slot_once_with_a_controllable_now(mart: openmart.Mart) -> None:
    subscribe(mart, "credit", "quality", "drift")
    sub = mart.subscriptions.get("credit")
    sub.monitors.schedule("quality", 60)
    sub.monitors.schedule("drift", 60)
    t0 = next_run(mart, "credit", "quality")
    set_next_run(mart, t0)  # both due at the same slot
    assert mart.run_due(now=t0 - timedelta(seconds=1)) == []
    runs = mart.run_due(now=t0)
    # due together, but quality looks at every record up to the slot and drift at its period:
    # one evaluation per window, each ending at the slot
    assert [(r.kinds, r.slot, r.missed, r.status) for r in runs] == [
        (("quality",), t0, 0, "finished"),
        (("drift",), t0, 0, "finished"),
    ]
    assert mart.run_due(now=t0) == []  # claimed: nothing is due at t0 any more
    assert next_run(mart, "credit", "quality") == t0 + timedelta(seconds=60)
    later = mart.run_due(now=t0 + timedelta(seconds=90))
    assert [(r.slot, r.missed) for r in later] == [(t0 + timedelta(seconds=60), 0)] * 2
    rows = evaluations(mart)
    assert list(rows["status"]) == ["finished"] * 4
    ends = [pd.Timestamp(t0)] * 2 + [pd.Timestamp(t0 + timedelta(seconds=60))] * 2
    assert [pd.Timestamp(w) for w in rows["window_end"]] == ends
    starts = [None if pd.isna(w) else pd.Timestamp(w) for w in rows["window_start"]]
    period = pd.Timedelta(seconds=60)
    assert starts == [None, ends[1] - period, None, ends[3] - period]  # drift: the period; quality: all history
    assert [set(s) & {"quality", "drift"} for s in rows["summary"]] == [{"quality"}, {"drift"}] * 2


def test_a_claim_is_atomic_between_two_claimers(mart: openmart.Mart) -> None:
    """Two claimers at the same instant: the second waits for the first's claim to commit, then
    finds the slot taken."""
    subscribe(mart)
    t0 = next_run(mart, "credit", "quality")
    first = mart.engine.connect()
    claimed_first = schedules.claim_next(first, t0, defaults())  # holds the claim lock, not committed yet
    second: list[Any] = []
    thread = threading.Thread(target=lambda: second.append(_claim_in_own_transaction(mart, t0)))
    thread.start()
    poll(lambda: _waiting_for_advisory_lock(mart), "the second claimer waits for the first")
    first.commit()
    first.close()
    thread.join(60)
    assert [c.kind for c in claimed_first] == ["quality"] and second == [[]]


def _claim_in_own_transaction(mart: openmart.Mart, at: datetime) -> list[Any]:
    with mart.engine.begin() as conn:
        return schedules.claim_next(conn, at, defaults())


def _waiting_for_advisory_lock(mart: openmart.Mart) -> bool:
    waiting = mart.sql("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    return int(waiting["n"][0]) > 0


def test_missed_runs_after_downtime_run_once(mart: openmart.Mart) -> None:
    sub = subscribe(mart)
    sub.monitors.schedule("quality", 60)
    set_next_run(mart, "now() - interval '10 minutes 5 seconds'")  # eleven slots went by unrun
    runs = mart.run_due()
    assert len(runs) == 1 and runs[0].status == "finished" and runs[0].missed == 10
    assert len(evaluations(mart)) == 1
    in_future = mart.sql("SELECT next_run_at > now() AS ok, next_run_at - now() AS ahead FROM monitors")
    assert bool(in_future["ok"][0]) and in_future["ahead"][0] <= pd.Timedelta(seconds=60)
    assert mart.run_due() == []


def test_a_failed_scheduled_run_is_recorded_and_the_others_run(mart: openmart.Mart) -> None:
    subscribe(mart, "broken")
    subscribe(mart, "credit")
    broken = mart.subscriptions.get("broken").id
    with mart.engine.begin() as conn:  # a real fault in the mart: storing broken's measurements fails
        conn.exec_driver_sql(
            "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN IF NEW.subscription_id = {broken} THEN RAISE EXCEPTION 'injected fault'; END IF; "
            "RETURN NEW; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER injected_fault BEFORE INSERT ON measurements FOR EACH ROW EXECUTE FUNCTION injected_fault()"
        )
    set_next_run(mart, "now()")
    runs = {r.subscription: r for r in mart.run_due()}
    assert runs["broken"].status == "failed" and "injected fault" in (runs["broken"].error or "")
    assert runs["credit"].status == "finished"
    statuses = dict(zip(evaluations(mart)["subscription"], evaluations(mart)["status"], strict=True))
    assert statuses == {"broken": "failed", "credit": "finished"}


# -- two services on one mart ----------------------------------------------------------------------


def test_two_services_run_each_due_slot_once(
    mart: openmart.Mart, database_url: str, schema_name: str, tmp_path: Path
) -> None:
    subscribe(mart, "credit", "quality", "drift")
    subscribe(mart, "churn", "quality")
    mart.subscriptions.get("credit").monitors.schedule("quality", 2)
    mart.subscriptions.get("credit").monitors.schedule("drift", 4)
    mart.subscriptions.get("churn").monitors.schedule("quality", 3)
    wanted = 16
    args = ("--scheduler", "--scheduler-interval", "0.2", "--no-auth")
    with (
        running_service(database_url, schema_name, tmp_path, *args) as one,
        running_service(database_url, schema_name, tmp_path, *args) as two,
    ):
        poll(lambda: len(evaluations(mart)) >= wanted, f"{wanted} scheduled evaluations")
    log = one.output() + two.output()
    rows = evaluations(mart)
    assert set(rows["status"]) == {"finished"}, (rows[["status"]], log)
    slots: Counter[tuple[str, str, pd.Timestamp]] = Counter(
        (r.subscription, kind, pd.Timestamp(r.window_end))
        for r in rows.itertuples()
        for kind in ("quality", "drift")
        if kind in r.summary
    )
    doubled = {slot: n for slot, n in slots.items() if n > 1}
    assert not doubled, doubled  # no monitor ran twice for one slot
    # a lone monitor's evaluations end at slots on its grid (one period apart, or whole periods
    # when a slot passed while an earlier evaluation ran); credit's two monitors share a window
    churn = sorted(end for s, k, end in slots if s == "churn")
    assert len(churn) >= 2 and all((end - churn[0]).total_seconds() % 3 == 0 for end in churn), churn
    assert {k for s, k, _ in slots if s == "credit"} == {"quality", "drift"}
    skipped = sum(round((b - a).total_seconds() / 3) - 1 for a, b in zip(churn, churn[1:], strict=False))
    print(
        f"evaluations {len(rows)}; runs per (monitor, slot): {dict(Counter(slots.values()))}; "
        f"by process: {dict(Counter(rows['runner']))}; churn slots run {len(churn)}, passed unrun {skipped}"
    )


# -- manual triggers: CLI and REST -----------------------------------------------------------------


def test_cli_schedule_schedules_and_run_due(cli, mart: openmart.Mart) -> None:  # type: ignore[no-untyped-def]
    subscribe(mart)
    set_out = cli("monitor", "schedule", "credit", "quality", "--every", "90s", "--json")
    assert '"every": "1m30s"' in set_out.stdout and '"every_seconds": 90' in set_out.stdout
    listed = cli("monitor", "schedules", "--json")
    assert '"kind": "quality"' in listed.stdout and '"default": false' in listed.stdout
    assert "1m30s" in cli("monitor", "schedules", "credit").stdout
    assert "1m30s" in cli("monitor", "list", "credit").stdout
    bad = cli("monitor", "schedule", "credit", "quality", "--every", "soon", ok=False)
    assert bad.exit_code == 2 and "expected a period" in bad.stderr
    missing = cli("monitor", "schedule", "credit", "fairness", "--every", "1h", ok=False)
    assert missing.exit_code == 1 and "no fairness monitor" in missing.stderr
    assert "no monitor is due" in cli("monitor", "run-due").stderr
    set_next_run(mart, "now()")
    ran = cli("monitor", "run-due", "--json")
    assert '"status": "finished"' in ran.stdout and '"kinds": [\n      "quality"' in ran.stdout
    assert len(evaluations(mart)) == 1


def test_rest_schedules_and_triggers(mart: openmart.Mart, database_url: str, schema_name: str, tmp_path: Path) -> None:
    subscribe(mart, "credit", "quality", "drift")
    read_key = mart.keys.create("reader", "read")[1]
    write_key = mart.keys.create("writer", "write")[1]
    with (
        running_service(database_url, schema_name, tmp_path) as svc,
        svc.client(read_key) as reader,
        svc.client(write_key) as writer,
    ):
        every = reader.get("/api/v1/schedules").json()
        assert {(s["subscription"], s["kind"], s["every"]) for s in every} == {
            ("credit", "quality", "1h"),
            ("credit", "drift", "3h"),
        }
        assert reader.get("/api/v1/schedules/credit").status_code == 200
        assert reader.get("/api/v1/schedules/nope").status_code == 404
        assert reader.put("/api/v1/schedules/credit/drift", json={"every": "6h"}).status_code == 403
        assert reader.post("/api/v1/schedules/credit/run").status_code == 403
        assert reader.post("/api/v1/schedules/run-due").status_code == 403
        put = writer.put("/api/v1/schedules/credit/drift", json={"every": "6h"})
        assert put.status_code == 200 and put.json()["every_seconds"] == 21600
        bad = writer.put("/api/v1/schedules/credit/drift", json={"every": "often"})
        assert bad.status_code == 422 and "expected a period" in bad.json()["error"]["message"]
        assert next(s for s in mart.schedules("credit") if s.kind == "drift").every_seconds == 21600
        now = writer.post("/api/v1/schedules/credit/run", json={"kinds": ["quality"]})
        assert now.status_code == 200 and list(now.json()["monitors"]) == ["quality"]
        refused = writer.post("/api/v1/schedules/credit/run", json={"kinds": ["fairness"]})
        assert refused.status_code == 422 and "no enabled fairness monitor" in refused.json()["error"]["message"]
        assert writer.post("/api/v1/schedules/run-due").json() == []
        set_next_run(mart, "now()")
        due = writer.post("/api/v1/schedules/run-due").json()
        assert [(d["kinds"], d["status"]) for d in due] == [(["quality"], "finished"), (["drift"], "finished")]
    assert len(evaluations(mart)) == 3  # the manual run and the due ones (one per window)
