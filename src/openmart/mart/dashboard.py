"""What the dashboard reads, as a few bounded queries: nothing here reads a payload table.

- :func:`overview`: every subscription with one status per enabled monitor, its last evaluation,
  open alerts, failed deliveries and records in the last day (from ``traffic``, kept by triggers);
- :func:`measurement_history`: a monitor's measurements in a time range (capped), for charts;
- :func:`latest_details`: the newest evaluation in a range that ran a monitor, with the details
  a chart needs (drift histograms, confusion matrix, fairness perturbation);
- :func:`traffic`: records per hour in a range;
- :func:`alerts_in_range`: a subscription's alerts still open, and those seen in a range (capped);
- :func:`change_token`: a short string that changes when an evaluation, measurement, alert or
  delivery does, which pages poll to update without reloading.

A monitor's status is that of the newest finished or failed evaluation (among the subscription's
latest :data:`STATUS_LOOKBACK`) that ran it: ``breached`` when one of its measurements breached,
``ok`` when none did, ``no_data`` when it had too few records or was skipped (or never ran),
``failed`` when it raised or its evaluation failed while running monitors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openmart.mart import models
from openmart.mart.alerts import AlertRecord, _record, _select

#: how many of a subscription's newest evaluations the status of a monitor is looked for in
STATUS_LOOKBACK = 200
#: at most this many measurements per history query (a chart has no use for more points)
HISTORY_LIMIT = 20_000


class ChipStatus(StrEnum):
    OK = "ok"
    BREACHED = "breached"
    NO_DATA = "no_data"
    FAILED = "failed"


@dataclass(frozen=True)
class MonitorChip:
    """One monitor's state on the overview."""

    kind: str
    status: ChipStatus
    evaluation_id: int | None
    evaluated_at: datetime | None
    reason: str | None
    breached: int  # breached measurements in that evaluation


@dataclass(frozen=True)
class SubscriptionOverview:
    id: int
    name: str
    binding: str | None
    deployment: str | None
    problem_type: str
    chips: tuple[MonitorChip, ...]  # one per enabled monitor, by kind
    last_evaluation_id: int | None
    last_evaluation_at: datetime | None
    last_evaluation_status: str | None
    open_alerts: int  # open or acknowledged
    traffic_last_day: int  # payload records scored in the last 24 hours (whole hours, UTC)
    failed_deliveries: int

    @property
    def worst(self) -> ChipStatus | None:
        order = (ChipStatus.FAILED, ChipStatus.BREACHED, ChipStatus.NO_DATA, ChipStatus.OK)
        present = {c.status for c in self.chips}
        return next((s for s in order if s in present), None)


@dataclass(frozen=True)
class MeasurementPoint:
    evaluation_id: int
    measured_at: datetime
    metric: str
    feature: str | None
    group: str | None
    value: float | None
    threshold: float | None
    threshold_type: str | None
    breached: bool


@dataclass(frozen=True)
class MeasurementDetail(MeasurementPoint):
    """A measurement with what its charts need (histograms, confusion matrix, group rates)."""

    id: int
    monitor: str
    details: dict[str, Any] | None


_POINT = 'evaluation_id, measured_at, metric, feature, "group", value, threshold, threshold_type, breached'


def _rows(conn: Connection, sql: str, **params: Any) -> Sequence[sa.Row[Any]]:
    return conn.execute(sa.text(sql), params).all()


_OVERVIEW = """
SELECT s.id, s.name, b.name AS binding, s.deployment_id, s.problem_type,
       le.id AS last_id, coalesce(le.finished_at, le.started_at) AS last_at, le.status AS last_status,
       (SELECT count(*) FROM alerts a WHERE a.subscription_id = s.id AND a.status <> 'resolved') AS open_alerts,
       (SELECT coalesce(sum(t.records), 0) FROM traffic t
         WHERE t.subscription_id = s.id AND t.hour > :since - interval '1 hour') AS traffic,
       (SELECT count(*) FROM alert_deliveries d JOIN alert_channels c ON c.id = d.channel_id
         WHERE c.subscription_id = s.id AND d.status = 'failed') AS failed_deliveries
FROM subscriptions s
LEFT JOIN bindings b ON b.id = s.binding_id
LEFT JOIN LATERAL (
  SELECT e.id, e.started_at, e.finished_at, e.status FROM evaluations e
  WHERE e.subscription_id = s.id AND e.kind = 'monitoring' ORDER BY e.id DESC LIMIT 1
) le ON true
ORDER BY s.name
"""

#: the monitored stream's measurements only: a comparison's or a chunked evaluation's are shown
#: with their own evaluation (few such evaluations per subscription: a short list to skip)
_STREAM_ONLY = (
    " AND evaluation_id <> ALL(ARRAY(SELECT id FROM evaluations WHERE subscription_id = :sid AND kind <> 'monitoring'))"
)

_CHIPS = """
SELECT m.subscription_id, m.kind, e.id, coalesce(e.finished_at, e.started_at) AS at, e.status,
       e.summary -> m.kind AS outcome, e.summary -> 'error' AS error,
       (SELECT count(*) FROM measurements x
         WHERE x.evaluation_id = e.id AND x.monitor = m.kind AND x.breached) AS breached
FROM monitors m
LEFT JOIN LATERAL (
  SELECT r.* FROM (
    SELECT ev.id, ev.started_at, ev.finished_at, ev.status, ev.summary FROM evaluations ev
    WHERE ev.subscription_id = m.subscription_id AND ev.status IN ('finished', 'failed') AND ev.kind = 'monitoring'
    ORDER BY ev.id DESC LIMIT :lookback
  ) r
  WHERE r.summary ? m.kind OR (r.status = 'failed' AND r.summary -> 'error' ->> 'step' = 'running monitors')
  ORDER BY r.id DESC LIMIT 1
) e ON true
WHERE m.enabled
ORDER BY m.subscription_id, m.kind
"""


def _chip(kind: str, row: sa.Row[Any]) -> MonitorChip:
    if row.id is None:
        return MonitorChip(kind, ChipStatus.NO_DATA, None, None, "not evaluated yet", 0)
    outcome = row.outcome if isinstance(row.outcome, dict) else None
    if outcome is None:  # the evaluation failed while running monitors, before this one's outcome
        message = (row.error or {}).get("message") if isinstance(row.error, dict) else None
        return MonitorChip(kind, ChipStatus.FAILED, row.id, row.at, message, 0)
    status = str(outcome.get("status") or "ok")
    reason = outcome.get("reason")
    if status == "error":
        return MonitorChip(kind, ChipStatus.FAILED, row.id, row.at, reason, int(row.breached))
    if status in ("not_enough_data", "skipped"):
        return MonitorChip(kind, ChipStatus.NO_DATA, row.id, row.at, reason, 0)
    breached = int(row.breached)
    return MonitorChip(kind, ChipStatus.BREACHED if breached else ChipStatus.OK, row.id, row.at, reason, breached)


def overview(conn: Connection, *, now: datetime | None = None) -> list[SubscriptionOverview]:
    """Every subscription, by name, with its monitors' states and its figures (two queries)."""
    since = now if now is not None else conn.execute(sa.text("SELECT now()")).scalar_one()
    since = since - timedelta(days=1)
    chips: dict[int, list[MonitorChip]] = {}
    for row in _rows(conn, _CHIPS, lookback=STATUS_LOOKBACK):
        chips.setdefault(int(row.subscription_id), []).append(_chip(str(row.kind), row))
    return [
        SubscriptionOverview(
            id=int(r.id),
            name=str(r.name),
            binding=r.binding,
            deployment=r.deployment_id,
            problem_type=str(r.problem_type),
            chips=tuple(chips.get(int(r.id), ())),
            last_evaluation_id=r.last_id,
            last_evaluation_at=r.last_at,
            last_evaluation_status=r.last_status,
            open_alerts=int(r.open_alerts),
            traffic_last_day=int(r.traffic),
            failed_deliveries=int(r.failed_deliveries),
        )
        for r in _rows(conn, _OVERVIEW, since=since)
    ]


def _range(start: datetime | None, end: datetime | None, column: str) -> tuple[str, dict[str, Any]]:
    where, params = [], {}
    if start is not None:
        where.append(f"{column} >= :start")
        params["start"] = start
    if end is not None:
        where.append(f"{column} < :end")
        params["end"] = end
    return "".join(f" AND {w}" for w in where), params


def measurement_history(
    conn: Connection,
    subscription_id: int,
    monitor: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    metric: str | None = None,
    feature: str | None = None,
    limit: int = HISTORY_LIMIT,
) -> list[MeasurementPoint]:
    """A monitor's measurements in ``[start, end)``, oldest first; the newest ``limit`` when more."""
    where, params = _range(start, end, "measured_at")
    if metric is not None:
        where += " AND metric = :metric"
        params["metric"] = metric
    if feature is not None:
        where += " AND feature = :feature"
        params["feature"] = feature
    sql = (
        f"SELECT {_POINT} FROM (SELECT {_POINT}, id FROM measurements WHERE subscription_id = :sid "
        f"AND monitor = :monitor{where}{_STREAM_ONLY} ORDER BY measured_at DESC, id DESC LIMIT :limit) m "
        "ORDER BY measured_at, id"
    )
    rows = _rows(conn, sql, sid=subscription_id, monitor=monitor, limit=int(limit), **params)
    return [MeasurementPoint(**r._mapping) for r in rows]


def latest_details(
    conn: Connection,
    subscription_id: int,
    monitor: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[MeasurementDetail]:
    """The measurements (with details) of the newest evaluation in ``[start, end)`` that has this
    monitor's measurements; empty when none has."""
    where, params = _range(start, end, "measured_at")
    latest = conn.execute(
        sa.text(
            "SELECT evaluation_id FROM measurements WHERE subscription_id = :sid AND monitor = :monitor"
            f"{where}{_STREAM_ONLY} ORDER BY measured_at DESC, id DESC LIMIT 1"
        ),
        {"sid": subscription_id, "monitor": monitor, **params},
    ).scalar()
    if latest is None:
        return []
    rows = _rows(
        conn,
        f"SELECT {_POINT}, id, monitor, details FROM measurements WHERE evaluation_id = :eid AND monitor = :monitor "
        "ORDER BY id",
        eid=int(latest),
        monitor=monitor,
    )
    return [MeasurementDetail(**r._mapping) for r in rows]


def traffic(
    conn: Connection, subscription_id: int, *, start: datetime | None = None, end: datetime | None = None
) -> list[tuple[datetime, int]]:
    """Payload records per hour (UTC) of scoring time in ``[start, end)``, oldest first; hours
    with none are absent."""
    where, params = _range(start, end, "hour")
    rows = _rows(
        conn,
        f"SELECT hour, records FROM traffic WHERE subscription_id = :sid AND records <> 0{where} ORDER BY hour",
        sid=subscription_id,
        **params,
    )
    return [(r.hour, int(r.records)) for r in rows]


def evaluations(
    conn: Connection,
    subscription_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The subscription's evaluations started in ``[start, end)``, newest first (at most ``limit``)."""
    where, params = _range(start, end, "started_at")
    rows = _rows(
        conn,
        "SELECT id, status, started_at, finished_at, records, window_start, window_end, error_message "
        f"FROM evaluations WHERE subscription_id = :sid{where} ORDER BY id DESC LIMIT :limit",
        sid=subscription_id,
        limit=int(limit),
        **params,
    )
    return [dict(r._mapping) for r in rows]


def change_token(conn: Connection, subscription_id: int | None = None) -> str:
    """Changes whenever an evaluation starts or ends, a measurement is stored, an alert opens,
    changes state or is seen again, or a delivery changes; the overview's (no subscription) also
    when payload records arrive (one indexed query)."""
    where = "" if subscription_id is None else " WHERE subscription_id = :sid"
    also = "" if subscription_id is None else " AND subscription_id = :sid"
    parts = [
        f"(SELECT max(id) FROM evaluations{where})",
        f"(SELECT count(*) FROM evaluations WHERE status = 'running'{also})",
        f"(SELECT max(id) FROM measurements{where})",
        f"(SELECT max(greatest(last_seen_at, acknowledged_at, resolved_at)) FROM alerts{where})",
        f"(SELECT count(*) FROM alerts WHERE status <> 'resolved'{also})",
        "(SELECT max(coalesce(sent_at, next_attempt_at)) FROM alert_deliveries)",
    ]
    if subscription_id is None:  # the overview shows the last day's traffic (a few rows of traffic)
        parts.append("(SELECT sum(records) FROM traffic WHERE hour > now() - interval '25 hours')")
    row = conn.execute(
        sa.text("SELECT " + ", ".join(parts)), {} if subscription_id is None else {"sid": subscription_id}
    ).one()
    return "-".join("" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v)) for v in row)


def alerts_in_range(
    conn: Connection,
    subscription_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 200,
) -> list[AlertRecord]:
    """The subscription's alerts a page shows, newest first (at most ``limit``): every one still
    open or acknowledged, and resolved ones seen in ``[start, end)``."""
    a = models.Alert
    seen = [a.last_seen_at >= start] if start is not None else []
    if end is not None:
        seen.append(a.created_at < end)
    in_range = sa.and_(*seen) if seen else sa.true()
    q = (
        _select()
        .where(a.subscription_id == subscription_id, sa.or_(a.status != "resolved", in_range))
        .order_by(a.id.desc())
        .limit(int(limit))
    )
    session = sa.orm.Session(bind=conn)
    return [_record(row, name) for row, name in session.execute(q)]
