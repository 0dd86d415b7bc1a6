"""One user operation, one transaction: each operation is made to fail at every one of its SQL
statements (an exception in the driver, or the server cutting the connection), and the mart's own
tables are then compared with what they held before. Nothing may have changed.

The fault is real where it can be: ``cut`` terminates the operation's own backend through
``pg_terminate_backend``, which is what a restarted or failed-over server does. ``raise`` stands
for a fault inside the process (a driver bug, an interrupted thread). Both are injected through a
psycopg2 cursor factory, so every statement counts: SQLAlchemy's and the COPYs alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg2.extensions
import pytest
import sqlalchemy as sa

from openmart.api import Mart
from openmart.config import Settings
from openmart.errors import ValidationError
from openmart.mart.engine import create_engine, resolve

# what SQLAlchemy and openmart run when a connection is opened or checked out: not the operation's
_HOUSEKEEPING = (
    "select 1",
    "select pg_catalog.version()",
    "select current_schema()",
    "show ",
    "set search_path",
    "select 1 from pg_namespace",
    "select pg_advisory_xact_lock",
    "create schema if not exists",
)


class InjectedFault(RuntimeError):
    pass


@dataclass
class Fault:
    """Counts the operation's statements; when armed, fails the ``at``-th one."""

    at: int | None = None
    how: str = "raise"
    seen: int = 0
    counting: bool = False

    def arm(self, at: int | None, how: str = "raise") -> None:
        self.at, self.how, self.seen, self.counting = at, how, 0, True

    def disarm(self) -> int:
        self.counting = False
        return self.seen


FAULT = Fault()


class FaultyCursor(psycopg2.extensions.cursor):
    def _step(self, sql: Any) -> None:
        text = (sql.decode() if isinstance(sql, bytes) else str(sql)).strip().lower()
        if not FAULT.counting or text.startswith(_HOUSEKEEPING):
            return
        FAULT.seen += 1
        if FAULT.seen == FAULT.at:
            FAULT.counting = False
            if FAULT.how == "cut":
                super().execute("SELECT pg_terminate_backend(pg_backend_pid())")
            raise InjectedFault(f"injected at statement {FAULT.seen}: {text[:60]}")

    def execute(self, sql: Any, vars: Any = None) -> Any:  # noqa: A002 - psycopg2's own name
        self._step(sql)
        return super().execute(sql, vars)

    def copy_expert(self, sql: Any, file: Any, size: int = 8192) -> Any:
        self._step(sql)
        return super().copy_expert(sql, file, size)


@pytest.fixture
def faulty(database_url: str, schema_name: str, settings: Settings, mart: Mart) -> Iterator[Mart]:
    """A second handle on the test's mart whose every statement goes through FaultyCursor."""
    location = resolve(database_url, settings, schema_name)
    engine = create_engine(location, connect_args={"cursor_factory": FaultyCursor})
    m = Mart(engine, location, settings)
    yield m
    FAULT.disarm()
    m.close()


def snapshot(mart: Mart) -> dict[str, Any]:
    """Everything the mart holds, by its own tables: each table's row count and a digest of its rows."""
    out: dict[str, Any] = {}
    with mart.engine.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s ORDER BY 1"),
            {"s": mart.location.schema},
        ).scalars()
        for table in tables:
            if table == "alembic_version":
                continue
            rows = conn.exec_driver_sql(f'SELECT t::text FROM "{table}" t').scalars().all()
            out[table] = (len(rows), hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest())
    return out


def reference(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "sex": rng.choice(["female", "male"], n),
            "income": rng.normal(50.0, 10.0, n).round(3),
            "label": rng.integers(0, 2, n),
        }
    )


def fail_at_every_step(mart: Mart, faulty: Mart, op: Callable[[], Any], how: str) -> int:
    """Run ``op`` once counting its statements (in a transaction rolled back by a fault after the
    last one), then fail it at each; the mart must be unchanged every time. Returns the count."""
    before = snapshot(mart)
    FAULT.arm(None)
    try:
        with pytest.raises(_Probe), _probe(faulty):
            op()
    finally:
        steps = FAULT.disarm()
    assert steps > 0
    print(f"{how}: {steps} statements")  # shown with -rP
    assert snapshot(mart) == before
    for k in range(1, steps + 1):
        faulty.engine.dispose()  # fresh connections, opened before the fault is armed
        with faulty.engine.connect():
            pass
        FAULT.arm(k, how)
        try:
            with pytest.raises(Exception) as info:
                op()
            assert FAULT.seen >= k, f"step {k}: failed before the fault ({info.value!r})"
        finally:
            FAULT.disarm()
        assert snapshot(mart) == before, f"{how} at statement {k} of {steps} left a change ({info.value!r})"
    return steps


class _Probe(Exception):
    """Raised instead of the commit on the counting run, so it changes nothing."""


class _probe:
    """Turns the counting run's commit into a rollback: SQLAlchemy's commit raises _Probe."""

    def __init__(self, mart: Mart) -> None:
        self.engine = mart.engine

    def __enter__(self) -> None:
        sa.event.listen(self.engine, "commit", self._refuse)

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "commit", self._refuse)

    @staticmethod
    def _refuse(conn: Any) -> None:
        raise _Probe()


@pytest.mark.parametrize("how", ["raise", "cut"])
def test_subscribe_with_reference_is_all_or_nothing(mart: Mart, faulty: Mart, how: str) -> None:
    mart.subscriptions.add("existing", reference=reference(50, 0), label="label", problem_type="binary")

    def op() -> None:
        faulty.subscriptions.add("new", reference=reference(300, 1), label="label", problem_type="binary")

    steps = fail_at_every_step(mart, faulty, op, how)
    assert steps >= 6  # the row, three tables and their indexes, the reference COPY, its profile
    sub = mart.subscriptions.add("new", reference=reference(300, 1), label="label", problem_type="binary")
    assert sub.reference.count() == 300 and sub.reference.profile() is not None


@pytest.mark.parametrize("how", ["raise", "cut"])
def test_reference_replace_is_all_or_nothing(mart: Mart, faulty: Mart, how: str) -> None:
    sub = mart.subscriptions.add("credit", reference=reference(800, 0), label="label", problem_type="binary")
    profile = sub.reference.profile()

    def op() -> None:
        faulty.subscriptions.get("credit").reference.load(reference(500, 2))

    fail_at_every_step(mart, faulty, op, how)
    assert sub.reference.count() == 800 and sub.reference.profile() == profile
    assert sub.reference.load(reference(500, 2)) == 500
    assert sub.reference.count() == 500 and sub.reference.profile() != profile


def test_refused_reference_file_leaves_the_old_reference(mart: Mart) -> None:
    """The issue's case: 800 rows, then a file refused at its last row, used to leave 0."""
    sub = mart.subscriptions.add("credit", reference=reference(800, 0), label="label", problem_type="binary")
    before = snapshot(mart)
    bad = reference(1000, 3)
    bad["income"] = bad["income"].astype(object)
    bad.loc[999, "income"] = "n/a"
    with pytest.raises(ValidationError, match=r"record 999.*'income'"):
        sub.reference.load(bad)
    assert sub.reference.count() == 800
    assert snapshot(mart) == before


def test_refused_reference_leaves_no_half_made_subscription(mart: Mart) -> None:
    bad = reference(100, 4)
    bad.loc[57, "income"] = float("inf")
    before = snapshot(mart)
    with pytest.raises(ValidationError, match=r"record 57.*'income'"):
        mart.subscriptions.add("credit", reference=bad, label="label", problem_type="binary")
    assert snapshot(mart) == before
    assert mart.subscriptions.list() == []


@pytest.mark.parametrize("how", ["raise", "cut"])
def test_feedback_log_is_all_or_nothing(mart: Mart, faulty: Mart, how: str) -> None:
    mart.subscriptions.add("credit", reference=reference(50, 0), label="label", problem_type="binary")
    labelled = reference(400, 5).assign(scoring_id=[f"s-{i}" for i in range(400)])

    def op() -> None:
        faulty.subscriptions.get("credit").feedback.log(labelled)

    fail_at_every_step(mart, faulty, op, how)


def test_feedback_relog_never_doubles(mart: Mart) -> None:
    sub = mart.subscriptions.add("credit", reference=reference(50, 0), label="label", problem_type="binary")
    labelled = reference(300, 5).assign(scoring_id=[f"s-{i}" for i in range(300)])
    assert sub.feedback.log(labelled) == 300
    before = snapshot(mart)
    with pytest.raises(ValidationError, match=r"feedback record 0, column 'scoring_id'.*already stored.*s-0"):
        sub.feedback.log(labelled)
    assert snapshot(mart) == before

    corrected = labelled.iloc[:100].assign(label=1 - labelled["label"].iloc[:100])
    assert sub.feedback.log(corrected, on_duplicate="replace") == 100
    stored = sub.feedback.read().set_index("scoring_id")
    assert len(stored) == 300  # replaced, not added
    expected = pd.concat([corrected, labelled.iloc[100:]]).set_index("scoring_id")["label"]
    assert (stored["label"].astype(int).sort_index() == expected.astype(int).sort_index()).all()

    with pytest.raises(ValidationError, match="on_duplicate 'sometimes': choose refuse or replace"):
        sub.feedback.log(corrected, on_duplicate="sometimes")


def test_feedback_relog_through_the_cli(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ref = tmp_path / "ref.csv"
    reference(60, 0).to_csv(ref, index=False)
    labelled = tmp_path / "labels.csv"
    reference(40, 5).assign(scoring_id=[f"s-{i}" for i in range(40)]).to_csv(labelled, index=False)
    cli("subscribe", "add", "credit", "--reference", str(ref), "--label", "label", "--problem", "binary")
    cli("feedback", "log", "credit", str(labelled))
    again = cli("feedback", "log", "credit", str(labelled), ok=False)
    assert again.exit_code != 0 and "already stored" in again.output and "--replace" in again.output
    cli("feedback", "log", "credit", str(labelled), "--replace")
    listed = cli("records", "credit", "--kind", "feedback", "--limit", "100", "--json")
    assert listed.output.count('"scoring_id"') == 40
