"""`openmart deployments`, `openmart score`, `openmart proxy`: scoring through bindings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from openmart import arguments
from openmart.cli.common import (
    ENCODING_HELP,
    EXTRA_HELP,
    SHORT_HELP,
    emit_json,
    emit_table,
    err,
    note_dropped,
    open_input,
    out,
    state,
)
from openmart.errors import ValidationError


def deployments(
    ctx: typer.Context,
    binding: str = typer.Argument(..., help="The binding to ask."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the deployments a binding reaches, and whether each is subscribed.

    Example: openmart deployments aws --json
    """
    mart = state(ctx).mart
    provider = mart.bindings.get(binding).connect()
    try:
        found = provider.list_deployments()
    finally:
        provider.close()
    subscribed = {s.deployment_id: s.name for s in mart.subscriptions.list() if s.binding == binding}
    rows = [
        {"id": d.id, "name": d.name, "kind": d.kind, "subscription": subscribed.get(d.id), "details": dict(d.details)}
        for d in found
    ]
    if json_:
        emit_json(rows)
    else:
        emit_table(rows, ["id", "name", "kind", "subscription"])


def score(
    ctx: typer.Context,
    subscription: str,
    file: Path = typer.Argument(..., help="CSV, Parquet or JSONL."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
    encoding: str | None = typer.Option(None, "--encoding", help=ENCODING_HELP),
    allow_extra_columns: bool = typer.Option(False, "--allow-extra-columns", help=EXTRA_HELP),
    allow_short_rows: bool = typer.Option(False, "--allow-short-rows", help=SHORT_HELP),
) -> None:
    """Score a file's records through the subscription's binding and log them.

    Prints each record's scoring_id, prediction and probability.

    Example: openmart score credit new_applicants.csv --json
    """
    from openmart.errors import RecordsRefused

    source = open_input(file, encoding, allow_short_rows=allow_short_rows)
    sub = state(ctx).mart.subscriptions.get(subscription)
    s = sub.schema
    accepted = [c.name for c in s.input_columns] + ["scoring_id", "scoring_timestamp", "asset_revision"]
    with source.located():
        records = source.read(accepted, allow_extra_columns=allow_extra_columns)
    note_dropped(source)
    refused: list[dict[str, str]] = []
    try:
        scored = sub.score(records, wait=True)
    except RecordsRefused as exc:
        scored, refused = exc.scored, exc.refused  # type: ignore[assignment]
        scored.attrs["openmart"] = exc.counts
    counts = scored.attrs["openmart"]
    cols = ["scoring_id", sub.schema.prediction] + (
        [sub.schema.probability] if sub.schema.probability and sub.schema.probability in scored.columns else []
    )
    view = scored.loc[:, cols]
    if refused:  # the output keeps its shape when all is well
        view = view.assign(refused=scored["scoring_id"].map({r["scoring_id"]: r["reason"] for r in refused}))
    if json_:
        sys.stdout.write(json.dumps(json.loads(view.to_json(orient="records")), indent=2) + "\n")
    else:
        out.print(view.to_string(index=False), highlight=False, markup=False)
    err.print(
        f"{counts['scored']} scored, {counts.get('stored', 0)} stored, {counts['refused']} refused "
        f"for {subscription!r}",
        highlight=False,
    )
    for r in refused:
        err.print(f"  refused {r['scoring_id']}: {r['reason']}", highlight=False, markup=False)
    if refused or counts.get("stored", 0) < counts["accepted"]:
        if not refused:
            err.print("  some records are not in the mart yet (spooled: see `openmart capture rejected`)")
        raise typer.Exit(1)


def proxy(
    ctx: typer.Context,
    subscription: str,
    port: int = typer.Option(8080, "--port", "-p", help="Port to listen on (1-65535)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.001, help="Seconds to wait for the deployment (504 after)."),
    durable: bool = typer.Option(
        False, "--durable", help="Answer only once the exchange is on disk (fsync'd); slower, nothing lost on a crash."
    ),
    refuse_when_degraded: bool = typer.Option(
        False,
        "--refuse-when-degraded",
        help="Answer scoring requests 503 (not forwarded) while capture cannot keep them.",
    ),
) -> None:
    """Run a capture proxy in front of the subscription's deployment.

    Clients send their usual requests to the proxy; answers come back unchanged with an
    X-Openmart-Scoring-Id header, and the payload is logged in the background (spooled to disk
    while the mart is unreachable). GET /_openmart/health shows the capture's health. SIGTERM or
    SIGINT stops it gracefully: requests in flight are answered and the capture flushed.

    Example: openmart proxy credit --port 8080
    """
    from openmart.scoring.proxy import serve

    port = arguments.port(port, "--port")
    timeout = arguments.number(timeout, "--timeout", minimum=0, exclusive_minimum=True)
    if not host.strip():
        raise ValidationError(f"--host must be an address to listen on, e.g. 127.0.0.1 (got {host!r})")
    sub = state(ctx).mart.subscriptions.get(subscription)
    err.print(f"capture proxy for {subscription!r} on http://{host}:{port} -> {sub.deployment_id}")
    serve(sub, host, port, timeout=timeout, durable=durable, refuse_when_degraded=refuse_when_degraded)
