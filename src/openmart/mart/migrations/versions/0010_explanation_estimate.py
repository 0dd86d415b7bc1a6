"""explanations: the link they were computed in and how good the estimate is

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24

``explanations.link``: the space the attributions are in (``identity``: the explained output
itself; ``logit``: its log-odds); NULL for rows written before, which were in the output's own
space. ``explanations.estimate``: how the attributions were computed and their error (estimator,
standard error of each, the error target, draws, rows scored, background size), as JSON.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("explanations", sa.Column("link", sa.String(length=16), nullable=True))
    op.add_column("explanations", sa.Column("estimate", JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("explanations", "estimate")
    op.drop_column("explanations", "link")
