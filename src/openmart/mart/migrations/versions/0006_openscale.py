"""OpenScale's V1 routes: service bindings and subscriptions as the ``ibm-ai-openscale`` client sees them

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

``openscale_bindings``: an OpenScale binding's uid, display name and service type over an openmart
binding (which keeps the settings, secrets sealed). ``openscale_subscriptions``: the asset, the
asset properties (schemas learned from the first payload), the deployments and the
configurations the client set, and the openmart subscription made at the first payload.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "openscale_bindings",
        sa.Column("uid", sa.String(length=64), primary_key=True),
        sa.Column(
            "binding_id",
            sa.Integer(),
            sa.ForeignKey("bindings.id", ondelete="CASCADE", name="fk_openscale_bindings_binding_id_bindings"),
            nullable=False,
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("service_type", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "openscale_subscriptions",
        sa.Column("uid", sa.String(length=64), primary_key=True),
        sa.Column(
            "binding_uid",
            sa.String(length=64),
            sa.ForeignKey(
                "openscale_bindings.uid",
                ondelete="CASCADE",
                name="fk_openscale_subscriptions_binding_uid_openscale_bindings",
            ),
            nullable=False,
        ),
        sa.Column(
            "subscription_id",
            sa.Integer(),
            sa.ForeignKey(
                "subscriptions.id", ondelete="SET NULL", name="fk_openscale_subscriptions_subscription_id_subscriptions"
            ),
            nullable=True,
        ),
        sa.Column("asset", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("asset_properties", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("deployments", postgresql.JSONB(), nullable=False, server_default="[]"),
        sa.Column("configurations", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_openscale_subscriptions_binding_uid", "openscale_subscriptions", ["binding_uid"])


def downgrade() -> None:
    op.drop_index("ix_openscale_subscriptions_binding_uid", table_name="openscale_subscriptions")
    op.drop_table("openscale_subscriptions")
    op.drop_table("openscale_bindings")
