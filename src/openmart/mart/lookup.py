"""Reads of a subscription's record tables by many scoring ids: which ids are stored, and the
rows stored under them. Ingest of captured traffic and ground truth uses them to skip what is
stored already and to label payload records by id. Each function takes the connection of the
caller's transaction (see :mod:`openmart.mart.record_store`); ids go in chunks, each one
indexed query."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pandas as pd
from sqlalchemy.engine import Connection

from openmart.mart.identifiers import quote
from openmart.mart.record_store import driver

CHUNK = 50_000


def _chunks(ids: Iterable[Any]) -> Iterator[list[str]]:
    part: list[str] = []
    for i in ids:
        part.append(str(i))
        if len(part) == CHUNK:
            yield part
            part = []
    if part:
        yield part


def stored_ids(conn: Connection, table: str, ids: Iterable[Any]) -> set[str]:
    """Those of ``ids`` that ``table`` holds."""
    found: set[str] = set()
    with driver(conn).cursor() as cur:
        for part in _chunks(ids):
            cur.execute(f"SELECT DISTINCT scoring_id FROM {quote(table)} WHERE scoring_id = ANY(%s)", (part,))
            found.update(r[0] for r in cur.fetchall())
    return found


def rows_by_id(conn: Connection, table: str, ids: Iterable[Any], columns: Sequence[str]) -> pd.DataFrame:
    """``scoring_id`` and ``columns`` of the rows stored under ``ids`` (an absent id: no row)."""
    names = ["scoring_id", *(c for c in columns if c != "scoring_id")]
    select = ", ".join(quote(c) for c in names)
    rows: list[tuple[Any, ...]] = []
    with driver(conn).cursor() as cur:
        for part in _chunks(ids):
            cur.execute(f"SELECT {select} FROM {quote(table)} WHERE scoring_id = ANY(%s)", (part,))
            rows += cur.fetchall()
    return pd.DataFrame(rows, columns=names)
