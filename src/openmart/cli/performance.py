"""``openmart performance SUB``: throughput, payload size, latency and error rate of a
subscription's scoring requests (the performance monitor's figures, read on demand)."""

from __future__ import annotations

from typing import Any

import typer

from openmart.cli.common import emit_json, emit_table, out, state


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.4g}" if isinstance(value, float) else f"{value:,}"


def performance(
    ctx: typer.Context,
    subscription: str,
    since: str | None = typer.Option(None, "--since", help="From this time (ISO 8601; naive is UTC)."),
    until: str | None = typer.Option(None, "--until", help="Before this time."),
    last: int | None = typer.Option(None, "--last", help="Only the newest N requests."),
    bucket: str = typer.Option("minute", "--bucket", help="Time series bucket: minute, hour, day, or e.g. 5m, 1h."),
    series: bool = typer.Option(False, "--series", help="Also print the time series (always in --json)."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output (metrics, counts and series)."),
) -> None:
    """Scoring requests and records per minute, records per request, payload sizes, latency
    p50/p95/p99 (per request and per record) and error rate, over the window."""
    report = (
        state(ctx).mart.subscriptions.get(subscription).performance(since=since, until=until, last=last, bucket=bucket)
    )
    data = report.to_dict()
    if json_:
        emit_json(data)
        return
    counts = f"{data['requests']:,} requests ({data['errors']:,} errors), {data['records']:,} records"
    if data["minutes"] is not None:
        counts += f" over {data['minutes']:,.1f} min"
    out.print(f"{subscription}: {counts}", highlight=False)
    rows = [{"metric": k, "value": _number(v), "unit": data["units"][k]} for k, v in data["metrics"].items()]
    emit_table(rows, ["metric", "value", "unit"])
    if series and "series" in data:
        cols = ["bucket", "requests", "errors", "records", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
        shown = [{c: _number(r[c]) if c != "bucket" else r[c] for c in cols} for r in data["series"]["rows"]]
        emit_table(shown, cols, title=f"per {data['series']['bucket_seconds']:g} s")
