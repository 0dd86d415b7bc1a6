"""The DuckDB engine: pieces computed over Parquet files (an archive, an export) on every core of
one machine, without loading them into memory. DuckDB streams the files and keeps only the
aggregates' state; ``memory_limit`` caps what it may use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from openmart.aggregates.specs import Pieces, Spec
from openmart.mart.engines.compile import DUCKDB, query
from openmart.mart.engines.results import piece


def _source(paths: Sequence[str | Path]) -> str:
    files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{files}], union_by_name = true) w"


def run(
    paths: Sequence[str | Path], specs: Sequence[Spec], *, memory_limit: str = "1GB", threads: int | None = None
) -> Pieces:
    """Every spec over the rows of the Parquet files (globs allowed)."""
    import duckdb  # an optional engine: imported when used

    if not paths:
        return Pieces.of(specs)
    con = duckdb.connect(config={"memory_limit": memory_limit, **({"threads": threads} if threads else {})})
    try:
        source = _source(paths)
        return Pieces({spec: piece(spec, con.execute(query(spec, source, DUCKDB)).fetchall()) for spec in specs})
    finally:
        con.close()
