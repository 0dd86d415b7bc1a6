"""evaluations that fail or are abandoned say why; alerts with a lifecycle

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

``evaluations`` gains the error of a failed evaluation (``error_type``, ``error_message``), who
runs it (``backend_pid``: the PostgreSQL backend holding the subscription's evaluation lock;
``runner``: host:pid) and how many feedback records it scored (``scored_feedback``). Status
``abandoned`` marks an evaluation whose process ended without finishing it.

``alerts`` gains the lifecycle open -> acknowledged -> resolved: the measurement's feature and
group, the latest evaluation that breached it again and how often (``occurrences``), who
acknowledged or resolved it and when, the evaluation that resolved it, a note. At most one alert
that is not resolved exists per (subscription, monitor, metric, feature, group): stored repeats
of one breach are folded into the newest (the older ones resolved by "migration 0004"), and the
status ``closed`` becomes ``resolved``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evaluations", sa.Column("error_type", sa.String(length=128), nullable=True))
    op.add_column("evaluations", sa.Column("error_message", sa.Text(), nullable=True))
    op.add_column("evaluations", sa.Column("backend_pid", sa.Integer(), nullable=True))
    op.add_column("evaluations", sa.Column("runner", sa.Text(), nullable=True))
    op.add_column("evaluations", sa.Column("scored_feedback", sa.Integer(), server_default="0", nullable=False))
    # an evaluation left running by a version without the lock can never finish now
    op.execute(
        "UPDATE evaluations SET status = 'abandoned', finished_at = now(), error_type = 'Abandoned', "
        "error_message = 'left running before migration 0004' WHERE status = 'running'"
    )

    op.add_column("alerts", sa.Column("feature", sa.Text(), nullable=True))
    op.add_column("alerts", sa.Column("group", sa.Text(), nullable=True))
    op.add_column("alerts", sa.Column("last_evaluation_id", sa.Integer(), nullable=True))
    op.add_column("alerts", sa.Column("last_measurement_id", sa.Integer(), nullable=True))
    op.add_column("alerts", sa.Column("occurrences", sa.Integer(), server_default="1", nullable=False))
    op.add_column(
        "alerts", sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)
    )
    op.add_column("alerts", sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("alerts", sa.Column("acknowledged_by", sa.Text(), nullable=True))
    op.add_column("alerts", sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("alerts", sa.Column("resolved_by", sa.Text(), nullable=True))
    op.add_column("alerts", sa.Column("resolved_evaluation_id", sa.Integer(), nullable=True))
    op.add_column("alerts", sa.Column("note", sa.Text(), nullable=True))
    op.create_foreign_key(
        op.f("fk_alerts_last_evaluation_id_evaluations"),
        "alerts",
        "evaluations",
        ["last_evaluation_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        op.f("fk_alerts_last_measurement_id_measurements"),
        "alerts",
        "measurements",
        ["last_measurement_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        op.f("fk_alerts_resolved_evaluation_id_evaluations"),
        "alerts",
        "evaluations",
        ["resolved_evaluation_id"],
        ["id"],
        ondelete="SET NULL",
    )
    # existing alerts: where they were, as their measurement says
    op.execute(
        'UPDATE alerts a SET feature = m.feature, "group" = m."group", last_evaluation_id = a.evaluation_id, '
        "last_measurement_id = a.measurement_id, last_seen_at = a.created_at "
        "FROM measurements m WHERE m.id = a.measurement_id"
    )
    op.execute(
        "UPDATE alerts SET status = 'resolved', resolved_at = now(), resolved_by = 'migration 0004' "
        "WHERE status = 'closed'"
    )
    # one unresolved alert per breach: the newest keeps the count, the older repeats are resolved
    op.execute(
        """
        WITH ranked AS (
            SELECT id, count(*) OVER w AS n, row_number() OVER (w ORDER BY id DESC) AS rank
            FROM alerts WHERE status <> 'resolved'
            WINDOW w AS (PARTITION BY subscription_id, monitor, metric, feature, "group")
        )
        UPDATE alerts a SET
            occurrences = CASE WHEN r.rank = 1 THEN r.n ELSE a.occurrences END,
            status = CASE WHEN r.rank = 1 THEN a.status ELSE 'resolved' END,
            resolved_at = CASE WHEN r.rank = 1 THEN NULL ELSE now() END,
            resolved_by = CASE WHEN r.rank = 1 THEN NULL ELSE 'migration 0004' END
        FROM ranked r WHERE r.id = a.id AND r.n > 1
        """
    )
    op.create_index(
        "uq_alerts_unresolved",
        "alerts",
        ["subscription_id", "monitor", "metric", "feature", "group"],
        unique=True,
        postgresql_where=sa.text("status <> 'resolved'"),
        postgresql_nulls_not_distinct=True,
    )


def downgrade() -> None:
    op.drop_index("uq_alerts_unresolved", table_name="alerts", postgresql_where=sa.text("status <> 'resolved'"))
    op.execute("UPDATE alerts SET status = 'closed' WHERE status = 'resolved'")
    op.drop_constraint(op.f("fk_alerts_resolved_evaluation_id_evaluations"), "alerts", type_="foreignkey")
    op.drop_constraint(op.f("fk_alerts_last_measurement_id_measurements"), "alerts", type_="foreignkey")
    op.drop_constraint(op.f("fk_alerts_last_evaluation_id_evaluations"), "alerts", type_="foreignkey")
    for column in (
        "note",
        "resolved_evaluation_id",
        "resolved_by",
        "resolved_at",
        "acknowledged_by",
        "acknowledged_at",
        "last_seen_at",
        "occurrences",
        "last_measurement_id",
        "last_evaluation_id",
        "group",
        "feature",
    ):
        op.drop_column("alerts", column)
    op.execute("UPDATE evaluations SET status = 'failed' WHERE status = 'abandoned'")
    for column in ("scored_feedback", "runner", "backend_pid", "error_message", "error_type"):
        op.drop_column("evaluations", column)
