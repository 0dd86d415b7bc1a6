"""The reads behind slices and root cause (``openmart.slices``): bin edges from a relation's
quantiles, and a labelled relation's rows as small integer bin codes, category text and the few
raw columns a user's slice expression names — one ``COPY``, parsed by Arrow.

Numeric features are binned here, in PostgreSQL (``width_bucket`` over the edges, a bound
array), because a bin code prints in one or two characters where a double prints in up to
seventeen: at a million rows and thirty features that is most of the time a fetch would take.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from openmart.mart.identifiers import quote
from openmart.mart.windows import Relation, driver, fetch_arrow

#: the code of a missing (NULL) numeric value; bin i of the edges is code i + 1
MISSING = 0


def _run(conn: Any, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    with driver(conn).cursor() as cur:
        cur.execute(sql, dict(params))
        return cur.fetchall()


def quantile_edges(
    conn: Any, relation: Relation, columns: Sequence[str], quantiles: Sequence[float]
) -> dict[str, list]:
    """Per numeric column, its values at ``quantiles`` (``percentile_cont``; NULLs ignored; an
    empty list for a column with no values). One scan."""
    if not columns:
        return {}
    parts = [f"percentile_cont(%(s_q)s::float8[]) WITHIN GROUP (ORDER BY w.{quote(c)})" for c in columns]
    sql, params = relation.query(f"SELECT {', '.join(parts)} FROM {{w}}", {"s_q": [float(q) for q in quantiles]})
    (row,) = _run(conn, sql, params)
    return {c: [float(v) for v in (row[i] or []) if v is not None] for i, c in enumerate(columns)}


def count(conn: Any, relation: Relation, column: str) -> int:
    """Rows of ``relation`` where ``column`` is not NULL."""
    (row,) = _run(conn, *relation.query(f"SELECT count(w.{quote(column)}) FROM {{w}}"))
    return int(row[0])


def coded_rows(
    conn: Any,
    relation: Relation,
    *,
    label: str,
    prediction: str,
    numeric_outputs: bool,
    edges: Mapping[str, Sequence[float]],
    categorical: Sequence[str],
    raw: Mapping[str, bool],
) -> pa.Table:
    """The rows of a labelled relation that have a label and a prediction: the outputs, the bin
    code of each numeric feature in ``edges`` (MISSING for NULL), the text of each categorical
    feature, and each ``raw`` column (name -> numeric?) as stored."""
    args: dict[str, Any] = {}
    cols = [f"w.{quote(label)} AS y_true", f"w.{quote(prediction)} AS y_pred"]
    types: dict[str, pa.DataType] = {"y_true": pa.float64() if numeric_outputs else pa.string()}
    types["y_pred"] = types["y_true"]
    for i, (name, cuts) in enumerate(edges.items()):
        args[f"s_e{i}"] = [float(v) for v in cuts]
        # width_bucket(x, edges) is 0 below the first edge, i at or above edge i: bins 1..k, NULL -> 0
        cols.append(f"coalesce(width_bucket(w.{quote(name)}, %(s_e{i})s::float8[]) + 1, {MISSING}) AS b{i}")
        types[f"b{i}"] = pa.int16()
    for i, name in enumerate(categorical):
        cols.append(f"w.{quote(name)}::text AS c{i}")
        types[f"c{i}"] = pa.string()
    for i, (name, numeric) in enumerate(raw.items()):
        cols.append(f"w.{quote(name)} AS r{i}")
        types[f"r{i}"] = pa.float64() if numeric else pa.string()
    sql, params = relation.query(
        f"SELECT * FROM (SELECT {', '.join(cols)} FROM {{w}}) q WHERE y_true IS NOT NULL AND y_pred IS NOT NULL", args
    )
    return fetch_arrow(conn, sql, params, types)
