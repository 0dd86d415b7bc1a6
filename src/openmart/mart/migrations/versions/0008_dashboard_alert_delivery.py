"""the dashboard and alert delivery: hourly traffic, alert channels and their deliveries

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

``traffic``: payload records per subscription and hour (UTC) of their ``scoring_timestamp``, kept
by statement-level triggers on every payload table (insert adds, delete subtracts, update moves),
in the same transaction as the records; so the dashboard's "traffic in the last day" reads a few
rows, not the payload table, and every write path (COPY, the spool's idempotent insert, replays)
is counted once. The triggers' function pins its ``search_path`` to the mart's schema, so a
client with another search path (psql) writes the right table. Existing payload tables get the
triggers and their counts now.

``alert_channels``: where a subscription's alerts are sent (``webhook``: a Slack-compatible JSON
body; ``email``: SMTP with STARTTLS). Secrets in ``settings`` (a webhook's URL, an SMTP password)
are sealed like binding secrets (``enc:...``).

``alert_deliveries``: one row per (alert, channel, event), ``event`` ``opened`` or ``resolved``,
made in the transaction that opens or resolves the alert (an outbox: nothing is sent from inside
a transaction, nothing is lost if the process ends after it). The unique key is what makes one
message per transition. A sender claims due rows (``pending`` with ``next_attempt_at`` past, or
``sending`` whose ``lease_until`` passed), and marks them ``sent``, or retries with backoff
(``attempts``, ``last_error``), or gives up as ``failed`` after the last attempt.

``evaluations (subscription_id, id)`` and ``measurements (subscription_id, monitor,
measured_at)``: the dashboard's latest-evaluation and time-range queries read an index range.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# date_trunc with 'UTC': an hour bucket must not depend on the session's TimeZone
_TRAFFIC_FUNCTIONS = """
CREATE FUNCTION openmart_traffic_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path = {schema}, pg_catalog AS $$
BEGIN
  INSERT INTO traffic AS t (subscription_id, hour, records)
  SELECT TG_ARGV[0]::int, date_trunc('hour', scoring_timestamp, 'UTC'), count(*)
  FROM new_rows GROUP BY 2 ORDER BY 2
  ON CONFLICT (subscription_id, hour) DO UPDATE SET records = t.records + excluded.records;
  RETURN NULL;
END $$;
CREATE FUNCTION openmart_traffic_deleted() RETURNS trigger LANGUAGE plpgsql
SET search_path = {schema}, pg_catalog AS $$
BEGIN
  UPDATE traffic AS t SET records = t.records - gone.n
  FROM (SELECT date_trunc('hour', scoring_timestamp, 'UTC') AS hour, count(*) AS n
        FROM old_rows GROUP BY 1 ORDER BY 1) AS gone
  WHERE t.subscription_id = TG_ARGV[0]::int AND t.hour = gone.hour;
  RETURN NULL;
END $$;
CREATE FUNCTION openmart_traffic_updated() RETURNS trigger LANGUAGE plpgsql
SET search_path = {schema}, pg_catalog AS $$
BEGIN
  UPDATE traffic AS t SET records = t.records - gone.n
  FROM (SELECT date_trunc('hour', scoring_timestamp, 'UTC') AS hour, count(*) AS n
        FROM old_rows GROUP BY 1 ORDER BY 1) AS gone
  WHERE t.subscription_id = TG_ARGV[0]::int AND t.hour = gone.hour;
  INSERT INTO traffic AS t (subscription_id, hour, records)
  SELECT TG_ARGV[0]::int, date_trunc('hour', scoring_timestamp, 'UTC'), count(*)
  FROM new_rows GROUP BY 2 ORDER BY 2
  ON CONFLICT (subscription_id, hour) DO UPDATE SET records = t.records + excluded.records;
  RETURN NULL;
END $$;
"""


def upgrade() -> None:
    conn = op.get_bind()
    schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    op.create_table(
        "traffic",
        sa.Column(
            "subscription_id", sa.Integer(), sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", "hour", name="pk_traffic"),
    )
    quoted = '"' + schema.replace('"', '""') + '"'
    op.execute(_TRAFFIC_FUNCTIONS.format(schema=quoted))
    # local import: the migration must not depend on more of openmart than the trigger's text
    from openmart.mart.records import traffic_trigger_sql

    for sub_id, table in conn.execute(sa.text("SELECT id, payload_table FROM subscriptions ORDER BY id")).all():
        for stmt in traffic_trigger_sql(table, int(sub_id)):
            op.execute(stmt)
        q = '"' + table.replace('"', '""') + '"'
        op.execute(
            sa.text(
                "INSERT INTO traffic (subscription_id, hour, records) "
                f"SELECT :sid, date_trunc('hour', scoring_timestamp, 'UTC'), count(*) FROM {q} GROUP BY 2"
            ).bindparams(sid=int(sub_id))
        )

    op.create_table(
        "alert_channels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "subscription_id", sa.Integer(), sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("settings", JSONB(), nullable=False, server_default="{}"),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default="true"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("subscription_id", "name", name="uq_alert_channels_subscription_name"),
        sa.CheckConstraint("kind IN ('webhook', 'email')", name="ck_alert_channels_kind"),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("alert_channels.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("alert_id", "channel_id", "event", name="uq_alert_deliveries_alert_channel_event"),
        sa.CheckConstraint("event IN ('opened', 'resolved')", name="ck_alert_deliveries_event"),
        sa.CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed')", name="ck_alert_deliveries_status"),
    )
    op.create_index(
        "ix_alert_deliveries_due",
        "alert_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
    )
    op.create_index("ix_alert_deliveries_channel_id", "alert_deliveries", ["channel_id"])
    op.create_index("ix_evaluations_subscription_latest", "evaluations", ["subscription_id", "id"])
    op.create_index(
        "ix_measurements_subscription_monitor_time", "measurements", ["subscription_id", "monitor", "measured_at"]
    )


def downgrade() -> None:
    conn = op.get_bind()
    op.drop_index("ix_measurements_subscription_monitor_time", table_name="measurements")
    op.drop_index("ix_evaluations_subscription_latest", table_name="evaluations")
    op.drop_table("alert_deliveries")
    op.drop_table("alert_channels")
    for (table,) in conn.execute(sa.text("SELECT payload_table FROM subscriptions")).all():
        q = '"' + table.replace('"', '""') + '"'
        for name in ("openmart_traffic_in", "openmart_traffic_out", "openmart_traffic_moved"):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {q}")
    for fn in ("openmart_traffic_inserted", "openmart_traffic_deleted", "openmart_traffic_updated"):
        op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
    op.drop_table("traffic")
