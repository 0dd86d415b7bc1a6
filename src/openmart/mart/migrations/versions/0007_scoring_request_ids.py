"""scoring requests carry an id, so a replayed request is counted once

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

``scoring_requests.request_id``: the id capture gave the request (the proxy's scoring id, the
``X-Openmart-Scoring-Id`` its client got; a fresh one for a ``score()`` call or a failed
request; the caller's own for ``log_requests``). Unique per subscription, so a batch replayed
from the spool or the journal after an unacknowledged commit is not counted twice; NULL (a
caller that gives none) never conflicts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scoring_requests", sa.Column("request_id", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_scoring_requests_subscription_request", "scoring_requests", ["subscription_id", "request_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_scoring_requests_subscription_request", table_name="scoring_requests")
    op.drop_column("scoring_requests", "request_id")
