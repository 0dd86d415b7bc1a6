"""The evaluation runner: one transaction for an evaluation's results, made to fail at every step.

Each failure is caused for real where it can be — a trigger in the mart raising at one write
(feedback, measurements, alerts opened, updated or resolved, the final status), a process killed
with SIGKILL, a connection cut with ``pg_terminate_backend`` — and by wrapping a gateway function
to raise right after its write where it cannot (an exception that is not the database's). After
each, the mart's own tables are compared with what they held before: nothing partial is left,
and the evaluation row says ``failed`` (or ``abandoned``) and why.

The design choice checked here (see the runner's docstring): feedback scored by an evaluation is
written in the evaluation's transaction, so a failed evaluation leaves it unscored; when an
evaluation scored feedback its monitors run on its own connection, and see the fresh predictions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.errors import EvaluationBusy, EvaluationFailed
from openmart.evaluation import runner
from openmart.mart import evaluations as evaluations_table

FEATURES = ["sex", "income", "debt"]
WAIT = 30.0  # seconds any condition may take before the test gives up


class Model:
    """A real HTTP deployment (custom provider, ``records`` mode): prediction income > 50. It
    counts requests and records, and can hold each request at a gate until the test opens it."""

    def __init__(self) -> None:
        self.requests = 0
        self.records = 0
        self.arrived = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    model.requests += 1
                    model.records += len(rows)
                model.arrived.set()
                model.gate.wait(WAIT)
                body = json.dumps(
                    {"predictions": [int(r["income"] > 50) for r in rows], "probabilities": [0.75] * len(rows)}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def model() -> Iterator[Model]:
    m = Model()
    yield m
    m.close()


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.uniform(0, 100, n).round(2)
    return pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], n),
            "income": income,
            "debt": rng.uniform(0, 10, n).round(2),
            # the truth agrees with the model four times in five
            "label": np.where(rng.random(n) < 0.8, (income > 50).astype(int), (income <= 50).astype(int)),
        }
    )


def subscribe(mart: openmart.Mart, model: Model, name: str = "credit") -> openmart.api.Subscription:
    mart.bindings.add(name + "_model", "custom", {"url": f"{model.url}/predict", "mode": "records"})
    reference = _frame(200, 0)
    sub = mart.subscriptions.add(
        name, reference=reference, label="label", problem_type="binary", binding=name + "_model", deployment="/predict"
    )
    payload = _frame(300, 1)
    ids = sub.payload.log(payload[FEATURES].assign(prediction=(payload["income"] > 50).astype(int), probability=0.75))
    sub.feedback.log(payload.assign(scoring_id=list(ids)))
    return sub


def log_unscored(sub: openmart.api.Subscription, n: int, seed: int = 2) -> None:
    """Feedback that stands alone: no payload twin, no prediction; the evaluation scores it."""
    sub.feedback.log(_frame(n, seed))


def snapshot(mart: openmart.Mart, sub: openmart.api.Subscription) -> dict[str, Any]:
    """What an evaluation may change, read from the mart's own tables."""
    with mart.engine.connect() as conn:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]

        return {
            "measurements": rows("SELECT * FROM measurements ORDER BY id"),
            "alerts": rows("SELECT * FROM alerts ORDER BY id"),
            "feedback": rows(f'SELECT record_id, prediction, probability FROM "{sub.feedback.table}" ORDER BY 1'),
            "finished": rows("SELECT * FROM evaluations WHERE status = 'finished' ORDER BY id"),
        }


def unscored(mart: openmart.Mart, sub: openmart.api.Subscription) -> int:
    """Standalone feedback (no scoring id, so no payload twin) still without a prediction."""
    sql = f'SELECT count(*) AS n FROM "{sub.feedback.table}" WHERE prediction IS NULL AND scoring_id IS NULL'
    return int(mart.sql(sql)["n"][0])


def last_evaluation(sub: openmart.api.Subscription) -> evaluations_table.EvaluationRecord:
    return sub.evaluations(limit=1)[0]


def prepared(mart: openmart.Mart, model: Model) -> openmart.api.Subscription:
    """A subscription after one evaluation that opened alerts on accuracy and precision; then
    thresholds such that the next evaluation updates the accuracy alert (breached again),
    resolves the precision one (passes) and opens one on recall, and unscored feedback for it."""
    sub = subscribe(mart, model)
    sub.monitors.enable("quality", thresholds=["accuracy=0.99", "precision=0.99", "roc_auc=0.1"], min_records=10)
    first = sub.evaluate()
    assert {m.metric for m in first.breaches} == {"accuracy", "precision"}
    sub.monitors.enable(
        "quality", thresholds=["accuracy=0.99", "precision=0.01", "recall=0.99", "roc_auc=0.1"], min_records=10
    )
    log_unscored(sub, 120)
    return sub


# -- a monitor, the runner, a gateway write: any exception ------------------------------------------


def test_a_finished_evaluation_does_all_of_it(mart: openmart.Mart, model: Model) -> None:
    """The reference run for the failures below: what the evaluation after `prepared` does."""
    sub = prepared(mart, model)
    result = sub.evaluate()
    opened = mart.alerts(status="all")
    by_metric = {r.metric: r for r in opened.itertuples()}
    assert by_metric["accuracy"].status == "open" and by_metric["accuracy"].occurrences == 2
    assert by_metric["precision"].status == "resolved" and by_metric["precision"].resolved_by == "evaluation"
    assert by_metric["recall"].status == "open" and by_metric["recall"].occurrences == 1
    assert result.alerts.resolved == (by_metric["precision"].id,)
    assert result.scored_feedback == 120 and unscored(mart, sub) == 0
    row = last_evaluation(sub)
    assert row.status == "finished" and row.records == 300 and row.scored_feedback == 120 and row.error is None
    # the monitors saw the fresh predictions: 300 linked + 120 just scored
    assert next(o for o in result.outcomes if o.kind == "quality").records == 420


FAULTS = {
    # raise: the statement fails; cut: the evaluation's own connection is terminated at that write
    "raise": "RAISE EXCEPTION 'injected fault on %%', TG_TABLE_NAME;",
    "cut": "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(60);",
}


def _trigger(mart: openmart.Mart, table: str, event: str, when: str | None, fault: str) -> None:
    """A real fault in the mart: a trigger that fires at one write."""
    with mart.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {FAULTS[fault]} RETURN NEW; END $$"
        )
        conn.exec_driver_sql(
            f'CREATE TRIGGER injected_fault BEFORE {event} ON "{table}" FOR EACH ROW '
            + (f"WHEN ({when}) " if when else "")
            + "EXECUTE FUNCTION injected_fault()"
        )


def _untrigger(mart: openmart.Mart, table: str) -> None:
    with mart.engine.begin() as conn:
        conn.exec_driver_sql(f'DROP TRIGGER injected_fault ON "{table}"')


DB_STEPS = {
    "feedback scored": ("{feedback}", "UPDATE", None, "scoring feedback"),
    "measurements": ("measurements", "INSERT", None, "storing results"),
    "alert opened": ("alerts", "INSERT", None, "storing results"),
    "alert breached again": ("alerts", "UPDATE", "NEW.occurrences > OLD.occurrences", "storing results"),
    "alert resolved": ("alerts", "UPDATE", "NEW.status = 'resolved'", "storing results"),
    "evaluation finished": ("evaluations", "UPDATE", "NEW.status = 'finished'", "storing results"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("step", list(DB_STEPS))
def test_a_database_fault_at_any_write_leaves_nothing(mart: openmart.Mart, model: Model, step: str, fault: str) -> None:
    sub = prepared(mart, model)
    table, event, when, phase = DB_STEPS[step]
    table = table.format(feedback=sub.feedback.table)
    before = snapshot(mart, sub)
    _trigger(mart, table, event, when, fault)
    with pytest.raises(EvaluationFailed, match=f"while {phase}") as info:
        sub.evaluate()
    assert snapshot(mart, sub) == before
    assert unscored(mart, sub) == 120  # the feedback it scored went with it
    row = last_evaluation(sub)
    assert row.id == info.value.evaluation_id and row.status == "failed" and row.finished_at is not None
    assert row.scored_feedback == 0 and row.error_message.startswith(f"while {phase}: ")
    if fault == "raise":
        assert row.error_type == "RaiseException" and "injected fault" in row.error_message
    else:  # the connection was terminated under the evaluation; it was recorded on another one
        assert row.error_type in ("OperationalError", "AdminShutdown") and "terminat" in row.error_message
    # the mart is as it was: the next evaluation does everything the failed one would have
    _untrigger(mart, table)
    assert sub.evaluate().scored_feedback == 120
    assert {(r.metric, r.status, r.occurrences) for r in mart.alerts(status="all").itertuples()} == {
        ("accuracy", "open", 2),
        ("precision", "resolved", 1),
        ("recall", "open", 1),
    }


GATEWAY_STEPS = [
    ("openmart.mart.feedback", "store_predictions"),
    ("openmart.mart.evaluations", "add_measurements"),
    ("openmart.mart.alerts", "record_breaches"),
    ("openmart.mart.alerts", "resolve_passing"),
    ("openmart.mart.evaluations", "finish"),
]


@pytest.mark.parametrize(("module", "name"), GATEWAY_STEPS, ids=[n for _, n in GATEWAY_STEPS])
def test_an_exception_after_any_write_leaves_nothing(
    mart: openmart.Mart, model: Model, monkeypatch: pytest.MonkeyPatch, module: str, name: str
) -> None:
    """Not the database's error: the write is done, then Python raises (a bug, an interrupt)."""
    sub = prepared(mart, model)
    before = snapshot(mart, sub)
    target = sys.modules[module]
    real = getattr(target, name)

    def written_then_raise(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise KeyError(f"injected after {name}")

    monkeypatch.setattr(target, name, written_then_raise)
    with pytest.raises(EvaluationFailed, match=f"injected after {name}") as info:
        sub.evaluate()
    assert isinstance(info.value.__cause__, KeyError)
    assert snapshot(mart, sub) == before
    assert unscored(mart, sub) == 120
    row = last_evaluation(sub)
    assert row.status == "failed" and row.error_type == "KeyError" and f"injected after {name}" in row.error_message


def test_a_monitor_raising_anything_fails_the_evaluation(
    mart: openmart.Mart, model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = prepared(mart, model)
    sub.monitors.enable("drift")
    before = snapshot(mart, sub)
    from openmart.monitors import quality

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("injected in quality")

    monkeypatch.setattr(quality, "compute", broken)
    with pytest.raises(EvaluationFailed, match="quality monitor raised ZeroDivisionError") as info:
        sub.evaluate()
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    # drift's measurements are not kept either: an evaluation stores all of its results or none
    assert snapshot(mart, sub) == before
    row = last_evaluation(sub)
    assert row.status == "failed" and row.error_type == "ZeroDivisionError"
    assert row.error_message == "quality monitor raised ZeroDivisionError: injected in quality"
    assert row.summary["quality"]["status"] == "error" and row.summary["drift"]["status"] != "error"


def test_an_interrupt_is_recorded_and_raised_as_it_is(
    mart: openmart.Mart, model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = prepared(mart, model)
    before = snapshot(mart, sub)
    from openmart.mart import alerts

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(alerts, "record_breaches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sub.evaluate()
    assert snapshot(mart, sub) == before
    row = last_evaluation(sub)
    assert row.status == "failed" and row.error_type == "KeyboardInterrupt"


# -- records, bulk scoring -----------------------------------------------------------------------------


def test_records_are_counted_without_drift(mart: openmart.Mart, model: Model) -> None:
    sub = subscribe(mart, model)
    sub.monitors.enable("quality", min_records=10)
    assert sub.evaluate().records == 300
    assert last_evaluation(sub).records == 300
    sub.evaluate(last=50)
    assert last_evaluation(sub).records == 50
    sub.evaluate(since="2999-01-01")
    assert last_evaluation(sub).records == 0


def test_feedback_is_scored_once_in_bulk(mart: openmart.Mart, model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "SCORING_BATCH", 1000)
    sub = subscribe(mart, model)
    sub.monitors.enable("quality", min_records=10)
    log_unscored(sub, 2500)
    # count UPDATE statements on the feedback table from inside PostgreSQL
    with mart.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE update_statements (n int)")
        conn.exec_driver_sql(
            "CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO update_statements VALUES (1); RETURN NULL; END $$"
        )
        conn.exec_driver_sql(
            f'CREATE TRIGGER count_update AFTER UPDATE ON "{sub.feedback.table}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION count_update()"
        )
    result = sub.evaluate()
    assert result.scored_feedback == 2500 and unscored(mart, sub) == 0
    assert model.requests == 3 and model.records == 2500  # one scoring call per batch of 1000
    assert int(mart.sql("SELECT count(*) AS n FROM update_statements")["n"][0]) == 1
    assert last_evaluation(sub).summary["feedback_scoring"] == {"records": 2500, "scoring_calls": 3}
    stored = mart.sql(f'SELECT income, prediction FROM "{sub.feedback.table}" WHERE scoring_id IS NULL')
    assert ((stored["income"] > 50).astype(float) == stored["prediction"]).all()
    # scored once: the next evaluation finds nothing to score
    assert sub.evaluate().scored_feedback == 0 and model.requests == 3


# -- concurrent evaluations --------------------------------------------------------------------------------


@contextmanager
def running_in_thread(work: Callable[[], Any]) -> Iterator[dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        thread.join(WAIT)
        assert not thread.is_alive()


def test_evaluations_of_a_subscription_take_turns(mart: openmart.Mart, model: Model) -> None:
    sub = subscribe(mart, model)
    sub.monitors.enable("quality", min_records=10)
    log_unscored(sub, 200)
    model.gate.clear()  # the first evaluation holds inside its scoring call
    waiting = threading.Event()
    heard: list[str] = []

    def second_progress(message: str) -> None:
        heard.append(message)
        if message.startswith("waiting for"):
            waiting.set()

    with running_in_thread(sub.evaluate) as first:
        assert model.arrived.wait(WAIT)
        running = evaluations_table.running
        with mart.engine.connect() as conn:
            busy = running(conn, sub.id)
        assert busy is not None
        with pytest.raises(EvaluationBusy, match=f"evaluation {busy.id} .* is running"):
            sub.evaluate(wait=False)
        with running_in_thread(lambda: sub.evaluate(progress=second_progress)) as second:
            assert waiting.wait(WAIT)
            assert model.requests == 1  # the second has not scored anything: it waits
            model.gate.set()
    assert "error" not in first and "error" not in second, (first, second)
    assert first["result"].scored_feedback == 200 and second["result"].scored_feedback == 0
    assert model.records == 200  # each feedback record scored once
    assert heard[0] == f"waiting for evaluation {busy.id} (running since {busy.started_at:%Y-%m-%d %H:%M:%S}, " + (
        f"{busy.runner}) of 'credit' to finish"
    )
    statuses = [e.status for e in sub.evaluations()]
    assert statuses == ["finished", "finished"]


# -- a killed process, a cut connection ---------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
import openmart
from openmart.config import Settings
url, schema, data_dir = sys.argv[1:4]
settings = Settings(database_url=None, data_dir=Path(data_dir), secret_key=None)
openmart.connect(url, schema=schema, settings=settings).subscriptions.get("credit").evaluate()
"""


def _wait_for_lock_free(mart: openmart.Mart, sub_id: int) -> None:
    """Blocks until no session holds the subscription's evaluation lock (PostgreSQL does the waiting)."""
    with mart.engine.connect() as conn:
        key = evaluations_table.lock_key(conn, sub_id)
        conn.exec_driver_sql(f"SET lock_timeout = '{int(WAIT)}s'")
        evaluations_table.lock(conn, key)
        evaluations_table.unlock(conn, key)
        conn.commit()


def test_a_killed_evaluation_is_found_abandoned(
    mart: openmart.Mart, model: Model, database_url: str, schema_name: str, settings: Any
) -> None:
    sub = prepared(mart, model)
    before = snapshot(mart, sub)
    model.gate.clear()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, database_url, schema_name, str(settings.data_dir)], env=dict(os.environ)
    )
    try:
        assert model.arrived.wait(WAIT)  # mid-evaluation: its transaction is open, its scoring call out
        with mart.engine.connect() as conn:
            running = evaluations_table.running(conn, sub.id)
        assert running is not None and running.runner == f"{os.uname().nodename}:{child.pid}"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(WAIT) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    _wait_for_lock_free(mart, sub.id)
    assert last_evaluation(sub).status == "abandoned"  # listing swept it
    row = last_evaluation(sub)
    assert row.id == running.id and row.error_type == "Abandoned"
    assert row.error_message == evaluations_table.ABANDONED_REASON and row.finished_at is not None
    assert snapshot(mart, sub) == before and unscored(mart, sub) == 120
    # the next evaluation runs as if the killed one had never started
    model.gate.set()
    assert sub.evaluate().scored_feedback == 120


def test_an_abandoned_evaluation_is_swept_by_the_next_one(
    mart: openmart.Mart, model: Model, database_url: str, schema_name: str, settings: Any
) -> None:
    sub = prepared(mart, model)
    model.gate.clear()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, database_url, schema_name, str(settings.data_dir)], env=dict(os.environ)
    )
    assert model.arrived.wait(WAIT)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(WAIT)
    model.gate.set()
    result = sub.evaluate()  # waits for the dead session's lock to go, then sweeps
    rows = sub.evaluations(limit=2)
    assert [r.status for r in rows] == ["finished", "abandoned"] and rows[0].id == result.evaluation_id


def test_a_connection_cut_mid_evaluation(mart: openmart.Mart, model: Model) -> None:
    """``pg_terminate_backend`` on the evaluation's own connection while its scoring call is out:
    the transaction is gone with it, and the evaluation is recorded failed on another connection."""
    sub = prepared(mart, model)
    before = snapshot(mart, sub)
    model.gate.clear()
    with running_in_thread(sub.evaluate) as box:
        assert model.arrived.wait(WAIT)
        with mart.engine.connect() as conn:
            running = evaluations_table.running(conn, sub.id)
            assert running is not None and running.backend_pid
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({running.backend_pid})").scalar()
        model.gate.set()
    assert isinstance(box.get("error"), EvaluationFailed), box
    assert snapshot(mart, sub) == before and unscored(mart, sub) == 120
    row = last_evaluation(sub)
    assert row.id == running.id and row.status == "failed"
    assert row.error_type in ("OperationalError", "AdminShutdown")
    assert "while scoring feedback" in row.error_message
    assert sub.evaluate().scored_feedback == 120
