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
    emit_table,
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

VERSION_HELP = (
    "The model version of records without an asset_revision of their own (default: the current version; "
    "one new to the mart becomes current)."
)


def _log_file(
    store: RecordStore,
    accepted: list[str],
    source: RecordFile,
    on_duplicate: OnDuplicate,
    allow_extra_columns: bool,
    version: str | None,
) -> int:
    total, path, verb = source.count(), source.path, "logging"
    with progress_bar(f"{verb} {path.name}", total) as bar, source.located():
        task = bar.add_task(f"{verb} {path.name}", total=total)
        batches = source.records(accepted, allow_extra_columns=allow_extra_columns)
        _, rows = store.log_batches(
            batches, progress=lambda n: bar.advance(task, n), on_duplicate=on_duplicate, version=version
        )
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
        version: str | None = typer.Option(None, "--version", help=VERSION_HELP),
    ) -> None:
        """Store the file's records, all or none (a bad record is named and nothing is written)."""
        source = open_input(file, encoding, allow_short_rows=allow_short_rows)  # a bad file: before the mart opens
        sub = state(ctx).mart.subscriptions.get(subscription)
        store = getattr(sub, str(kind))
        mode = OnDuplicate.REPLACE if replace else OnDuplicate.REFUSE
        rows = _log_file(store, accepted_columns(kind, sub.schema), source, mode, allow_extra_columns, version)
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
reference_app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="Reference data: the labelled sets (training, validation) of each model version; the reference version's "
    "training set is the baseline monitors compare against.\n\nExample: openmart reference load churn train.csv",
)


@reference_app.command("load")
def load_reference(
    ctx: typer.Context,
    subscription: str,
    file: Path = typer.Argument(..., help="CSV, Parquet or JSONL."),
    environment: str = typer.Option("training", "--environment", "-e", help="training or validation."),
    version: str | None = typer.Option(None, "--version", help="The model version (default: the current one)."),
    add: bool = typer.Option(False, "--add", help="Add to the set (default: the file replaces it)."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
    replace: bool = typer.Option(False, "--replace", hidden=True, help="The default; kept for older scripts."),
    encoding: str | None = typer.Option(None, "--encoding", help=ENCODING_HELP),
    allow_extra_columns: bool = typer.Option(False, "--allow-extra-columns", help=EXTRA_HELP),
    allow_short_rows: bool = typer.Option(False, "--allow-short-rows", help=SHORT_HELP),
) -> None:
    """Store a labelled set (the file replaces the set of that environment and version), all or
    none. A training set of the current version (or the first one) becomes THE reference, its
    statistics computed over the whole set."""
    source = open_input(file, encoding, allow_short_rows=allow_short_rows)  # a bad file: before the mart opens
    sub = state(ctx).mart.subscriptions.get(subscription)
    accepted = accepted_columns(RecordKind.REFERENCE, sub.schema)
    with source.located():
        # read whole, through the API's load: the set's rows and its profile are stored together
        frame = source.read(accepted, allow_extra_columns=allow_extra_columns)
        rows = sub.reference.load(
            frame, replace=not add, allow_extra_columns=allow_extra_columns, environment=environment, version=version
        )
    note_dropped(source)
    stored = {"environment": environment, "version": version or sub.record.asset_revision}
    is_reference = stored["environment"] == "training" and stored["version"] == sub.reference_version
    if json_:
        emit_json(
            {"subscription": subscription, "kind": "reference", "records": rows, **stored, "reference": is_reference}
        )
    else:
        what = f"{stored['environment']} set of version {stored['version']!r}"
        err.print(
            f"{rows} records stored as the {what} of {subscription!r}" + (" (the reference)" if is_reference else "")
        )


@reference_app.command("sets")
def reference_sets(
    ctx: typer.Context,
    subscription: str,
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The labelled sets stored: environment, version, records, and which one is THE reference."""
    frame = state(ctx).mart.subscriptions.get(subscription).reference.sets()
    rows = frame.to_dict(orient="records")
    if json_:
        emit_json(rows)
        return
    shown = [{**r, "reference": "*" if r["reference"] else ""} for r in rows]
    emit_table(shown, ["environment", "version", "records", "reference"], title=f"labelled sets of {subscription}")


@reference_app.command("use")
def use_reference(
    ctx: typer.Context,
    subscription: str,
    version: str = typer.Argument(..., help="The version whose training set becomes the reference."),
) -> None:
    """Make VERSION's training set THE reference (drift's default baseline); its statistics are
    computed again."""
    rows = state(ctx).mart.subscriptions.get(subscription).reference.use(version)
    err.print(f"the reference of {subscription!r} is now the training set of version {version!r} ({rows} records)")


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
