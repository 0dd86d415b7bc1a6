"""`openmart payload|feedback|reference` and `openmart records`: logging and reading records."""

from __future__ import annotations

from pathlib import Path

import typer

from openmart import arguments
from openmart.api import RecordStore
from openmart.cli.common import (
    ENCODING_HELP,
    EXTRA_HELP,
    SHORT_HELP,
    OpenmartGroup,
    emit_json,
    err,
    note_dropped,
    open_input,
    out,
    progress_bar,
    state,
)
from openmart.inputs import RecordFile
from openmart.mart.record_store import OnDuplicate
from openmart.mart.records import RecordKind, accepted_columns


def _log_file(
    store: RecordStore, accepted: list[str], source: RecordFile, on_duplicate: OnDuplicate, allow_extra_columns: bool
) -> int:
    total, path, verb = source.count(), source.path, "logging"
    with progress_bar(f"{verb} {path.name}", total) as bar, source.located():
        task = bar.add_task(f"{verb} {path.name}", total=total)
        batches = source.records(accepted, allow_extra_columns=allow_extra_columns)
        _, rows = store.log_batches(batches, progress=lambda n: bar.advance(task, n), on_duplicate=on_duplicate)
    return rows


def _group(kind: RecordKind, verb: str, help_text: str) -> typer.Typer:
    group = typer.Typer(cls=OpenmartGroup, no_args_is_help=True, help=help_text)

    @group.command(verb)
    def log(
        ctx: typer.Context,
        subscription: str,
        file: Path = typer.Argument(..., help="CSV, Parquet or JSONL."),
        json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
        replace: bool = typer.Option(
            False, "--replace", help="A record whose scoring_id is stored already replaces it (default: refused)."
        ),
        encoding: str | None = typer.Option(None, "--encoding", help=ENCODING_HELP),
        allow_extra_columns: bool = typer.Option(False, "--allow-extra-columns", help=EXTRA_HELP),
        allow_short_rows: bool = typer.Option(False, "--allow-short-rows", help=SHORT_HELP),
    ) -> None:
        """Store the file's records, all or none (a bad record is named and nothing is written)."""
        source = open_input(file, encoding, allow_short_rows=allow_short_rows)  # a bad file: before the mart opens
        sub = state(ctx).mart.subscriptions.get(subscription)
        store = getattr(sub, str(kind))
        accepted = accepted_columns(kind, sub.schema)
        if kind is RecordKind.REFERENCE:
            with source.located():
                rows = store.load(source.read(accepted, allow_extra_columns=allow_extra_columns))
        else:
            mode = OnDuplicate.REPLACE if replace else OnDuplicate.REFUSE
            rows = _log_file(store, accepted, source, mode, allow_extra_columns)
        note_dropped(source)
        if json_:
            emit_json({"subscription": subscription, "kind": str(kind), "records": rows})
        else:
            err.print(f"{rows} {kind} records stored for {subscription!r}")

    return group


payload_app = _group(
    RecordKind.PAYLOAD,
    "log",
    "Payload records: what the model saw and said.\n\nExample: openmart payload log churn scored.csv",
)
feedback_app = _group(
    RecordKind.FEEDBACK,
    "log",
    "Feedback records: ground truth labels.\n\nExample: openmart feedback log churn labelled.csv",
)
reference_app = _group(
    RecordKind.REFERENCE,
    "load",
    "Reference data: the baseline monitors compare against.\n\nExample: openmart reference load churn train.csv",
)


def records(
    ctx: typer.Context,
    subscription: str,
    kind: RecordKind = typer.Option(RecordKind.PAYLOAD, "--kind", "-k", help="payload, feedback or reference."),
    limit: int = typer.Option(20, "--limit", "-n", help="How many records (newest first), 1 or more."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output (JSON records)."),
) -> None:
    """Show a subscription's records, newest first."""
    limit = arguments.integer(limit, "--limit", minimum=1)
    sub = state(ctx).mart.subscriptions.get(subscription)
    frame = getattr(sub, str(kind)).read(limit=limit, newest_first=True)
    if json_:
        import sys

        sys.stdout.write(frame.to_json(orient="records", date_format="iso", indent=2) + "\n")
    else:
        out.print(frame.to_string(max_cols=12, max_colwidth=40) if len(frame) else "no records")
