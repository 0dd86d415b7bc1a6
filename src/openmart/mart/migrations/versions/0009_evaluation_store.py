"""the evaluation store: model versions, environments of labelled sets, chunks

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

``model_versions``: every version a subscription has known (``version`` is the asset revision
records carry), with where it came from (``subscribe``, ``migration``, ``user``, ``records``: a
record reported it) and when it started. ``subscriptions.asset_revision`` stays the CURRENT
version: records logged or captured without a version get it, in the transaction that writes
them. A subscription that had none gets version ``1``.

Labelled sets: the reference table of each subscription now holds every labelled set, each row
with its ``environment`` (``training`` or ``validation``) and ``asset_revision`` (its model
version). Today's reference becomes the training set of the subscription's current version, and
``subscriptions.reference_version`` names the version whose training set is THE reference (the
default baseline; its profile stays in ``reference_profile``). Payload records that had no
version get the subscription's; feedback gets an ``asset_revision`` column (a labelled record's
version is its payload twin's, else its own). Versions the payload records carried already are
registered too (source ``records``, started with their first record).

``evaluations``: ``kind`` (``monitoring``, ``comparison``, ``chunked``), ``target`` and
``baseline`` (the record sets compared, as JSON), ``chunking`` (how the window was cut).
``measurements``: ``chunk`` (its index within the evaluation; NULL for a whole window) and the
chunk's ``chunk_start``/``chunk_end`` (scoring times) and ``chunk_records``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INITIAL_VERSION = "1"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    conn = op.get_bind()
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "subscription_id", sa.Integer(), sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("subscription_id", "version", name="uq_model_versions_subscription_version"),
    )
    op.add_column("subscriptions", sa.Column("reference_version", sa.Text(), nullable=True))
    op.execute(f"UPDATE subscriptions SET asset_revision = '{INITIAL_VERSION}' WHERE asset_revision IS NULL")
    op.execute("UPDATE subscriptions SET reference_version = asset_revision")
    rows = conn.execute(
        sa.text(
            "SELECT id, asset_revision, payload_table, feedback_table, reference_table, created_at FROM subscriptions"
        )
    ).all()
    for sid, version, payload, feedback, reference, created in rows:
        conn.execute(
            sa.text(
                "INSERT INTO model_versions (subscription_id, version, source, started_at) "
                "VALUES (:sid, :v, 'migration', :at)"
            ),
            {"sid": sid, "v": version, "at": created},
        )
        op.execute(
            f"ALTER TABLE {_q(reference)} ADD COLUMN environment text NOT NULL DEFAULT 'training' "
            "CHECK (environment IN ('training', 'validation')), ADD COLUMN asset_revision text"
        )
        conn.execute(sa.text(f"UPDATE {_q(reference)} SET asset_revision = :v"), {"v": version})
        op.execute(f"CREATE INDEX {_q(reference + '_set')} ON {_q(reference)} (environment, asset_revision)")
        conn.execute(
            sa.text(f"UPDATE {_q(payload)} SET asset_revision = :v WHERE asset_revision IS NULL"), {"v": version}
        )
        # versions the records carried already are versions too (a set a comparison can name),
        # started with their first record
        conn.execute(
            sa.text(
                "INSERT INTO model_versions (subscription_id, version, source, started_at) "
                f"SELECT :sid, asset_revision, 'records', min(scoring_timestamp) FROM {_q(payload)} "
                "GROUP BY asset_revision ON CONFLICT (subscription_id, version) DO NOTHING"
            ),
            {"sid": sid},
        )
        op.execute(f"ALTER TABLE {_q(feedback)} ADD COLUMN asset_revision text")
    op.add_column("evaluations", sa.Column("kind", sa.String(16), server_default="monitoring", nullable=False))
    op.add_column("evaluations", sa.Column("target", JSONB(), nullable=True))
    op.add_column("evaluations", sa.Column("baseline", JSONB(), nullable=True))
    op.add_column("evaluations", sa.Column("chunking", JSONB(), nullable=True))
    op.add_column("measurements", sa.Column("chunk", sa.Integer(), nullable=True))
    op.add_column("measurements", sa.Column("chunk_start", sa.DateTime(timezone=True), nullable=True))
    op.add_column("measurements", sa.Column("chunk_end", sa.DateTime(timezone=True), nullable=True))
    op.add_column("measurements", sa.Column("chunk_records", sa.Integer(), nullable=True))


def downgrade() -> None:
    conn = op.get_bind()
    for col in ("chunk_records", "chunk_end", "chunk_start", "chunk"):
        op.drop_column("measurements", col)
    for col in ("chunking", "baseline", "target", "kind"):
        op.drop_column("evaluations", col)
    for _payload, feedback, reference in conn.execute(
        sa.text("SELECT payload_table, feedback_table, reference_table FROM subscriptions")
    ).all():
        # only the reference set stays: the table held one set before
        conn.execute(
            sa.text(
                f"DELETE FROM {_q(reference)} r USING subscriptions s WHERE s.reference_table = :t "
                "AND (r.environment <> 'training' OR r.asset_revision IS DISTINCT FROM s.reference_version)"
            ),
            {"t": reference},
        )
        op.execute(f"ALTER TABLE {_q(reference)} DROP COLUMN environment, DROP COLUMN asset_revision")
        op.execute(f"ALTER TABLE {_q(feedback)} DROP COLUMN asset_revision")
    op.drop_column("subscriptions", "reference_version")
    op.drop_table("model_versions")
