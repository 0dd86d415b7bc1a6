"""Feedback that still needs the model's answer, behind typed functions.

A feedback record with neither a payload twin (same ``scoring_id``) nor a prediction of its own
cannot be judged by quality or fairness until the deployment has scored it. The evaluation
runner finds those records (:func:`unscored`), scores them through the binding in batches, and
stores the answers with :func:`store_predictions`: one bulk UPDATE from a temporary table, in
the caller's transaction (the evaluation's, so they commit with its results or not at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from psycopg2.extras import execute_values
from sqlalchemy.engine import Connection

from openmart.mart.identifiers import quote
from openmart.mart.subscriptions import SubscriptionRecord
from openmart.values import plain

_STAGE = "openmart_scored_feedback"


def _driver(conn: Connection) -> Any:
    return conn.connection.driver_connection


def unscored(conn: Connection, record: SubscriptionRecord) -> pd.DataFrame:
    """``record_id`` and the features of every feedback record with no payload twin and no
    prediction, oldest first; numeric features as numbers."""
    s = record.schema
    cols = ", ".join(f"f.{quote(c)}" for c in s.feature_names)
    sql = (
        f"SELECT f.record_id, {cols} FROM {quote(record.feedback_table)} f "
        f"WHERE f.{quote(s.prediction)} IS NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {quote(record.payload_table)} p WHERE p.scoring_id = f.scoring_id) "
        "ORDER BY f.record_id"
    )
    with _driver(conn).cursor() as cur:
        cur.execute(sql)
        names = [d[0] for d in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=names)
    for c in s.numeric_features:
        if c in frame.columns:
            frame[c] = pd.to_numeric(frame[c])
    return frame


def store_predictions(
    conn: Connection,
    record: SubscriptionRecord,
    record_ids: Sequence[int],
    predictions: Sequence[Any],
    probabilities: Sequence[Any] | None = None,
) -> int:
    """Write the model's answers into the feedback records (only those still without a
    prediction): staged in a temporary table typed like the feedback table's own columns, then
    ONE ``UPDATE ... FROM``. Returns how many records were updated."""
    if len(record_ids) != len(predictions) or (probabilities is not None and len(probabilities) != len(record_ids)):
        raise ValueError("record_ids, predictions and probabilities differ in length")
    if not record_ids:
        return 0
    s = record.schema
    table = quote(record.feedback_table)
    pred = quote(s.prediction)
    prob = quote(s.probability) if s.probability and probabilities is not None else None
    targets = ["record_id", pred] + ([prob] if prob else [])
    raw = _driver(conn)
    with raw.cursor() as cur:
        # the same column types as the feedback table, whatever the schema made them
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{_STAGE}")
        cur.execute(
            f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS SELECT {', '.join(targets)} FROM {table} WITH NO DATA"
        )
        rows = (
            zip(record_ids, predictions, probabilities, strict=True)
            if prob
            else zip(record_ids, predictions, strict=True)
        )
        execute_values(
            cur,
            f"INSERT INTO {_STAGE} ({', '.join(targets)}) VALUES %s",
            [tuple(plain(v) for v in row) for row in rows],
            page_size=10_000,
        )
        sets = f"{pred} = s.{pred}" + (f", {prob} = s.{prob}" if prob else "")
        cur.execute(f"UPDATE {table} f SET {sets} FROM {_STAGE} s WHERE f.record_id = s.record_id AND f.{pred} IS NULL")
        updated = cur.rowcount
        cur.execute(f"DROP TABLE pg_temp.{_STAGE}")
    return int(updated)
