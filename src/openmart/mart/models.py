"""The data mart's core tables (SQLAlchemy 2 declarative). Created and changed only by the
Alembic migrations in ``openmart/mart/migrations``; ``docs/mart.md`` documents every column.

Per-subscription record tables (payload, feedback, reference) are typed by the subscription's
schema and made by :mod:`openmart.mart.records`; their names are kept in ``subscriptions``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Binding(Base):
    __tablename__ = "bindings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    provider: Mapped[str] = mapped_column(String(63), nullable=False)
    # plain settings and credential *references*; secrets only as Fernet tokens ("enc:...")
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    created_at: Mapped[datetime] = _now()


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    binding_id: Mapped[int | None] = mapped_column(ForeignKey("bindings.id", ondelete="RESTRICT"))
    deployment_id: Mapped[str | None] = mapped_column(Text)
    asset_revision: Mapped[str | None] = mapped_column(Text)
    problem_type: Mapped[str] = mapped_column(String(16), nullable=False)
    # features (name, kind), meta columns, label, prediction/probability columns, class labels
    schema: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    payload_table: Mapped[str] = mapped_column(String(63), nullable=False)
    feedback_table: Mapped[str] = mapped_column(String(63), nullable=False)
    reference_table: Mapped[str] = mapped_column(String(63), nullable=False)
    # per-column statistics of the reference data, computed once when it is loaded (drift)
    reference_profile: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    # the version whose training set is THE reference (migration 0009); asset_revision is the current version
    reference_version: Mapped[str | None] = mapped_column(Text)
    # the retention policy: whole UTC days older than this are archived to Parquet (migration 0011)
    archive_after_days: Mapped[int | None] = mapped_column(Integer)


class ArchiveSegment(Base):
    """One UTC day of a record table moved to a Parquet file (migration 0011): ``writing`` until
    the rows are deleted from the table in the transaction that makes it ``complete``."""

    __tablename__ = "archive_segments"
    __table_args__ = (
        UniqueConstraint("subscription_id", "kind", "period_start", name="uq_archive_segments_period"),
        CheckConstraint("kind IN ('payload', 'feedback')", name="ck_archive_segments_kind"),
        CheckConstraint("status IN ('writing', 'complete')", name="ck_archive_segments_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    location: Mapped[str] = mapped_column(Text, nullable=False)
    rows: Mapped[int | None] = mapped_column(BigInteger)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="writing")
    created_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ModelVersion(Base):
    """A model version a subscription has known: the asset revision its records carry, where it
    came from (subscribe, migration, user, records) and when it started (migration 0009)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("subscription_id", "version", name="uq_model_versions_subscription_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False)
    version: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = _now()


class Monitor(Base):
    __tablename__ = "monitors"
    __table_args__ = (UniqueConstraint("subscription_id", "kind", name="uq_monitors_subscription_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    # [{"metric": ..., "type": "lower_limit"|"upper_limit", "value": ..., "feature"?: ...}]
    thresholds: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default="[]")
    min_records: Mapped[int] = mapped_column(Integer, nullable=False, server_default="100")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # the service's scheduler: every schedule_seconds (NULL: the kind's default), next at next_run_at
    schedule_seconds: Mapped[int | None] = mapped_column(Integer, CheckConstraint("schedule_seconds > 0"))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Evaluation(Base):
    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_subscription_latest", "subscription_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # payload records in the window, counted by every evaluation
    records: Mapped[int | None] = mapped_column(Integer)
    # running -> finished | failed | abandoned (its process ended without a word: see evaluation/runner.py)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="running")
    # per monitor: status, reasons ("not enough data"), counts, scoring calls made
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    started_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # why it failed or was abandoned: the exception's type and message
    error_type: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
    # who runs it: the PostgreSQL backend holding the subscription's evaluation lock, and host:pid
    backend_pid: Mapped[int | None] = mapped_column(Integer)
    runner: Mapped[str | None] = mapped_column(Text)
    # feedback records scored through the binding (stored with the results, in one transaction)
    scored_feedback: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # monitoring (the subscription's stream against its reference), comparison (two record sets), chunked
    kind: Mapped[str] = mapped_column(String(16), nullable=False, server_default="monitoring")
    # the record sets measured and compared against: {"environment", "version", "since", "until", "last"}
    target: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # how the window was cut into chunks: {"by": "period"|"size"|"number", ...}
    chunking: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class Measurement(Base):
    __tablename__ = "measurements"
    __table_args__ = (Index("ix_measurements_subscription_monitor_time", "subscription_id", "monitor", "measured_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), nullable=False, index=True
    )
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    monitor: Mapped[str] = mapped_column(String(32), nullable=False)
    metric: Mapped[str] = mapped_column(String(64), nullable=False)
    value: Mapped[float | None] = mapped_column(Double)
    threshold: Mapped[float | None] = mapped_column(Double)
    threshold_type: Mapped[str | None] = mapped_column(String(16))
    breached: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    feature: Mapped[str | None] = mapped_column(Text)
    group: Mapped[str | None] = mapped_column(Text)
    # what a chart needs (histograms, confusion matrix, per-group rates), never raw rows
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    measured_at: Mapped[datetime] = _now()
    # a chunked evaluation's chunk: its index, the scoring times it spans and its record count
    chunk: Mapped[int | None] = mapped_column(Integer)
    chunk_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    chunk_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    chunk_records: Mapped[int | None] = mapped_column(Integer)


class Alert(Base):
    """A breached threshold with a lifecycle: open -> acknowledged -> resolved (by a person, or
    by a later evaluation in which the same measurement passes). One alert that is not resolved
    per (subscription, monitor, metric, feature, group): a repeated breach updates it."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_unresolved",
            "subscription_id",
            "monitor",
            "metric",
            "feature",
            "group",
            unique=True,
            postgresql_where=text("status <> 'resolved'"),
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # the evaluation and measurement that opened it
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"), nullable=False)
    measurement_id: Mapped[int] = mapped_column(ForeignKey("measurements.id", ondelete="CASCADE"), nullable=False)
    monitor: Mapped[str] = mapped_column(String(32), nullable=False)
    metric: Mapped[str] = mapped_column(String(64), nullable=False)
    feature: Mapped[str | None] = mapped_column(Text)
    group: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="open")
    created_at: Mapped[datetime] = _now()
    # the latest evaluation that breached it again, and how many evaluations did
    last_evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id", ondelete="SET NULL"))
    last_measurement_id: Mapped[int | None] = mapped_column(ForeignKey("measurements.id", ondelete="SET NULL"))
    occurrences: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    last_seen_at: Mapped[datetime] = _now()
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(Text)
    # set when a later evaluation's passing measurement resolved it
    resolved_evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(Text)


class Explanation(Base):
    __tablename__ = "explanations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    scoring_id: Mapped[str] = mapped_column(Text, nullable=False)
    method: Mapped[str] = mapped_column(String(16), nullable=False)
    prediction: Mapped[str | None] = mapped_column(Text)
    # {"feature": weight} in the model's output space; base_value + sum == explained output
    attributions: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    base_value: Mapped[float | None] = mapped_column(Double)
    contrastive: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    elapsed_ms: Mapped[float | None] = mapped_column(Double)
    scoring_calls: Mapped[int | None] = mapped_column(Integer)
    # the attributions' space: identity (the output) or logit (its log-odds); NULL: before 0010, identity
    link: Mapped[str | None] = mapped_column(String(16))
    # how they were computed and their standard errors (explain/shapley.py)
    estimate: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()


class MartIdentity(Base):
    """One row: the id this mart was given at creation (keys the files kept for it on disk)."""

    __tablename__ = "mart_identity"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="1")
    mart_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False, server_default=text("gen_random_uuid()"))
    created_at: Mapped[datetime] = _now()


class CaptureSetAside(Base):
    """A captured record the mart could not take as it was: the raw exchange (or record) and why."""

    __tablename__ = "capture_set_aside"
    __table_args__ = (
        UniqueConstraint("subscription_id", "scoring_id", name="uq_capture_set_aside_subscription_scoring"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False)
    scoring_id: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # "exchange" or "record"
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    request: Mapped[bytes | None] = mapped_column(LargeBinary)
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    record: Mapped[bytes | None] = mapped_column(LargeBinary)  # one record as JSON (NUL bytes kept)
    scoring_timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_time: Mapped[float | None] = mapped_column(Double)
    set_aside_at: Mapped[datetime] = _now()


class CaptureEvent(Base):
    """What capture could not keep (``dropped``), written when the mart answers again."""

    __tablename__ = "capture_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    message: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = _now()


class ApiKey(Base):
    """A key for ``openmart serve``: ``om_<prefix>_<secret>``; only SHA-256(secret) is kept."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("scope IN ('read', 'write', 'admin')", name="ck_api_keys_scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    prefix: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    scope: Mapped[str] = mapped_column(String(8), nullable=False)
    created_at: Mapped[datetime] = _now()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ScoringRequest(Base):
    """One scoring request capture saw, answered or not (the performance monitor's input)."""

    __tablename__ = "scoring_requests"
    __table_args__ = (
        Index("ix_scoring_requests_subscription_at", "subscription_id", "at"),
        Index("uq_scoring_requests_subscription_request", "subscription_id", "request_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False)
    at: Mapped[datetime] = _now()
    status: Mapped[int] = mapped_column(SmallInteger, nullable=False)  # HTTP status the client got
    records: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    request_bytes: Mapped[int | None] = mapped_column(Integer)
    response_bytes: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Double)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # proxy, score, rest, openscale
    request_id: Mapped[str | None] = mapped_column(String(64))  # replays are counted once (migration 0007)


class OpenScaleBinding(Base):
    """An OpenScale service binding (``openmart serve``'s V1 routes): its uid and display name
    over an openmart binding, which holds the settings (secrets sealed)."""

    __tablename__ = "openscale_bindings"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    binding_id: Mapped[int] = mapped_column(ForeignKey("bindings.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    service_type: Mapped[str] = mapped_column(String(63), nullable=False)
    created_at: Mapped[datetime] = _now()


class OpenScaleSubscription(Base):
    """An OpenScale subscription: the asset and deployment the client chose, its asset
    properties (schemas learned from the first payload), its configurations, and the openmart
    subscription made from it (NULL until the first payload tells the features)."""

    __tablename__ = "openscale_subscriptions"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    binding_uid: Mapped[str] = mapped_column(
        ForeignKey("openscale_bindings.uid", ondelete="CASCADE"), nullable=False, index=True
    )
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id", ondelete="SET NULL"))
    asset: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    asset_properties: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    deployments: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default="[]")
    # {"payload_logging": {"enabled": true, "parameters": {...}}, "quality_monitoring": ...}
    configurations: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    created_at: Mapped[datetime] = _now()


class Traffic(Base):
    """Payload records per subscription and UTC hour of their scoring time, kept by triggers on
    every payload table in the records' own transaction (migration 0008)."""

    __tablename__ = "traffic"

    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    records: Mapped[int] = mapped_column(BigInteger, nullable=False)


class AlertChannel(Base):
    """Where a subscription's alerts are sent: ``webhook`` (Slack-compatible body) or ``email``
    (SMTP with STARTTLS); secrets in ``settings`` sealed (``enc:...``)."""

    __tablename__ = "alert_channels"
    __table_args__ = (
        UniqueConstraint("subscription_id", "name", name="uq_alert_channels_subscription_name"),
        CheckConstraint("kind IN ('webhook', 'email')", name="ck_alert_channels_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    created_at: Mapped[datetime] = _now()


class AlertDelivery(Base):
    """One message to send: an alert's transition (``opened``/``resolved``) to one channel. Made in
    the transaction that changes the alert (an outbox); unique per (alert, channel, event)."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel_id", "event", name="uq_alert_deliveries_alert_channel_event"),
        CheckConstraint("event IN ('opened', 'resolved')", name="ck_alert_deliveries_event"),
        CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed')", name="ck_alert_deliveries_status"),
        Index("ix_alert_deliveries_due", "next_attempt_at", postgresql_where=text("status IN ('pending', 'sending')")),
        Index("ix_alert_deliveries_channel_id", "channel_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False)
    channel_id: Mapped[int] = mapped_column(ForeignKey("alert_channels.id", ondelete="CASCADE"), nullable=False)
    event: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime] = _now()
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
