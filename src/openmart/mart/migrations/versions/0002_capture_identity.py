"""mart identity, set-aside captured records, capture events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

``mart_identity`` holds the id a mart is given when it is created: anything openmart keeps on
disk for a mart (the capture spool) is keyed by it, so two marts never share files.
``capture_set_aside`` keeps captured records the mart could not take as they were (with the raw
exchange and the reason) until ``openmart capture replay`` stores them; ``capture_events`` says
what capture could not keep (records dropped past its memory bound) and when.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mart_identity",
        sa.Column("id", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("mart_id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_mart_identity_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mart_identity")),
    )
    op.execute("INSERT INTO mart_identity DEFAULT VALUES")
    op.create_table(
        "capture_set_aside",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("scoring_id", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("request", sa.LargeBinary(), nullable=True),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("record", sa.LargeBinary(), nullable=True),
        sa.Column("scoring_timestamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_time", sa.Double(), nullable=True),
        sa.Column("set_aside_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_capture_set_aside_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_set_aside")),
        sa.UniqueConstraint("subscription_id", "scoring_id", name="uq_capture_set_aside_subscription_scoring"),
    )
    op.create_table(
        "capture_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_capture_events_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_events")),
    )
    op.create_index(op.f("ix_capture_events_subscription_id"), "capture_events", ["subscription_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_capture_events_subscription_id"), table_name="capture_events")
    op.drop_table("capture_events")
    op.drop_table("capture_set_aside")
    op.drop_table("mart_identity")
