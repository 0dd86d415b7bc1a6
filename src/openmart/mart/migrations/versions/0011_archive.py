"""the archive: closed periods of payload and feedback moved to Parquet, with a manifest

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24

``archive_segments``: one row per (subscription, kind, UTC day) moved out of a record table into a
Parquet file: where the file is, how many rows and bytes it holds, its SHA-256, and its status.
``writing``: the file may exist but the rows are still in the table (a run died between the copy
and the delete; the next run writes it again). ``complete``: the rows were deleted from the
table in the transaction that marked it so, and live in the file only. A record is in exactly one
place at any time. ``subscriptions.archive_after_days``: the retention policy (whole UTC days
older than this many days are archived by ``openmart archive run``; NULL: keep everything hot).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_segments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscription_id", sa.Integer, sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("rows", sa.BigInteger),
        sa.Column("bytes", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False, server_default="writing"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("subscription_id", "kind", "period_start", name="uq_archive_segments_period"),
        sa.CheckConstraint("kind IN ('payload', 'feedback')", name="ck_archive_segments_kind"),
        sa.CheckConstraint("status IN ('writing', 'complete')", name="ck_archive_segments_status"),
    )
    op.add_column("subscriptions", sa.Column("archive_after_days", sa.Integer, nullable=True))


def downgrade() -> None:
    op.drop_column("subscriptions", "archive_after_days")
    op.drop_table("archive_segments")
