"""What every command group shares: the context object, output (data on stdout, diagnostics on
stderr, JSON on request), input files, and the progress bar."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openmart import secrets
from openmart.api import Mart, connect
from openmart.errors import ConfigError, OpenmartError, ValidationError

# colours only on a terminal; rich checks isatty itself, NO_COLOR is honoured too
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
CHUNK_ROWS = 100_000


@dataclass
class CliContext:
    """The typed object in ``ctx.obj``: opens the mart on first use."""

    database_url: str | None = None
    schema: str = "openmart"
    _mart: Mart | None = field(default=None, repr=False)

    @property
    def mart(self) -> Mart:
        if self._mart is None:
            self._mart = connect(self.database_url, schema=self.schema)
            if self._mart.location.embedded_pgdata is not None:
                err.print(f"[dim]mart: {self._mart.location.describe()}[/dim]", highlight=False)
        return self._mart

    def close(self) -> None:
        if self._mart is not None:
            self._mart.close()


def state(ctx: typer.Context) -> CliContext:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj


class OpenmartGroup(typer.core.TyperGroup):
    """Turns openmart's own errors into one-line messages and a non-zero exit, no traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:  # a setting the user must change (e.g. an unusable data directory)
            fail(str(exc), code=2)
        except OpenmartError as exc:
            fail(str(exc))
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            fail(f"{exc.strerror}: {exc.filename}")


def fail(message: str, code: int = 1) -> None:
    """One line on stderr, a non-zero exit; scrubbed, as messages may quote a URL or a server's
    answer that echoes a credential."""
    err.print(f"error: {secrets.scrub(message)}", highlight=False, markup=False)
    raise typer.Exit(code)


def emit_json(data: Any) -> None:
    sys.stdout.write(secrets.scrub_known(json.dumps(data, indent=2, default=str)) + "\n")


def emit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else secrets.scrub_known(str(r.get(c))) for c in columns))
    out.print(table)


def parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"--set {pair!r}: expected key=value")
        settings[key.strip()] = value
    return settings


def split_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _format(path: Path) -> str:
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        return "parquet"
    if suffixes.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if suffixes.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    raise ValidationError(f"{path}: unknown file type (use .csv, .parquet or .jsonl)")


def read_file(path: Path) -> pd.DataFrame:
    """A whole (reference) file."""
    return pd.concat(list(iter_file(path)), ignore_index=True)


def iter_file(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """A CSV, Parquet or JSON-lines file in chunks, so large files stream with bounded memory."""
    if not path.exists():
        raise ValidationError(f"{path}: no such file")
    kind = _format(path)
    if kind == "csv":
        # only empty cells are missing: text such as "n/a" in a numeric column must be reported, not guessed
        yield from pd.read_csv(
            path,
            chunksize=chunk_rows,
            sep="\t" if path.suffix == ".tsv" else ",",
            keep_default_na=False,
            na_values=[""],
        )
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    else:
        try:
            yield from pd.read_json(path, lines=True, chunksize=chunk_rows)
        except ValueError as exc:
            raise ValidationError(f"{path}: not JSON lines ({exc})") from exc


def count_rows(path: Path) -> int | None:
    kind = _format(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as fh:
        lines = sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 20), b""))
    return max(lines - (1 if kind == "csv" else 0), 0)


def progress_bar(description: str, total: int | None) -> Progress:
    """A progress bar on stderr (hidden when stderr is not a terminal)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )
