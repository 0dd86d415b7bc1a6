"""Reads of a subscription's record tables by scoring id: which ids are stored, and the rows
stored under them (ingest of captured traffic and ground truth skips what is stored already and
labels payload records by id). Ids are looked up in chunks, each one indexed query."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
from sqlalchemy.engine import Engine

from openmart.mart.identifiers import quote

CHUNK = 50_000


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    part: list[str] = []
    for i in ids:
        part.append(str(i))
        if len(part) == CHUNK:
            yield part
            part = []
    if part:
        yield part


def stored_ids(engine: Engine, table: str, ids: Iterable[str]) -> set[str]:
    """Those of ``ids`` that ``table`` holds."""
    found: set[str] = set()
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            for part in _chunks(ids):
                cur.execute(f"SELECT DISTINCT scoring_id FROM {quote(table)} WHERE scoring_id = ANY(%s)", (part,))
                found.update(r[0] for r in cur.fetchall())
    finally:
        raw.close()
    return found


def rows_by_id(engine: Engine, table: str, ids: Iterable[str], columns: Sequence[str]) -> pd.DataFrame:
    """``scoring_id`` and ``columns`` of the rows stored under ``ids`` (absent ids: no row)."""
    names = ["scoring_id", *(c for c in columns if c != "scoring_id")]
    select = ", ".join(quote(c) for c in names)
    rows: list[tuple[object, ...]] = []
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            for part in _chunks(ids):
                cur.execute(f"SELECT {select} FROM {quote(table)} WHERE scoring_id = ANY(%s)", (part,))
                rows += cur.fetchall()
    finally:
        raw.close()
    return pd.DataFrame(rows, columns=names)
