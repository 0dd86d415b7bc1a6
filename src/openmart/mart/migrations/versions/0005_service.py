"""the service: API keys, monitor schedules, the scoring-request log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

``api_keys``: keys for ``openmart serve``, made by ``openmart keys create``. Only a SHA-256 of the
key's secret part is kept (the secret is 32 random bytes, so a slow password hash adds nothing);
``prefix`` is the public part a key is found by; a revoked key keeps its row (``revoked_at``).

``monitors`` gains a schedule: ``schedule_seconds`` (NULL: the kind's default, as OpenScale's:
quality and fairness hourly, drift every three hours) and ``next_run_at``, the time the service's
scheduler next runs it. A scheduler claims a due run by moving ``next_run_at`` forward in one
UPDATE, so two ``serve`` processes never both start it, and a run missed during downtime runs
once, not once per missed period. Quality, fairness and drift monitors enabled before this
migration start on their default periods from now.

``scoring_requests``: one row per scoring request capture saw (answered or not), for the
performance monitor: when, the HTTP status, records in the request, request and response bytes,
latency, and where it came from (proxy, score, rest, openscale).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("scope IN ('read', 'write', 'admin')", name="ck_api_keys_scope"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )
    op.add_column("monitors", sa.Column("schedule_seconds", sa.Integer(), nullable=True))
    op.add_column("monitors", sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint("ck_monitors_schedule_positive", "monitors", "schedule_seconds > 0")
    # monitors enabled before the scheduler existed start on their kind's default period, as new ones do
    op.execute(
        "UPDATE monitors SET next_run_at = now() + CASE kind WHEN 'drift' THEN interval '3 hours' "
        "ELSE interval '1 hour' END WHERE enabled AND kind IN ('quality', 'fairness', 'drift')"
    )
    op.create_table(
        "scoring_requests",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "subscription_id",
            sa.Integer(),
            sa.ForeignKey(
                "subscriptions.id", ondelete="CASCADE", name="fk_scoring_requests_subscription_id_subscriptions"
            ),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("request_bytes", sa.Integer(), nullable=True),
        sa.Column("response_bytes", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
    )
    op.create_index("ix_scoring_requests_subscription_at", "scoring_requests", ["subscription_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_scoring_requests_subscription_at", table_name="scoring_requests")
    op.drop_table("scoring_requests")
    op.drop_constraint("ck_monitors_schedule_positive", "monitors", type_="check")
    op.drop_column("monitors", "next_run_at")
    op.drop_column("monitors", "schedule_seconds")
    op.drop_table("api_keys")
