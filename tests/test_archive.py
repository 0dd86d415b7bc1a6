"""The archive (issue #19 part 3): whole days of payload and feedback moved to Parquet with a
manifest, every record in exactly one place whatever happens. Counted from the mart's own tables
and the archive's files: each scoring id once before, after, across a process killed between the
copy and the delete (and inside the delete's transaction), on a re-run, and with two archivers
at once."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

import openmart
from openmart.aggregates.specs import Count, GroupCount, Moments
from openmart.errors import ValidationError
from openmart.faults import ENV as KILL_AT

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAYS = 6
PER_DAY = 400
SPECS = [Count(), Moments("income"), GroupCount(("scoring_id",))]


def _payload(days: int = DAYS, per_day: int = PER_DAY) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = days * per_day
    start = NOW - timedelta(days=days)
    start = start.replace(hour=0, minute=0)
    return pd.DataFrame(
        {
            "scoring_id": [f"r{i:06d}" for i in range(n)],
            "scoring_timestamp": [start + timedelta(seconds=int(s)) for s in np.linspace(0, days * 86400 - 1, n)],
            "income": rng.normal(50, 10, n).round(2),
            "region": rng.choice(["north", "south"], n),
            "prediction": rng.integers(0, 2, n),
            "probability": rng.random(n).round(4),
        }
    )


@pytest.fixture
def sub(mart: openmart.Mart) -> openmart.Subscription:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        {
            "income": rng.normal(50, 10, 300),
            "region": rng.choice(["north", "south"], 300),
            "label": rng.integers(0, 2, 300),
            "prediction": rng.integers(0, 2, 300),
            "probability": rng.random(300),
        }
    )
    s = mart.subscriptions.add(
        "arch", reference=reference, label="label", problem_type="binary", categorical=["region"], class_labels=[0, 1]
    )
    payload = _payload()
    s.payload.log(payload)
    labelled = payload.iloc[::4]
    s.feedback.log(labelled[["scoring_id", "income", "region"]].assign(label=1))
    return s


def _ids_once(sub: openmart.Subscription, expected: int) -> None:
    pieces = sub.pieces(SPECS)
    counts = pieces[GroupCount(("scoring_id",))].counts
    assert pieces[Count()] == expected == len(counts)
    assert set(counts.values()) == {1}, "a record counted twice"


def _hot(mart: openmart.Mart, table: str) -> int:
    with mart.engine.connect() as conn:
        return conn.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar_one()


def _traffic(mart: openmart.Mart, sub_id: int) -> int:
    with mart.engine.connect() as conn:
        return conn.exec_driver_sql(
            f"SELECT coalesce(sum(records), 0) FROM traffic WHERE subscription_id = {int(sub_id)}"
        ).scalar_one()


def test_archive_moves_closed_days_once_and_pieces_span_both(
    mart: openmart.Mart, sub: openmart.Subscription, tmp_path: Path
) -> None:
    before = sub.pieces(SPECS)
    traffic = _traffic(mart, sub.id)
    report = sub.archive(older_than_days=2, to=tmp_path / "archive", now=NOW)
    # days strictly before the UTC day of NOW - 2 days: DAYS - 2 whole days of payload
    payload_segments = [s for s in report.archived if s.kind == "payload"]
    assert len(payload_segments) == DAYS - 2
    assert sum(s.rows for s in payload_segments) == (DAYS - 2) * PER_DAY
    assert _hot(mart, sub.record.payload_table) == 2 * PER_DAY
    for seg in report.archived:
        data = Path(seg.location).read_bytes()
        assert hashlib.sha256(data).hexdigest() == seg.sha256 and len(data) == seg.bytes
        assert pq.read_metadata(seg.location).num_rows == seg.rows
    after = sub.pieces(SPECS)
    assert after[GroupCount(("scoring_id",))].counts == before[GroupCount(("scoring_id",))].counts
    assert after[Moments("income")].n == before[Moments("income")].n
    assert after[Moments("income")].total == pytest.approx(before[Moments("income")].total, rel=1e-12)
    assert _traffic(mart, sub.id) == traffic  # archived records were still served
    # the feedback too, by when it was recorded (now: nothing of it is older than 2 days)
    assert sub.pieces([Count()], kind="feedback")[Count()] == DAYS * PER_DAY // 4
    # a second run finds nothing to do
    again = sub.archive(older_than_days=2, to=tmp_path / "archive", now=NOW)
    assert again.archived == [] and again.rows == 0
    _ids_once(sub, DAYS * PER_DAY)
    # the archived rows read back are the rows logged, columns and types kept
    frame = pd.concat([pd.read_parquet(s.location) for s in payload_segments]).sort_values("scoring_id")
    logged = _payload().iloc[: len(frame)]
    assert frame["scoring_id"].tolist() == logged["scoring_id"].tolist()
    assert np.allclose(frame["income"].to_numpy(), logged["income"].to_numpy())
    assert (frame["scoring_timestamp"].dt.tz is not None) and frame["region"].tolist() == logged["region"].tolist()


def _archive_in_a_process(database_url: str, schema: str, data_dir: Path, root: Path, kill_at: str) -> int:
    code = (
        "import datetime, openmart\n"
        "from openmart.config import Settings\n"
        f"m = openmart.connect({database_url!r}, schema={schema!r}, settings=Settings(None, {str(data_dir)!r}, None))\n"
        f"now = datetime.datetime.fromisoformat({NOW.isoformat()!r})\n"
        f"m.subscriptions.get('arch').archive(older_than_days=2, to={str(root)!r}, now=now, kinds=['payload'])\n"
    )
    env = {**os.environ, KILL_AT: kill_at}
    return subprocess.run([sys.executable, "-c", code], env=env, timeout=600).returncode


@pytest.mark.parametrize("kill_at", ["archive:written", "archive:deleted"])
def test_a_process_killed_mid_archive_loses_and_doubles_nothing(
    mart: openmart.Mart,
    sub: openmart.Subscription,
    database_url: str,
    schema_name: str,
    tmp_path: Path,
    kill_at: str,
) -> None:
    root = tmp_path / "archive"
    rc = _archive_in_a_process(database_url, schema_name, tmp_path / "data", root, kill_at)
    assert rc == -9, f"the archiver was not killed at {kill_at} (exit {rc})"
    # killed after writing the first day's file, before (or inside) the delete's transaction
    writing = sub.archive_segments("payload", complete=False)
    assert [s.status for s in writing] == ["writing"]
    assert Path(writing[0].location).exists()
    assert _hot(mart, sub.record.payload_table) == DAYS * PER_DAY  # nothing deleted
    _ids_once(sub, DAYS * PER_DAY)  # the file of a writing segment is not read
    # the next run finishes the work
    report = sub.archive(older_than_days=2, to=root, now=NOW, kinds=["payload"])
    assert len(report.archived) == DAYS - 2
    assert all(s.status == "complete" for s in sub.archive_segments("payload", complete=False))
    _ids_once(sub, DAYS * PER_DAY)
    assert _hot(mart, sub.record.payload_table) == 2 * PER_DAY


def test_two_archivers_at_once_archive_each_day_once(
    mart: openmart.Mart, sub: openmart.Subscription, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    reports: list[object] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            reports.append(sub.archive(older_than_days=2, to=root, now=NOW, kinds=["payload"]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    archived = [s for r in reports for s in r.archived]  # type: ignore[attr-defined]
    assert len(archived) == DAYS - 2 == len({s.period_start for s in archived})
    _ids_once(sub, DAYS * PER_DAY)


def test_a_record_arriving_late_for_an_archived_day_stays_hot_and_counts_once(
    mart: openmart.Mart, sub: openmart.Subscription, tmp_path: Path
) -> None:
    sub.archive(older_than_days=2, to=tmp_path / "archive", now=NOW, kinds=["payload"])
    late = _payload().iloc[:1].assign(scoring_id="late-1")
    sub.payload.log(late)
    _ids_once(sub, DAYS * PER_DAY + 1)
    sub.archive(older_than_days=2, to=tmp_path / "archive", now=NOW, kinds=["payload"])
    _ids_once(sub, DAYS * PER_DAY + 1)


def test_policy_and_bad_input(mart: openmart.Mart, sub: openmart.Subscription, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no archive policy"):
        sub.archive(to=tmp_path)
    with pytest.raises(ValidationError, match="days"):
        sub.set_archive_policy(0)
    with pytest.raises(ValidationError, match="kind"):
        sub.archive(older_than_days=1, kinds=["reference"], to=tmp_path)
    sub.set_archive_policy(3)
    assert sub.archive_policy == 3
    report = sub.archive(to=tmp_path / "archive", now=NOW, kinds=["payload"])
    assert len(report.archived) == DAYS - 3
    with mart.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM archive_segments WHERE status = 'complete'")).scalar_one()
    assert stored == DAYS - 3


def test_the_cli_sets_the_policy_runs_and_lists(cli, mart: openmart.Mart, sub: openmart.Subscription) -> None:  # type: ignore[no-untyped-def]
    shown = cli("archive", "policy", "arch", "--after", "2")
    assert "older than 2" in shown.stderr
    assert sub.archive_policy == 2
    # the records are days older than the clock: every day of them is closed
    done = json.loads(cli("archive", "run", "arch", "--kind", "payload", "--json").stdout)
    assert done["rows"] == DAYS * PER_DAY and len(done["archived"]) == DAYS
    listed = json.loads(cli("archive", "list", "arch", "--json").stdout)
    assert [s["rows"] for s in listed] == [PER_DAY] * DAYS
    assert all(Path(s["location"]).is_relative_to(Path(os.environ["OPENMART_DATA_DIR"]) / "archive") for s in listed)
    _ids_once(sub, DAYS * PER_DAY)
    bad = cli("archive", "run", "arch", "--kind", "reference", ok=False)
    assert bad.exit_code != 0 and "payload or feedback" in bad.stderr
    cli("archive", "policy", "arch", "--off")
    assert sub.archive_policy is None
