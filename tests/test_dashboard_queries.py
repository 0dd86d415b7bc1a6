"""The dashboard's reads (openmart.mart.dashboard) and the ``traffic`` table the triggers keep.

``traffic`` is compared with a GROUP BY over the payload table itself after every kind of write:
COPY (payload.log), a refused batch rolled back, replaced records, deletes, moved timestamps, a
client whose search_path is elsewhere, two writers at once, and migration 0008 on a mart that
already holds payload."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command

import openmart
from openmart.errors import ValidationError
from openmart.mart import dashboard, migrate
from openmart.mart.dashboard import ChipStatus
from openmart.mart.record_store import insert_idempotent
from openmart.mart.records import RecordKind, prepare


def _frame(n: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(shift, 1, n), "b": rng.normal(size=n)})


def _subscription(mart: openmart.Mart, name: str = "s") -> openmart.api.Subscription:
    ref = _frame(300, seed=1)
    return mart.subscriptions.add(
        name, reference=ref.assign(label=(ref["a"] > 0).astype(int)), label="label", problem_type="binary"
    )


def _payload(frame: pd.DataFrame, start: datetime | None = None) -> pd.DataFrame:
    out = frame.assign(prediction=(frame["a"] > 0).astype(int), probability=0.5)
    if start is not None:  # spread over hours: one record every 7 minutes
        out["scoring_timestamp"] = [start + timedelta(minutes=7 * i) for i in range(len(out))]
    return out


def _truth(mart: openmart.Mart, sub: openmart.api.Subscription) -> dict[datetime, int]:
    table = sub.context.record.payload_table
    with mart.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT date_trunc('hour', scoring_timestamp, 'UTC'), count(*) FROM \"{table}\" GROUP BY 1"
        ).all()
    return {h: int(n) for h, n in rows}


def _traffic(mart: openmart.Mart, sub: openmart.api.Subscription) -> dict[datetime, int]:
    with mart.engine.connect() as conn:
        return dict(dashboard.traffic(conn, sub.id))


def test_traffic_follows_every_write(mart: openmart.Mart, database_url: str) -> None:
    sub = _subscription(mart)
    start = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    sub.payload.log(_payload(_frame(100), start))  # 10:30 to 22:03: 13 hours
    assert _traffic(mart, sub) == _truth(mart, sub) and sum(_truth(mart, sub).values()) == 100
    assert len(_truth(mart, sub)) == 13

    # a range reads only its hours
    with mart.engine.connect() as conn:
        window = dashboard.traffic(conn, sub.id, start=start, end=start + timedelta(hours=2))
    # hours that start in [10:30, 12:30): 10:00 starts before it
    assert [h for h, _ in window] == [datetime(2026, 3, 1, 11, tzinfo=UTC), datetime(2026, 3, 1, 12, tzinfo=UTC)]

    # a batch refused at its last record: rolled back, traffic with it
    bad = _payload(_frame(50, seed=2), start).astype({"a": object})
    bad.loc[49, "a"] = "not a number"
    with pytest.raises(ValidationError):
        sub.payload.log(bad)
    assert sum(_traffic(mart, sub).values()) == 100

    # the spool's idempotent insert (replays): what is stored already is skipped, and not counted
    stored = sub.payload.read().head(10)
    fresh = _payload(_frame(5, seed=3), start + timedelta(days=1)).assign(scoring_id=[f"new-{i}" for i in range(5)])
    replay = pd.concat([stored[fresh.columns], fresh], ignore_index=True)
    arrow, _ = prepare(RecordKind.PAYLOAD, replay, sub.context.record.schema)
    raw = mart.engine.raw_connection()
    try:
        assert insert_idempotent(raw, sub.context.record.payload_table, arrow) == 5
        raw.commit()
    finally:
        raw.close()
    assert _traffic(mart, sub) == _truth(mart, sub) and sum(_traffic(mart, sub).values()) == 105

    # deletes and moved timestamps, from a client whose search_path is not the mart's schema
    table = f'"{mart.location.schema}"."{sub.context.record.payload_table}"'
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET search_path TO public")
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE scoring_id IN (SELECT scoring_id FROM {table} LIMIT 7)")
            conn.exec_driver_sql(
                f"UPDATE {table} SET scoring_timestamp = scoring_timestamp - interval '3 days' "
                f"WHERE scoring_id IN (SELECT scoring_id FROM {table} LIMIT 20)"
            )
            conn.exec_driver_sql(
                f"INSERT INTO {table} (scoring_id, a, b, prediction, probability) VALUES ('by-hand', 1, 2, 1, 0.5)"
            )
    finally:
        engine.dispose()
    traffic = {h: n for h, n in _traffic(mart, sub).items() if n}
    assert traffic == _truth(mart, sub) and sum(traffic.values()) == 99


def test_two_writers_at_once_lose_no_count(mart: openmart.Mart) -> None:
    sub = _subscription(mart)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        try:
            barrier.wait(timeout=120)
            for k in range(5):
                frame = _payload(_frame(40, seed=seed * 10 + k))
                frame["scoring_timestamp"] = now  # every writer in the same hour: one traffic row
                sub.payload.log(frame)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _traffic(mart, sub) == _truth(mart, sub) == {now: 4 * 5 * 40}


def test_migration_0008_counts_payload_already_stored(mart: openmart.Mart) -> None:
    sub = _subscription(mart)
    sub.payload.log(_payload(_frame(60), datetime(2026, 1, 5, 8, tzinfo=UTC)))
    schema = mart.location.schema
    command.downgrade(migrate.alembic_config(mart.engine, schema), "0007")
    with mart.engine.begin() as conn:
        triggers = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND t.tgname LIKE 'openmart_traffic%%'"
        )
        assert triggers.scalar_one() == 0
    sub.payload.log(_payload(_frame(30, seed=5), datetime(2026, 1, 6, 8, tzinfo=UTC)))  # no trigger at 0007
    mart.upgrade()
    migrate.check(mart.engine, schema)
    assert _traffic(mart, sub) == _truth(mart, sub) and sum(_truth(mart, sub).values()) == 90
    sub.payload.log(_payload(_frame(5, seed=6)))  # and the triggers count from here on
    assert _traffic(mart, sub) == _truth(mart, sub)


def test_overview_statuses_and_figures(mart: openmart.Mart) -> None:
    drifted = _subscription(mart, "drifted")
    steady = _subscription(mart, "steady")
    quiet = _subscription(mart, "quiet")
    drifted.payload.log(_payload(_frame(300, seed=7, shift=2.0)))
    steady.payload.log(_payload(_frame(300, seed=8)))
    quiet.payload.log(_payload(_frame(20, seed=9)))
    old = _payload(_frame(30, seed=10), datetime.now(UTC) - timedelta(days=3))
    steady.payload.log(old)  # scored three days ago: not in the last day's traffic
    for sub in (drifted, steady, quiet):
        sub.monitors.enable("drift", min_records=50)
    steady.monitors.enable("quality", min_records=10)  # no feedback: no data
    drifted.evaluate()
    steady.evaluate()
    with mart.engine.connect() as conn:
        rows = {o.name: o for o in dashboard.overview(conn)}
    assert list(rows) == ["drifted", "quiet", "steady"]

    d, s, q = rows["drifted"], rows["steady"], rows["quiet"]
    assert [(c.kind, c.status) for c in d.chips] == [("drift", ChipStatus.BREACHED)]
    assert d.chips[0].breached >= 2 and d.open_alerts == d.chips[0].breached  # feature a, and the share
    assert d.traffic_last_day == 300 and d.last_evaluation_status == "finished" and d.worst is ChipStatus.BREACHED

    assert {c.kind: c.status for c in s.chips} == {"drift": ChipStatus.OK, "quality": ChipStatus.NO_DATA}
    assert s.traffic_last_day == 300 and s.open_alerts == 0 and s.worst is ChipStatus.NO_DATA

    assert [(c.kind, c.status, c.reason) for c in q.chips] == [("drift", ChipStatus.NO_DATA, "not evaluated yet")]
    assert q.last_evaluation_id is None and q.traffic_last_day == 20

    # a monitor disabled leaves the overview; the newest evaluation that ran a kind decides its chip
    steady.monitors.disable("quality")
    quiet.evaluate()  # 20 records < min_records 50: no data, with the monitor's reason
    with mart.engine.connect() as conn:
        rows = {o.name: o for o in dashboard.overview(conn)}
    assert [c.kind for c in rows["steady"].chips] == ["drift"]
    [chip] = rows["quiet"].chips
    assert chip.status is ChipStatus.NO_DATA and chip.evaluation_id == rows["quiet"].last_evaluation_id
    assert chip.reason and "50" in chip.reason


def test_histories_are_read_by_time_range_and_the_token_moves(mart: openmart.Mart) -> None:
    sub = _subscription(mart)
    sub.payload.log(_payload(_frame(200, seed=11, shift=2.0)))
    sub.monitors.enable("drift", min_records=50)
    with mart.engine.connect() as conn:
        before = dashboard.change_token(conn, sub.id)
    first = sub.evaluate()
    with mart.engine.connect() as conn:
        after_first = dashboard.change_token(conn, sub.id)
        assert after_first != before
        cut = conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
    second = sub.evaluate()
    with mart.engine.connect() as conn:
        assert dashboard.change_token(conn, sub.id) != after_first
        everything = dashboard.measurement_history(conn, sub.id, "drift")
        later = dashboard.measurement_history(conn, sub.id, "drift", start=cut)
        earlier = dashboard.measurement_history(conn, sub.id, "drift", end=cut)
        only_a = dashboard.measurement_history(conn, sub.id, "drift", feature="a")
        capped = dashboard.measurement_history(conn, sub.id, "drift", limit=3)
        details = dashboard.latest_details(conn, sub.id, "drift", end=cut)
        evaluations = dashboard.evaluations(conn, sub.id)
    assert {p.evaluation_id for p in later} == {second.evaluation_id}
    assert {p.evaluation_id for p in earlier} == {first.evaluation_id}
    assert len(everything) == len(later) + len(earlier)
    assert {p.feature for p in only_a} == {"a"} and len(only_a) == 2
    assert len(capped) == 3 and all(p.evaluation_id == second.evaluation_id for p in capped)
    assert {d.evaluation_id for d in details} == {first.evaluation_id}
    histogram = next(d for d in details if d.feature == "a").details
    assert histogram is not None and histogram.get("histogram")
    assert [e["id"] for e in evaluations] == [second.evaluation_id, first.evaluation_id]


def test_new_payload_moves_the_overviews_token_not_a_subscriptions(mart: openmart.Mart) -> None:
    sub = _subscription(mart)
    sub.payload.log(_payload(_frame(10, seed=12)))
    with mart.engine.connect() as conn:
        overview, page = dashboard.change_token(conn), dashboard.change_token(conn, sub.id)
    sub.payload.log(_payload(_frame(5, seed=13)))
    with mart.engine.connect() as conn:
        assert dashboard.change_token(conn) != overview  # the overview's traffic column changed
        assert dashboard.change_token(conn, sub.id) == page  # nothing on the subscription's page did
