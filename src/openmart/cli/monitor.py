"""`openmart monitor`, `openmart evaluate`, `openmart evaluations`, `openmart measurements`, `openmart alerts`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from openmart.cli.common import OpenmartGroup, emit_json, emit_table, err, fail, out, progress_bar, state
from openmart.errors import MonitorError, ValidationError
from openmart.monitors.config import MonitorKind

app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="""Monitors: quality, fairness, drift, explainability, and any installed plug-in.

Examples:

  openmart monitor enable credit quality --threshold roc_auc=0.8 --min-records 100

  openmart monitor enable credit fairness --protected sex --monitored female --reference male --favourable 1

  openmart monitor enable credit fairness --protected age --monitored 18-25 --reference 26-75 --favourable 1

  openmart monitor enable credit drift --method auto --drift-share 0.5 --threshold psi=0.2 --test income=ks

  openmart monitor enable credit my_monitor --option window_days=7

  openmart monitor kinds --json

  openmart monitor list credit --json
""",
)


def _value(text: str) -> Any:
    """An --option value: JSON when it reads as JSON (7, 0.5, true, [1,2], {"a": 1}), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@app.command()
def enable(
    ctx: typer.Context,
    subscription: str,
    kind: str = typer.Argument(
        ..., help="quality, fairness, drift, explainability, or an installed plug-in's kind (openmart monitor kinds)."
    ),
    threshold: list[str] = typer.Option(
        [],
        "--threshold",
        "-t",
        help="metric=value (repeat); metric:upper=value or metric:lower=value to choose the side. "
        "Drift: TEST=value (psi=0.2), COLUMN=value, share_of_drifted_features=value, or a bare number.",
    ),
    min_records: int | None = typer.Option(None, "--min-records", help="Below this, 'not enough data'."),
    protected: list[str] = typer.Option([], "--protected", help="Fairness: a protected attribute (repeat)."),
    monitored: list[str] = typer.Option(
        [], "--monitored", help="Fairness: its monitored group: values (female,other) or ranges (18-25)."
    ),
    reference: list[str] = typer.Option([], "--reference", help="Fairness: its reference group."),
    favourable: str | None = typer.Option(
        None, "--favourable", help="Fairness: favourable outcomes (1 or yes,maybe; regression: ranges)."
    ),
    config_file: Path | None = typer.Option(
        None, "--config", help="Options as a JSON file (e.g. several protected attributes)."
    ),
    method: str | None = typer.Option(
        None,
        "--method",
        help="Drift: auto, psi, ks, chisquare, jensenshannon, wasserstein or a registered test. "
        "Explainability: shap or lime.",
    ),
    test: list[str] = typer.Option([], "--test", help="Drift: COLUMN=TEST, a test for one column (repeat)."),
    drift_share: float | None = typer.Option(
        None, "--drift-share", help="Drift: share of drifting features that makes the dataset drift."
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Any declared option as NAME=VALUE (VALUE read as JSON when it is JSON; repeat)."
    ),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Enable (or reconfigure) a monitor on a subscription. Options are checked now: a bad one
    exits 2 with one line naming it and what it may be."""
    try:
        options: dict[str, Any] = json.loads(config_file.read_text()) if config_file else {}
    except ValueError as exc:
        fail(f"--config {config_file}: not JSON ({exc})", code=2)
    if not isinstance(options, dict):
        fail(f"--config {config_file}: expected a JSON object of options", code=2)
    for pair in option:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            fail(f"--option {pair!r}: expected NAME=VALUE", code=2)
        options[name.strip()] = _value(value)
    if threshold:
        options["thresholds"] = threshold
    if min_records is not None:
        options["min_records"] = min_records
    if protected or monitored or reference:
        if kind != MonitorKind.FAIRNESS:
            fail("--protected, --monitored and --reference are fairness options", code=2)
        if not (len(protected) == len(monitored) == len(reference)):
            fail("give --protected, --monitored and --reference once for each protected attribute", code=2)
        options["attributes"] = [
            {"feature": p, "monitored": m, "reference": r}
            for p, m, r in zip(protected, monitored, reference, strict=True)
        ]
    if favourable is not None:
        options["favourable"] = favourable
    if method is not None:
        options["method"] = method
    if test:
        tests = dict(options.get("tests") or {})
        for pair in test:
            column, sep, name = pair.partition("=")
            if not sep or not column.strip() or not name.strip():
                fail(f"--test {pair!r}: expected COLUMN=TEST, e.g. income=ks", code=2)
            tests[column.strip()] = name.strip()
        options["tests"] = tests
    if drift_share is not None:
        options["drift_share"] = drift_share
    sub = state(ctx).mart.subscriptions.get(subscription)
    try:
        config = sub.monitors.enable(kind, **options)
    except (MonitorError, ValidationError) as exc:  # a refused option: the user's to fix, as a usage error
        fail(str(exc), code=2)
    if json_:
        emit_json(config.to_dict())
    else:
        limits = ", ".join(
            f"{t.metric} {'>=' if t.type == 'lower_limit' else '<='} {t.value:g}"
            + (f" [{t.feature}]" if t.feature else "")
            for t in config.thresholds
        )
        out.print(
            f"{kind} monitor enabled on {subscription!r} (min records {config.min_records}"
            + (f"; {limits}" if limits else "")
            + ")",
            highlight=False,
        )


@app.command()
def disable(ctx: typer.Context, subscription: str, kind: str) -> None:
    """Disable a monitor (its history stays)."""
    state(ctx).mart.subscriptions.get(subscription).monitors.disable(kind)
    out.print(f"{kind} monitor disabled on {subscription!r}")


@app.command("list")
def list_(
    ctx: typer.Context, subscription: str, json_: bool = typer.Option(False, "--json", help="Machine-readable output.")
) -> None:
    """List a subscription's monitors with their thresholds."""
    configs = [c.to_dict() for c in state(ctx).mart.subscriptions.get(subscription).monitors.configs()]
    if json_:
        emit_json(configs)
    else:
        emit_table(
            [
                {
                    **c,
                    "thresholds": "; ".join(f"{t['metric']} {t['type']} {t['value']:g}" for t in c["thresholds"]),
                    "every": (c.get("schedule") or {}).get("every"),
                }
                for c in configs
            ],
            ["kind", "enabled", "min_records", "thresholds", "every", "parameters"],
        )


@app.command()
def kinds(json_: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The installed monitors with their options and metrics, and the drift tests."""
    from openmart.monitors import drift_tests, registry
    from openmart.monitors.base import describe

    monitors = [describe(m) for m in registry.available().values()]
    tests = [
        {"name": t.name, "kinds": list(t.kinds), "threshold": t.threshold, "drift_when": t.drift_when, "help": t.help}
        for t in drift_tests.available().values()
    ]
    if json_:
        emit_json({"monitors": monitors, "drift_tests": tests})
        return
    for m in monitors:
        out.print(f"[bold]{m['kind']}[/bold]: {m['description']}")
        for o in m["options"]:
            out.print(f"  --option {o['name']}: {o['valid']} (default {o['default']!r}) {o['help']}", highlight=False)
        for x in m["metrics"]:
            limit = "" if x["default_threshold"] is None else f", default threshold {x['default_threshold']:g}"
            out.print(f"  metric {x['name']}: {x['direction'].replace('_', ' ')}{limit}", highlight=False)
    emit_table(tests, ["name", "kinds", "threshold", "drift_when", "help"], title="drift tests")


_SCHEDULE_COLUMNS = ["subscription", "kind", "enabled", "every", "default", "next_run_at"]


@app.command()
def schedule(
    ctx: typer.Context,
    subscription: str,
    kind: str,
    every: str = typer.Option(
        ..., "--every", help="90s, 15m, 1h, 3h, 1d or seconds; 'default' (the kind's: quality 1h, drift 3h); 'off'."
    ),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Set how often `openmart serve` runs a monitor; its next run is one period from now.

    Example: openmart monitor schedule credit drift --every 6h
    """
    shown = state(ctx).mart.subscriptions.get(subscription).monitors.schedule(kind, every).to_dict()
    if json_:
        emit_json(shown)
    elif shown["scheduled"]:
        when = f"every {shown['every']}, next at {shown['next_run_at']}"
        out.print(f"{kind} on {subscription!r}: {when}", highlight=False)
    else:
        out.print(f"{kind} on {subscription!r}: not scheduled (run it with openmart evaluate)", highlight=False)


@app.command()
def schedules(
    ctx: typer.Context,
    subscription: str | None = typer.Argument(None, help="Only this subscription's monitors."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The monitors' schedules: how often each runs under `openmart serve`, and when next."""
    rows = [s.to_dict() for s in state(ctx).mart.schedules(subscription)]
    if json_:
        emit_json(rows)
    else:
        emit_table(rows, _SCHEDULE_COLUMNS)


@app.command("run-due")
def run_due(ctx: typer.Context, json_: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Run the monitors whose schedule is due now, as `openmart serve` would (each due slot runs
    once, even with services running). Exit 1 when a scheduled evaluation failed (it is recorded).

    To run a subscription's monitors now, whatever their schedule: openmart evaluate SUB.
    """
    runs = [r.to_dict() for r in state(ctx).mart.run_due()]
    if json_:
        emit_json(runs)
    elif not runs:
        err.print("no monitor is due", highlight=False)
    else:
        emit_table(
            [{**r, "kinds": ",".join(r["kinds"])} for r in runs],
            ["subscription", "kinds", "slot", "missed", "status", "evaluation_id", "error"],
        )
    if any(r["status"] != "finished" for r in runs):
        raise typer.Exit(1)


def evaluate(
    ctx: typer.Context,
    subscription: str,
    since: str | None = typer.Option(None, "--since", help="Window start (ISO time)."),
    until: str | None = typer.Option(None, "--until", help="Window end (ISO time, exclusive)."),
    last: int | None = typer.Option(None, "--last", help="Only the newest N records."),
    no_wait: bool = typer.Option(
        False,
        "--no-wait",
        help="Refuse (exit 1) while another evaluation of the subscription runs, instead of waiting.",
    ),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
    chunk_by: str | None = typer.Option(
        None,
        "--chunk-by",
        help="Cut the window into chunks: a period (1d, 6h, 1w), size=N records or number=K chunks (docs/chunks.md).",
    ),
) -> None:
    """Run the subscription's enabled monitors over a window; store measurements and alerts
    (all of them, or when anything fails none: the evaluation is recorded failed, exit 1).

    Example: openmart evaluate credit --last 1000 --json
    Example: openmart evaluate credit --chunk-by 1d     (one row per chunk; alerts from the newest)
    """
    sub = state(ctx).mart.subscriptions.get(subscription)
    kinds = [c.kind for c in sub.monitors.configs() if c.enabled]
    if not kinds:
        fail(f"subscription {subscription!r} has no enabled monitor: `openmart monitor enable` one first")
    if chunk_by is not None:
        _evaluate_chunked(ctx, sub, subscription, chunk_by, since, until, last, no_wait, json_)
        return
    with progress_bar("evaluating", len(kinds)) as bar:
        task = bar.add_task("evaluating", total=len(kinds))

        def step(what: str) -> None:
            # a monitor's kind as it starts, or a sentence (waiting for another evaluation, scoring feedback)
            bar.update(task, description=what if " " in what else f"evaluating {what}")
            bar.advance(task, 0)

        result = sub.evaluate(since=since, until=until, last=last, progress=step, wait=not no_wait)
        bar.update(task, completed=len(kinds), description="evaluated")
    from openmart.cli.alerting import deliver_after_evaluate

    deliver_after_evaluate(state(ctx).mart)  # a CLI-only user is told of what opened or resolved
    if json_:
        emit_json(result.to_dict())
        return
    for outcome in result.outcomes:
        note = f" ({outcome.reason})" if outcome.reason else ""
        err.print(f"{outcome.kind}: {outcome.status}, {outcome.records} records{note}", highlight=False)
    rows = [
        {
            **m.to_dict(),
            "value": "n/a" if m.value is None else f"{m.value:.4g}",
            "breached": "BREACHED" if m.breached else "",
        }
        for m in result.measurements
    ]
    emit_table(
        rows,
        ["monitor", "metric", "feature", "group", "value", "threshold", "breached"],
        title=f"evaluation {result.evaluation_id} of {subscription}",
    )


CHUNK_COLUMNS = ["chunk", "chunk_start", "chunk_records", "monitor", "metric", "feature", "value", "threshold"]
CHUNK_COLUMNS += ["band", "breached"]


def _evaluate_chunked(
    ctx: typer.Context,
    sub: Any,
    subscription: str,
    chunk_by: str,
    since: str | None,
    until: str | None,
    last: int | None,
    no_wait: bool,
    json_: bool,
) -> None:
    """``openmart evaluate --chunk-by``: a progress bar over the chunks, then one row per chunk
    and measurement."""
    with progress_bar("evaluating chunks", 1) as bar:
        task = bar.add_task("cutting chunks", total=None)

        def chunk(index: int, total: int) -> None:
            bar.update(task, total=total, completed=index, description=f"chunk {index + 1}/{total}")

        result = sub.evaluate(since=since, until=until, last=last, chunk_by=chunk_by, on_chunk=chunk, wait=not no_wait)
        bar.update(task, completed=len(result.chunks), total=len(result.chunks), description="evaluated")
    from openmart.cli.alerting import deliver_after_evaluate

    deliver_after_evaluate(state(ctx).mart)
    if json_:
        emit_json(result.to_dict())
        return
    frame = result.frame
    rows = [
        {
            **r,
            "chunk_start": r["chunk_start"].isoformat(timespec="minutes") if r["chunk_start"] is not None else "",
            "value": "n/a" if r["value"] is None or r["value"] != r["value"] else f"{r['value']:.4g}",
            "band": f"{r['lower']:.4g}..{r['upper']:.4g}"
            if r["lower"] is not None and r["lower"] == r["lower"]
            else "",
            "breached": "BREACHED" if r["breached"] else "",
        }
        for r in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]
    emit_table(
        rows,
        [
            "chunk",
            "chunk_start",
            "chunk_records",
            "monitor",
            "metric",
            "feature",
            "value",
            "threshold",
            "band",
            "breached",
        ],
        title=f"chunked evaluation {result.evaluation_id} of {subscription} ({len(result.chunks)} chunks)",
    )


def measurements(
    ctx: typer.Context,
    subscription: str,
    metric: str | None = typer.Option(None, "--metric", "-m", help="Only this metric."),
    monitor: str | None = typer.Option(None, "--monitor", help="Only this monitor."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The history of a subscription's measurements, oldest first."""
    frame = state(ctx).mart.subscriptions.get(subscription).measurements(metric=metric, monitor=monitor)
    cols = [
        "evaluation_id",
        "measured_at",
        "monitor",
        "metric",
        "feature",
        "group",
        "value",
        "threshold",
        "threshold_type",
        "breached",
        "chunk",
        "chunk_start",
        "chunk_records",
    ]
    rows = json.loads(frame.loc[:, cols].to_json(orient="records", date_format="iso")) if len(frame) else []
    if json_:
        emit_json(rows)
    else:
        emit_table(rows, cols)


def evaluations(
    ctx: typer.Context,
    subscription: str,
    status: str | None = typer.Option(None, "--status", help="running, finished, failed or abandoned."),
    limit: int = typer.Option(20, "--limit", help="The newest N."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """A subscription's evaluations, newest first, with why one failed or was abandoned (an
    evaluation whose process died is marked abandoned here)."""
    rows = [
        e.to_dict() for e in state(ctx).mart.subscriptions.get(subscription).evaluations(status=status, limit=limit)
    ]
    if json_:
        emit_json(rows)
        return
    emit_table(
        [{**r, "error": f"{r['error_type']}: {r['error_message']}" if r["error_type"] else None} for r in rows],
        ["id", "status", "started_at", "finished_at", "records", "scored_feedback", "runner", "error"],
    )


alerts_app = typer.Typer(
    cls=OpenmartGroup,
    invoke_without_command=True,
    help="""Alerts: breached thresholds, open -> acknowledged -> resolved.

A later evaluation in which the measurement passes resolves its alert; while an alert is not
resolved, the same breach updates it (occurrences, latest evaluation) instead of opening another.

Examples:

  openmart alerts                                  # open alerts

  openmart alerts --status all --subscription credit --json

  openmart alerts ack 12 --by ana --note "retraining"

  openmart alerts resolve 12

Delivery (one message when an alert opens, one when it resolves; docs/alerts.md):

  openmart alerts channel add credit slack --kind webhook --set url=https://hooks.slack.com/services/...

  openmart alerts deliveries --status failed

  openmart alerts retry 7

  openmart alerts deliver --follow
""",
)

_ALERT_COLUMNS = [
    "id",
    "subscription",
    "status",
    "monitor",
    "metric",
    "feature",
    "group",
    "message",
    "occurrences",
    "evaluation_id",
    "last_evaluation_id",
    "created_at",
    "last_seen_at",
    "acknowledged_by",
    "resolved_by",
    "note",
]


@alerts_app.callback()
def alerts(
    ctx: typer.Context,
    status: str = typer.Option("open", "--status", help="open, acknowledged, resolved or all."),
    subscription: str | None = typer.Option(None, "--subscription", "-s", help="Only this subscription's."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Alerts (open ones unless --status says otherwise), oldest first."""
    if ctx.invoked_subcommand is not None:
        return
    frame = state(ctx).mart.alerts(status=status, subscription=subscription)
    rows = json.loads(frame.loc[:, _ALERT_COLUMNS].to_json(orient="records", date_format="iso")) if len(frame) else []
    if json_:
        emit_json(rows)
    else:
        emit_table(rows, ["id", "subscription", "status", "message", "occurrences", "last_seen_at"])


def _alert_out(alert: Any, json_: bool, verb: str) -> None:
    if json_:
        emit_json(alert.to_dict())
    else:
        out.print(f"alert {alert.id} {verb}: {alert.message}", highlight=False)


@alerts_app.command("ack")
def alerts_ack(
    ctx: typer.Context,
    alert_id: int = typer.Argument(..., metavar="ID", help="The alert's id (openmart alerts)."),
    by: str | None = typer.Option(None, "--by", help="Who acknowledges it."),
    note: str | None = typer.Option(None, "--note", help="A note kept with the alert."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Acknowledge an open alert: someone is on it."""
    _alert_out(state(ctx).mart.acknowledge_alert(alert_id, by=by, note=note), json_, "acknowledged")


@alerts_app.command("resolve")
def alerts_resolve(
    ctx: typer.Context,
    alert_id: int = typer.Argument(..., metavar="ID", help="The alert's id (openmart alerts)."),
    by: str | None = typer.Option(None, "--by", help="Who resolves it."),
    note: str | None = typer.Option(None, "--note", help="A note kept with the alert."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Resolve an open or acknowledged alert (the same breach again opens a new one)."""
    _alert_out(state(ctx).mart.resolve_alert(alert_id, by=by, note=note), json_, "resolved")
