"""`openmart monitor`, `openmart evaluate`, `openmart measurements`, `openmart alerts`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from openmart.cli.common import OpenmartGroup, emit_json, emit_table, err, fail, out, progress_bar, state
from openmart.monitors.config import MonitorKind

app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="""Monitors: quality, fairness, drift, explainability.

Examples:

  openmart monitor enable credit quality --threshold roc_auc=0.8 --min-records 100

  openmart monitor enable credit fairness --protected sex --monitored female --reference male --favourable 1

  openmart monitor enable credit fairness --protected age --monitored 18-25 --reference 26-75 --favourable 1

  openmart monitor enable credit drift --method auto --drift-share 0.5

  openmart monitor list credit --json
""",
)


@app.command()
def enable(
    ctx: typer.Context,
    subscription: str,
    kind: MonitorKind = typer.Argument(..., help="quality, fairness, drift or explainability."),
    threshold: list[str] = typer.Option(
        [],
        "--threshold",
        "-t",
        help="metric=value (repeat); metric:upper=value "
        "or metric:lower=value to choose the side. Drift: a bare number.",
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
        help="Drift: auto, psi, ks, chisquare, jensenshannon, wasserstein. Explainability: shap or lime.",
    ),
    drift_share: float | None = typer.Option(
        None, "--drift-share", help="Drift: share of drifting features that makes the dataset drift."
    ),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Enable (or reconfigure) a monitor on a subscription."""
    options: dict[str, Any] = json.loads(config_file.read_text()) if config_file else {}
    if threshold:
        options["thresholds"] = threshold
    if min_records is not None:
        options["min_records"] = min_records
    if kind is MonitorKind.FAIRNESS and (protected or monitored or reference):
        if not (len(protected) == len(monitored) == len(reference)):
            fail("give --protected, --monitored and --reference once for each protected attribute")
        options["attributes"] = [
            {"feature": p, "monitored": m, "reference": r}
            for p, m, r in zip(protected, monitored, reference, strict=True)
        ]
    if favourable is not None:
        options["favourable"] = favourable
    if method is not None:
        options["method"] = method
    if drift_share is not None:
        options["drift_share"] = drift_share
    sub = state(ctx).mart.subscriptions.get(subscription)
    config = sub.monitors.enable(kind, **options)
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
def disable(ctx: typer.Context, subscription: str, kind: MonitorKind) -> None:
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
                {**c, "thresholds": "; ".join(f"{t['metric']} {t['type']} {t['value']:g}" for t in c["thresholds"])}
                for c in configs
            ],
            ["kind", "enabled", "min_records", "thresholds", "parameters"],
        )


def evaluate(
    ctx: typer.Context,
    subscription: str,
    since: str | None = typer.Option(None, "--since", help="Window start (ISO time)."),
    until: str | None = typer.Option(None, "--until", help="Window end (ISO time, exclusive)."),
    last: int | None = typer.Option(None, "--last", help="Only the newest N records."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Run the subscription's enabled monitors over a window; store measurements and alerts.

    Example: openmart evaluate credit --last 1000 --json
    """
    from openmart.evaluation.runner import evaluate as run

    sub = state(ctx).mart.subscriptions.get(subscription)
    from openmart.api import parse_time

    kinds = [c.kind for c in sub.monitors.configs() if c.enabled]
    if not kinds:
        fail(f"subscription {subscription!r} has no enabled monitor: `openmart monitor enable` one first")
    with progress_bar("evaluating", len(kinds)) as bar:
        task = bar.add_task("evaluating", total=len(kinds))

        def step(kind: str) -> None:
            bar.update(task, description=f"evaluating {kind}")
            bar.advance(task, 0)

        result = run(sub, since=parse_time(since), until=parse_time(until), last=last, progress=step)
        bar.update(task, completed=len(kinds), description="evaluated")
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
    ]
    rows = json.loads(frame.loc[:, cols].to_json(orient="records", date_format="iso")) if len(frame) else []
    if json_:
        emit_json(rows)
    else:
        emit_table(rows, cols)


def alerts(
    ctx: typer.Context,
    subscription: str | None = typer.Option(None, "--subscription", "-s"),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Open alerts (breached thresholds), oldest first."""
    frame = state(ctx).mart.alerts()
    if subscription:
        frame = frame[frame["subscription"] == subscription]
    cols = ["id", "subscription", "evaluation_id", "monitor", "metric", "message", "status", "created_at"]
    rows = json.loads(frame.loc[:, cols].to_json(orient="records", date_format="iso")) if len(frame) else []
    if json_:
        emit_json(rows)
    else:
        emit_table(rows, cols)
