"""The ``explanations`` table: explanations are computed once and read back without recomputing."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openmart.mart import models

_FIELDS = (
    "scoring_id",
    "method",
    "prediction",
    "attributions",
    "base_value",
    "contrastive",
    "elapsed_ms",
    "scoring_calls",
    "link",
    "estimate",
)


def latest(
    conn: Connection, subscription_id: int, scoring_id: str, method: str, link: str = "identity"
) -> dict[str, Any] | None:
    """The newest stored explanation of one record by one method in one link's space, or None
    (rows stored before links were recorded are in the identity link's)."""
    t = models.Explanation
    same_link = sa.func.coalesce(t.link, "identity") == link
    row = conn.execute(
        sa.select(*(getattr(t, f) for f in _FIELDS))
        .where(t.subscription_id == subscription_id, t.scoring_id == scoring_id, t.method == method, same_link)
        .order_by(t.id.desc())
        .limit(1)
    ).first()
    return dict(row._mapping) if row is not None else None


def insert(conn: Connection, subscription_id: int, values: dict[str, Any]) -> None:
    conn.execute(sa.insert(models.Explanation).values(subscription_id=subscription_id, **values))


def recent(conn: Connection, subscription_id: int, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` explanations of a subscription, newest first."""
    t = models.Explanation
    rows = conn.execute(
        sa.select(*(getattr(t, f) for f in _FIELDS), t.created_at)
        .where(t.subscription_id == subscription_id)
        .order_by(t.id.desc())
        .limit(limit)
    ).all()
    return [dict(r._mapping) for r in rows]
