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
from openmart.inputs import CHUNK_ROWS, RecordFile

# colours only on a terminal; rich checks isatty itself, NO_COLOR is honoured too
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


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


# Typer vendors its own click (typer._click): its usage errors are found through its public BadParameter
UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def _shows_help(exc: Exception) -> bool:
    return type(exc).__name__ == "NoArgsIsHelpError"  # `openmart payload` alone: the help, as asked


class OpenmartGroup(typer.core.TyperGroup):
    """Turns openmart's own errors into one-line messages and a non-zero exit, no traceback:
    2 for input the user must change (a bad option, file, record or setting), 1 for the rest."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as exc:  # the root's own options
            if _shows_help(exc):
                raise
            usage_error(exc)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # a sub-command's options and arguments, parsed here
            if _shows_help(exc):
                raise
            usage_error(exc)
        except (ConfigError, ValidationError) as exc:  # a setting or an input the user must change
            fail(str(exc), code=2)
        except OpenmartError as exc:
            fail(str(exc))
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            fail(f"{exc.strerror}: {exc.filename}")


def usage_error(exc: Exception) -> None:
    """Click's usage error (a bad option value, a missing argument) as one line, exit 2."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "openmart"
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    fail(f"{message} (see '{where} --help')", code=2)


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


# -- input files (openmart.inputs reads them; these are the options every reading command shares) ------

ENCODING_HELP = "The file's text encoding when it is neither UTF-8 nor UTF-16/32 with a byte-order mark (e.g. latin-1)."
EXTRA_HELP = "Drop columns the subscription does not take (default: refused by name)."
SHORT_HELP = "Read CSV rows with fewer fields than the header (and JSON records lacking keys) as empty (NULL)."


def open_input(path: Path, encoding: str | None = None, *, allow_short_rows: bool = False) -> RecordFile:
    return RecordFile(path, encoding=encoding, allow_short_rows=allow_short_rows)


def note_dropped(source: RecordFile) -> None:
    if source.dropped:
        err.print(
            f"note: {source.path}: dropped columns the subscription does not take: {source.dropped}",
            highlight=False,
            markup=False,
        )


def read_file(path: Path, encoding: str | None = None, *, allow_short_rows: bool = False) -> pd.DataFrame:
    """A whole (reference) file; an unreadable one is one InputError line."""
    source = open_input(path, encoding, allow_short_rows=allow_short_rows)
    with source.located():
        return source.read()


def iter_file(
    path: Path, chunk_rows: int = CHUNK_ROWS, encoding: str | None = None, *, allow_short_rows: bool = False
) -> Iterator[pd.DataFrame]:
    """A CSV, Parquet or JSON(-lines) file in chunks, so large files stream with bounded memory."""
    yield from open_input(path, encoding, allow_short_rows=allow_short_rows).chunks(chunk_rows)


def count_rows(path: Path) -> int | None:
    return RecordFile(path).count()


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
