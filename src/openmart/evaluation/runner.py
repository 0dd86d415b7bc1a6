"""Runs a subscription's enabled monitors over a window and stores what they found: the only
place an evaluation has side effects.

One evaluation, one transaction
    The evaluation's row is written first, ``running``, in a transaction of its own (so it can be
    seen while it runs). Everything it produces — the feedback it scored, its measurements, the
    alerts it opens, updates or resolves, and its final status ``finished`` — is written in ONE
    transaction at the end: all of it, or none. Any exception (openmart's own or not, raised by a
    monitor or by the runner, a ``KeyboardInterrupt`` too) rolls that transaction back and
    records the evaluation ``failed`` with the exception's type and message; the caller then gets
    :class:`~openmart.errors.EvaluationFailed` (its ``__cause__`` is the original). A monitor
    that fails fails the evaluation: the other monitors' measurements are not stored either (a
    measurement of a finished evaluation is one the whole evaluation stands behind).

Serialised per subscription, by an advisory lock
    An evaluation holds a session-level PostgreSQL advisory lock, one per subscription, on a
    connection of its own for its whole life. A second evaluation of the same subscription waits
    for it (reporting ``waiting for evaluation N ...`` through ``progress``) or, with
    ``wait=False``, is refused at once with :class:`~openmart.errors.EvaluationBusy`. So feedback
    is scored once: the second evaluation starts after the first committed its predictions.

    Why a lock and not a lease with a heartbeat: the lock belongs to the database session, so it
    vanishes the moment the process dies (SIGKILL, OOM, a lost machine: the server closes the
    session when the socket does), with no clock, no lease length to tune against the longest
    monitor, and no heartbeat thread that could stall while the evaluation is fine. What it costs:
    a session-level lock needs a session (a pooler in transaction mode, e.g. PgBouncer, would
    break it), and a network partition without a FIN keeps the lock until TCP keepalive gives up.

    An evaluation still ``running`` whose lock is free has lost its process: it is marked
    ``abandoned``. Whoever takes the lock next does that sweep (the next evaluation of the
    subscription), and so does listing the evaluations (:func:`evaluations`, ``openmart
    evaluations SUB``), which takes the lock only if it is free and only for the sweep. The
    results are written on the lock's own connection, after checking the row is still
    ``running``: an evaluation that lost its connection (``pg_terminate_backend``) cannot commit
    anything, and a swept one cannot come back to life.

Feedback scored inside the evaluation
    Feedback with neither a payload twin nor a prediction is scored through the binding, in
    batches (one scoring call per batch), when a monitor that reads labelled records (quality,
    fairness) is evaluated and the subscription has a binding and a deployment. The answers are
    stored with one bulk UPDATE (:mod:`openmart.mart.feedback`) in the evaluation's transaction,
    so they commit with its results or not at all: a failed evaluation leaves the feedback
    unscored, and the next evaluation scores it (and pays for those calls) again.

    Monitors read on connections of their own, two at a time; uncommitted predictions would be
    invisible to them. So when this evaluation scored feedback, its monitors run one after the
    other ON the evaluation's connection, inside its transaction (each in a savepoint), and see
    the fresh predictions; the usual case — nothing to score — keeps its monitors in parallel on
    their own connections and opens the results' transaction only at the end. Scoring dominates
    an evaluation that scores, so running its monitors one by one costs little.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openmart.context import SubscriptionContext
from openmart.errors import EvaluationBusy, EvaluationFailed, ValidationError
from openmart.evaluation.results import EvaluationResult, Measurement, MonitorOutcome
from openmart.mart import alerts, evaluations, subscriptions
from openmart.mart import feedback as feedback_table
from openmart.mart.alerts import AlertChanges, AlertKey, Breach
from openmart.mart.evaluations import EvaluationRecord
from openmart.mart.windows import Window
from openmart.monitors import learned, registry
from openmart.monitors.config import MonitorConfig

log = logging.getLogger(__name__)

#: monitors that read labelled records: feedback is scored before they run
LABELLED_KINDS = frozenset({"quality", "fairness"})
#: records per scoring call when feedback is scored
SCORING_BATCH = 1_000

Progress = Callable[[str], None]


def evaluate(
    ctx: SubscriptionContext,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    last: int | None = None,
    kinds: Iterable[str] | None = None,
    progress: Progress | None = None,
    workers: int = 2,
    flush: Callable[[], object] | None = None,
    wait: bool = True,
    on_started: Callable[[int], object] | None = None,
    window: Window | None = None,
    kind: str = "monitoring",
) -> EvaluationResult:
    """Evaluate the subscription's enabled monitors (``kinds``: only these) over the window.

    ``flush`` is called first (records captured in the background belong in the window);
    ``progress`` hears each monitor's kind as it starts, and a line when the evaluation waits
    for another one of the same subscription (``wait=False``: refuse instead). ``on_started``
    hears the evaluation's id once its ``running`` row is committed (the REST API answers with
    it while the evaluation runs); what it raises fails the evaluation like any other error.

    ``window``: any record set (an environment, a model version, a baseline other than the
    reference) instead of ``since``/``until``/``last``. A ``comparison`` stores its
    measurements and opens, updates and resolves no alert: alerts follow the monitored stream."""
    if flush is not None:
        flush()
    if window is None:
        window = Window(since=since, until=until, last=last)
    configs = enabled_configs(ctx, kinds)
    with started(ctx, window, kind=kind, wait=wait, progress=progress) as (ctx, lock_conn, evaluation_id):
        return _run(ctx, lock_conn, evaluation_id, window, configs, progress, workers, on_started, kind)


def enabled_configs(ctx: SubscriptionContext, kinds: Iterable[str] | None = None) -> list[MonitorConfig]:
    """The subscription's enabled monitors (only ``kinds`` when given)."""
    wanted = None if kinds is None else {str(k) for k in kinds}
    return [c for c in _configs(ctx) if c.enabled and (wanted is None or str(c.kind) in wanted)]


@contextlib.contextmanager
def started(
    ctx: SubscriptionContext,
    window: Window,
    *,
    kind: str,
    wait: bool,
    progress: Progress | None,
    chunking: Mapping[str, Any] | None = None,
) -> Iterator[tuple[SubscriptionContext, Connection, int]]:
    """Hold the subscription's evaluation lock (waiting, or refusing with ``wait=False``), sweep
    the abandoned, and start a ``running`` evaluation of ``window``: yields the subscription as of
    now (its reference and current version may have moved), the lock's connection and the
    evaluation's id; the lock is released when the block ends."""
    with ctx.engine.connect() as lock_conn:
        key = evaluations.lock_key(lock_conn, ctx.id)
        lock_conn.commit()
        _take_lock(ctx, lock_conn, key, wait=wait, progress=progress)
        try:
            with lock_conn.begin():
                swept = evaluations.sweep_abandoned(lock_conn, ctx.id)
                ctx = ctx.with_record(subscriptions.by_id(lock_conn, ctx.id))
                evaluation_id = evaluations.start(
                    lock_conn,
                    ctx.id,
                    window_start=window.since,
                    window_end=window.until,
                    kind=kind,
                    target=_set_dict(window),
                    baseline=_set_dict(window.baseline) if window.baseline is not None else None,
                    chunking=chunking,
                )
            if swept:
                log.warning("subscription %r: evaluations %s were abandoned by their process", ctx.name, swept)
            yield ctx, lock_conn, evaluation_id
        finally:
            _release(lock_conn, key)


def evaluations_of(
    ctx: SubscriptionContext, *, status: str | None = None, limit: int | None = None
) -> list[EvaluationRecord]:
    """The subscription's evaluations, newest first — after marking abandoned the ones whose
    process died (when no evaluation of it runs now)."""
    sweep(ctx)
    with ctx.engine.connect() as conn:
        return evaluations.list_for(conn, ctx.id, status=status, limit=limit)


def sweep(ctx: SubscriptionContext) -> list[int]:
    """Mark abandoned the subscription's ``running`` evaluations whose process is gone; their
    ids. Takes the subscription's lock only if it is free (a running evaluation keeps it, and
    has swept already when it took it)."""
    with ctx.engine.connect() as conn:
        key = evaluations.lock_key(conn, ctx.id)
        conn.commit()
        locked = evaluations.try_lock(conn, key)
        conn.commit()
        if not locked:
            return []
        try:
            with conn.begin():
                return evaluations.sweep_abandoned(conn, ctx.id)
        finally:
            _release(conn, key)


# -- the lock --------------------------------------------------------------------------------------


def _take_lock(ctx: SubscriptionContext, conn: Connection, key: int, *, wait: bool, progress: Progress | None) -> None:
    if evaluations.try_lock(conn, key):
        conn.commit()
        return
    conn.commit()
    with ctx.engine.connect() as peek:
        other = evaluations.running(peek, ctx.id)
    who = (
        f"evaluation {other.id} (running since {other.started_at:%Y-%m-%d %H:%M:%S}, {other.runner})"
        if other is not None
        else "another evaluation"
    )
    if not wait:
        raise EvaluationBusy(f"subscription {ctx.name!r}: {who} is running; try again when it has finished")
    if progress:
        progress(f"waiting for {who} of {ctx.name!r} to finish")
    log.info("subscription %r: waiting for %s", ctx.name, who)
    evaluations.lock(conn, key)
    conn.commit()


def _release(conn: Connection, key: int) -> None:
    """Unlock; a connection that died took its lock with it."""
    with contextlib.suppress(Exception):
        if conn.in_transaction():
            conn.rollback()
        evaluations.unlock(conn, key)
        conn.commit()


# -- one evaluation --------------------------------------------------------------------------------


def _run(
    ctx: SubscriptionContext,
    conn: Connection,
    evaluation_id: int,
    window: Window,
    configs: list[MonitorConfig],
    progress: Progress | None,
    workers: int,
    on_started: Callable[[int], object] | None = None,
    kind: str = "monitoring",
) -> EvaluationResult:
    started = time.perf_counter()
    outcomes: list[MonitorOutcome] = []
    records: int | None = None
    step = "starting"
    try:
        if on_started is not None:  # inside the try: its failure is recorded like any other
            on_started(evaluation_id)
        step = "scoring feedback"
        txn = conn.begin()
        scored, scoring_calls = _score_feedback(ctx, conn, configs, progress)
        if scored:  # the monitors must see the fresh predictions: on this connection, in this transaction
            step = "running monitors"
            records = evaluations.count_window(conn, ctx, window)
            outcomes = [_in_savepoint(ctx, conn, c, window, progress) for c in configs]
        else:
            txn.rollback()  # nothing written: no transaction stays open while the monitors run
            step = "running monitors"
            records, outcomes = _parallel(ctx, window, configs, progress, workers)
            txn = conn.begin()
        failed = [o for o in outcomes if o.status == "error"]
        if failed:
            raise _MonitorFailed(failed[0])
        step = "storing results"
        changes = _store(ctx, conn, evaluation_id, outcomes, alerting=kind == "monitoring")
        summary = _summary(outcomes, scored, scoring_calls, time.perf_counter() - started)
        evaluations.finish(conn, evaluation_id, summary=summary, records=records, scored_feedback=scored)
        step = "committing"
        txn.commit()
    except BaseException as exc:
        _record_failure(ctx, conn, evaluation_id, exc, step, outcomes, records, time.perf_counter() - started)
        if isinstance(exc, Exception):
            cause = exc.error if isinstance(exc, _MonitorFailed) else exc
            raise EvaluationFailed(
                f"evaluation {evaluation_id} of {ctx.name!r} failed while {step}: {_describe(exc)}",
                evaluation_id=evaluation_id,
                error_type=_error_type(exc),
            ) from cause
        raise
    return EvaluationResult(
        evaluation_id,
        ctx.name,
        window.to_dict(),
        outcomes,
        time.perf_counter() - started,
        records=records,
        scored_feedback=scored,
        alerts=changes,
    )


class _MonitorFailed(Exception):
    """A monitor raised: the evaluation fails, naming it."""

    def __init__(self, outcome: MonitorOutcome) -> None:
        self.outcome = outcome
        self.error: BaseException = outcome.info.pop("_exception")
        super().__init__(f"{outcome.kind} monitor raised {type(self.error).__name__}: {self.error}")


def _original(exc: BaseException) -> BaseException:
    """What went wrong: a monitor's own exception, the driver's error under SQLAlchemy's wrapper
    (its message without the statement and parameters SQLAlchemy appends)."""
    if isinstance(exc, _MonitorFailed):
        return exc.error
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def _error_type(exc: BaseException) -> str:
    return type(_original(exc)).__name__


def _error_text(exc: BaseException) -> str:
    return " ".join(str(_original(exc)).split())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _MonitorFailed):
        return str(exc)
    text = _error_text(exc)
    return f"{_error_type(exc)}: {text}" if text else _error_type(exc)


def _record_failure(
    ctx: SubscriptionContext,
    conn: Connection,
    evaluation_id: int,
    exc: BaseException,
    step: str,
    outcomes: list[MonitorOutcome],
    records: int | None,
    elapsed: float,
) -> None:
    """Roll the results back and mark the evaluation failed, on a fresh connection (the
    evaluation's own may be the one that broke). If the mart cannot be reached either, the row
    stays ``running`` with no lock behind it: the next sweep marks it abandoned."""
    with contextlib.suppress(Exception):
        if conn.in_transaction():
            conn.rollback()
    message = str(exc) if isinstance(exc, _MonitorFailed) else f"while {step}: {_error_text(exc)}"
    summary: dict[str, Any] = {o.kind: o.summary() for o in outcomes} | {"elapsed_s": round(elapsed, 3)}
    summary["error"] = {"type": _error_type(exc), "message": message, "step": step}
    try:
        with ctx.engine.begin() as c:
            recorded = evaluations.fail(
                c, evaluation_id, error_type=_error_type(exc), error_message=message, summary=summary, records=records
            )
        if not recorded:
            log.warning("evaluation %s had ended already (abandoned) when it failed: %s", evaluation_id, message)
    except Exception:  # the mart is gone: the sweep will say abandoned
        log.exception("evaluation %s failed (%s) and could not be recorded as failed", evaluation_id, message)


def _summary(outcomes: list[MonitorOutcome], scored: int, calls: int, elapsed: float) -> dict[str, Any]:
    summary: dict[str, Any] = {o.kind: o.summary() for o in outcomes}
    summary["elapsed_s"] = round(elapsed, 3)
    if scored or calls:
        summary["feedback_scoring"] = {"records": scored, "scoring_calls": calls}
    return summary


def _set_dict(window: Window) -> dict[str, Any]:
    """A record set as stored with its evaluation: environment, version and its bounds."""
    return {k: v for k, v in window.to_dict().items() if k != "baseline"} | {
        "environment": window.environment,
        "version": window.version,
    }


def _store(
    ctx: SubscriptionContext,
    conn: Connection,
    evaluation_id: int,
    outcomes: list[MonitorOutcome],
    *,
    alerting: bool = True,
) -> AlertChanges:
    """Measurements, then alerts: breaches open or update one, passing measurements resolve theirs."""
    measurements = [m for o in outcomes for m in o.measurements]
    ids = evaluations.add_measurements(conn, evaluation_id, ctx.id, measurements)
    if not alerting:
        return AlertChanges((), (), ())
    return _alert(ctx, conn, evaluation_id, measurements, ids)


def _alert(
    ctx: SubscriptionContext, conn: Connection, evaluation_id: int, measurements: list[Measurement], ids: list[int]
) -> AlertChanges:
    """Open or update the alerts of breached measurements (stored with ``ids``), resolve those of
    passing ones."""
    breaches = [
        Breach(_key(m), mid, f"{ctx.name}: {m.describe()}")
        for m, mid in zip(measurements, ids, strict=True)
        if m.breached
    ]
    changes = alerts.record_breaches(conn, ctx.id, evaluation_id, breaches)
    # a measurement passes when it was judged (a threshold) and defined (a value) and within it
    passing = [_key(m) for m in measurements if not m.breached and m.threshold is not None and m.value is not None]
    resolved = alerts.resolve_passing(conn, ctx.id, evaluation_id, passing)
    return AlertChanges(changes.opened, changes.updated, tuple(resolved))


def _key(m: Measurement) -> AlertKey:
    return AlertKey(m.monitor, m.metric, m.feature, m.group)


# -- feedback scoring ------------------------------------------------------------------------------


def _score_feedback(
    ctx: SubscriptionContext, conn: Connection, configs: list[MonitorConfig], progress: Progress | None
) -> tuple[int, int]:
    """Score the feedback that has neither a payload twin nor a prediction, in batches, and
    write the answers in the caller's transaction; (records scored, scoring calls made)."""
    if not ctx.binding or not ctx.deployment_id or not any(str(c.kind) in LABELLED_KINDS for c in configs):
        return 0, 0
    frame = feedback_table.unscored(conn, ctx.record)
    if frame.empty:
        return 0, 0
    if progress:
        progress(f"scoring {len(frame)} feedback records")
    features = list(ctx.schema.feature_names)
    predictions: list[Any] = []
    probabilities: list[Any] | None = [] if ctx.schema.probability else None
    calls = 0
    provider = ctx.provider()
    try:
        for start in range(0, len(frame), SCORING_BATCH):
            batch = frame.iloc[start : start + SCORING_BATCH]
            answer = provider.score(ctx.deployment_id, batch.loc[:, features].reset_index(drop=True))
            calls += 1
            if len(answer.predictions) != len(batch):
                raise ValidationError(
                    f"the deployment answered {len(answer.predictions)} predictions for {len(batch)} feedback records"
                )
            predictions.extend(answer.predictions)
            if probabilities is not None:
                if answer.probabilities is None:
                    probabilities = None
                else:
                    probabilities.extend(answer.probabilities)
    finally:
        provider.close()
    ids = [int(i) for i in frame["record_id"]]
    stored = feedback_table.store_predictions(conn, ctx.record, ids, predictions, probabilities)
    return stored, calls


# -- running monitors ------------------------------------------------------------------------------


def _parallel(
    ctx: SubscriptionContext, window: Window, configs: list[MonitorConfig], progress: Progress | None, workers: int
) -> tuple[int, list[MonitorOutcome]]:
    """Monitors on their own read connections (they mostly wait on PostgreSQL: two at a time use
    both cores); the window's record count is drift's when drift counted it, else counted after."""

    def one(config: MonitorConfig) -> MonitorOutcome:
        with ctx.engine.connect() as c:
            try:
                return _run_monitor(ctx, c, config, window, progress)
            finally:
                c.rollback()

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(configs)))) as pool:
        outcomes = list(pool.map(one, configs))
    counted = next((o.records for o in outcomes if o.kind == "drift" and o.status in ("ok", "not_enough_data")), None)
    if counted is None:
        with ctx.engine.connect() as c:
            counted = evaluations.count_window(c, ctx, window)
    return counted, outcomes


def _in_savepoint(
    ctx: SubscriptionContext, conn: Connection, config: MonitorConfig, window: Window, progress: Progress | None
) -> MonitorOutcome:
    """A monitor on the evaluation's connection: in a savepoint, so a failed query does not
    poison the transaction, and read-only in effect (what it changed is rolled back)."""
    savepoint = conn.begin_nested()
    try:
        return _run_monitor(ctx, conn, config, window, progress)
    finally:
        savepoint.rollback()


def _run_monitor(
    ctx: SubscriptionContext, conn: Connection, config: MonitorConfig, window: Window, progress: Progress | None
) -> MonitorOutcome:
    """One monitor; any exception it raises becomes an ``error`` outcome (the evaluation then fails)."""
    if progress:
        progress(str(config.kind))
    started = time.perf_counter()
    try:
        outcome = _call_monitor(ctx, conn, config, window)
        learned.rejudge(config, outcome)  # a learned band judges its metric on both sides
    except Exception as exc:
        log.exception("%s monitor failed on %r", config.kind, ctx.name)
        outcome = MonitorOutcome(str(config.kind), status="error", reason=f"{type(exc).__name__}: {exc}")
        outcome.info["_exception"] = exc
    outcome.info["elapsed_s"] = round(time.perf_counter() - started, 3)
    return outcome


# -- the monitors' interface -----------------------------------------------------------------------


def _configs(ctx: SubscriptionContext) -> list[MonitorConfig]:
    from openmart.monitors.store import Monitors

    return Monitors(ctx).configs()


def _call_monitor(ctx: SubscriptionContext, conn: Connection, config: MonitorConfig, window: Window) -> MonitorOutcome:
    return registry.get(config.kind).run(ctx, config, window, conn)
