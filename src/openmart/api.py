"""The Python API, shared by the CLI and the notebooks.

mart = openmart.connect()            # embedded PostgreSQL unless OPENMART_DATABASE_URL is set
mart.bindings.add("web", "custom", {"url": "http://127.0.0.1:8000/predict"})
sub = mart.subscriptions.add("churn", reference=df, label="churn", problem_type="binary",
                             binding="web", deployment="/predict")
ids = sub.payload.log(payload_df)
sub.feedback.log(labelled_df)
sub.payload.read(limit=10)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy.engine import Engine

from openmart import arguments, secrets
from openmart.config import Settings
from openmart.context import RecordFields, SubscriptionContext
from openmart.errors import NotFound, RecordsRefused, ValidationError
from openmart.mart import api_keys, migrate, record_store
from openmart.mart import bindings as bindings_table
from openmart.mart import explanations as explanations_table
from openmart.mart import subscriptions as subscriptions_table
from openmart.mart import versions as versions_table
from openmart.mart.engine import DEFAULT_SCHEMA, Location, create_engine, resolve
from openmart.mart.identifiers import validate_name
from openmart.mart.readonly import run_read_only
from openmart.mart.record_store import OnDuplicate
from openmart.mart.records import Environment, RecordKind, to_frame
from openmart.mart.records import environment as records_environment
from openmart.mart.subscriptions import SubscriptionRecord
from openmart.mart.versions import check_version
from openmart.providers import registry
from openmart.schema import ProblemType, SubscriptionSchema, infer_schema

if TYPE_CHECKING:
    from openmart.alerting.dispatcher import Backoff, DeliveryCounts
    from openmart.alerting.messages import Message
    from openmart.evaluation.compare import Comparison
    from openmart.evaluation.results import EvaluationResult
    from openmart.evaluation.scheduler import ScheduledRun
    from openmart.explain.service import StoredExplanation
    from openmart.mart.alert_deliveries import DeliveryRecord
    from openmart.mart.alerts import AlertRecord
    from openmart.mart.evaluations import EvaluationRecord
    from openmart.mart.windows import Window
    from openmart.monitors.performance import Performance
    from openmart.monitors.schedule import MonitorSchedule
    from openmart.providers.base import Provider
    from openmart.scoring.capture import PayloadCapture
    from openmart.slices import RootCause, SliceResult


def connect(
    url: str | None = None, *, schema: str | None = None, upgrade: bool = True, settings: Settings | None = None
) -> Mart:
    """Open the mart at ``url`` (or ``OPENMART_DATABASE_URL``, or the embedded default), in
    ``schema`` (or ``OPENMART_SCHEMA``, or ``openmart``), and bring its tables up to date."""
    settings = settings or Settings.from_env()
    schema = schema or os.environ.get("OPENMART_SCHEMA") or DEFAULT_SCHEMA
    location = resolve(url, settings, schema)
    mart = Mart(create_engine(location), location, settings)
    if upgrade:
        mart.upgrade()
    return mart


class Mart:
    def __init__(self, engine: Engine, location: Location, settings: Settings) -> None:
        self.engine = engine
        self.location = location
        self.settings = settings
        self.bindings = Bindings(self)
        self.subscriptions = Subscriptions(self)
        self.keys = ApiKeys(self)

    def __repr__(self) -> str:
        return f"<openmart.Mart {self.location.describe()}>"

    def __enter__(self) -> Mart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def upgrade(self) -> None:
        migrate.upgrade(self.engine, self.location.schema)

    def status(self) -> dict[str, Any]:
        current, head = migrate.status(self.engine, self.location.schema)
        return {
            "location": self.location.describe(),
            "schema": self.location.schema,
            "revision": current,
            "head": head,
            "up_to_date": current == head,
        }

    def sql(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run one read query against the mart (its schema is on the search path) as a DataFrame.

        Read-only: a single SELECT, WITH, VALUES, TABLE, SHOW or EXPLAIN statement, run in a
        read-only transaction that is rolled back afterwards; anything else raises ValidationError.
        Writing goes through the API."""
        return run_read_only(self.engine, query, dict(params or {}))

    def alerts(self, *, status: str | None = "open", subscription: str | None = None) -> pd.DataFrame:
        """Alerts (breached thresholds), oldest first: ``status`` open (the default),
        acknowledged, resolved, or None/"all" for every one; ``subscription``: only its own."""
        from openmart.mart import alerts

        with self.engine.connect() as conn:
            return alerts.frame(conn, status=status, subscription=subscription)

    def acknowledge_alert(self, alert_id: int, *, by: str | None = None, note: str | None = None) -> AlertRecord:
        """open -> acknowledged: someone is on it (a repeated breach keeps updating it)."""
        from openmart.mart import alerts

        with self.engine.begin() as conn:
            return alerts.acknowledge(conn, alert_id, by=by, note=note)

    def resolve_alert(self, alert_id: int, *, by: str | None = None, note: str | None = None) -> AlertRecord:
        """open or acknowledged -> resolved (the same breach again opens a new alert). A later
        evaluation in which the measurement passes resolves an alert by itself."""
        from openmart.mart import alerts

        with self.engine.begin() as conn:
            return alerts.resolve(conn, alert_id, by=by, note=note)

    # -- alert delivery (docs/alerts.md) ---------------------------------------------------------

    def deliveries(
        self, *, status: str | None = None, subscription: str | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """Messages about alerts (one per alert, channel and event ``opened``/``resolved``), oldest
        first: ``status`` pending, sending, sent, failed, or None/"all"; ``limit``: the newest N."""
        from openmart.mart import alert_deliveries

        limit = arguments.optional_integer(limit, "limit", minimum=1)
        with self.engine.connect() as conn:
            return alert_deliveries.frame(conn, status=status, subscription=subscription, limit=limit)

    def retry_delivery(self, delivery_id: int) -> DeliveryRecord:
        """Send a failed (or waiting) delivery again at the next pass, with a fresh count of attempts."""
        from openmart.mart import alert_deliveries

        with self.engine.begin() as conn:
            return alert_deliveries.retry(conn, int(delivery_id))

    def deliver_alerts(
        self, *, limit: int = 100, now: datetime | None = None, backoff: Backoff | None = None
    ) -> DeliveryCounts:
        """One pass of the sender (what ``openmart serve`` does in the background): send up to
        ``limit`` due messages; failures are retried later with backoff, then marked failed."""
        from openmart.alerting.dispatcher import deliver_due

        limit = arguments.integer(limit, "limit", minimum=1)
        return deliver_due(self.engine, self.settings, limit=limit, now=now, backoff=backoff)

    # -- schedules (docs/evaluations.md, "Scheduled evaluations") --------------------------------

    def schedules(self, subscription: str | None = None) -> list[MonitorSchedule]:
        """Every monitor's schedule (or one subscription's): period, next run."""
        if subscription is not None:
            return self.subscriptions.get(subscription).monitors.schedules()
        from openmart.mart import schedules
        from openmart.monitors.schedule import schedule_of

        with self.engine.connect() as conn:
            rows = schedules.list_schedules(conn)
        return [schedule_of(r.subscription, r.kind, r.enabled, r.schedule_seconds, r.next_run_at) for r in rows]

    def run_due(
        self, *, now: datetime | None = None, should_stop: Callable[[], bool] | None = None
    ) -> list[ScheduledRun]:
        """Run the monitors whose schedule is due (what ``openmart serve`` does on its own), each
        due slot once even with several services on this mart; a failed evaluation is recorded
        and reported in its ``ScheduledRun``, not raised. To run a subscription's monitors now,
        whatever their schedule: ``sub.evaluate(kinds=[...])``."""
        from openmart.evaluation.scheduler import run_due

        return run_due(self.engine, lambda record: Subscription(self, record).context, now=now, should_stop=should_stop)


# -- API keys (openmart serve) ---------------------------------------------------------------------


class ApiKeys:
    """Keys for ``openmart serve``: scoped read < write < admin, stored hashed, revocable."""

    def __init__(self, mart: Mart) -> None:
        self._mart = mart

    def create(self, name: str, scope: str = "read") -> tuple[api_keys.ApiKeyRecord, str]:
        """A new key: its record and the clear key (``om_<prefix>_<secret>``), shown only now."""
        with self._mart.engine.begin() as conn:
            return api_keys.create(conn, name, scope)

    def list(self, *, include_revoked: bool = False) -> list[api_keys.ApiKeyRecord]:
        with self._mart.engine.connect() as conn:
            return api_keys.list_all(conn, include_revoked=include_revoked)

    def revoke(self, prefix_or_name: str) -> list[api_keys.ApiKeyRecord]:
        """Revoke a key by its prefix (or every active key with that name); its tokens die with it."""
        with self._mart.engine.begin() as conn:
            return api_keys.revoke(conn, prefix_or_name)

    def verify(self, key: str) -> api_keys.ApiKeyRecord | None:
        """The active key this clear key is, or None."""
        with self._mart.engine.begin() as conn:
            return api_keys.verify(conn, key)

    def signing_secret(self, key_id: int) -> bytes | None:
        with self._mart.engine.connect() as conn:
            return api_keys.signing_secret(conn, key_id)


# -- bindings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    id: int
    name: str
    provider: str
    #: as stored: references in clear, secrets as "enc:..." tokens, URLs redacted with their
    #: clear form sealed beside them (see openmart.secrets); never shown as is
    stored_settings: Mapping[str, str] = field(repr=False)
    created_at: datetime
    _mart: Mart = field(repr=False, compare=False)

    @property
    def settings(self) -> dict[str, str]:
        """The settings as they may be shown: secrets as ***, URLs with credentials redacted."""
        return secrets.redact(self.stored_settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "provider": self.provider,
            "settings": self.settings,
            "created_at": self.created_at.isoformat(),
        }

    def connect(self) -> Provider:
        """An adapter for this binding (secrets decrypted in memory only, and masked from then on
        in openmart's messages and logs)."""
        clear = secrets.reveal(self.stored_settings, self._mart.settings, self.name)
        with secrets.scrubbed_errors():
            return registry.create(self.provider, clear)


class Bindings:
    def __init__(self, mart: Mart) -> None:
        self._mart = mart

    def _wrap(self, row: bindings_table.BindingRecord) -> Binding:
        return Binding(row.id, row.name, row.provider, dict(row.stored_settings), row.created_at, self._mart)

    def add(self, name: str, provider: str, settings: Mapping[str, Any] | None = None) -> Binding:
        """Add a binding. Secrets (the provider's declared ones, secret-named settings, URL
        credentials, values given as enc:...) are stored encrypted; refused without a key."""
        validate_name(name, "binding")
        factory = registry.factory_for(provider)
        raw = {str(k): str(v) for k, v in (settings or {}).items()}
        clear, given_encrypted = secrets.open_given(raw, self._mart.settings)
        secret_names = registry.secret_settings(provider) | given_encrypted
        secrets.remember_settings(clear, secret_names)  # so that no validation message can echo one
        with secrets.scrubbed_errors():
            factory.validate_settings(clear)
        stored = secrets.seal(clear, secret_names, self._mart.settings)
        with self._mart.engine.begin() as conn:
            return self._wrap(bindings_table.insert(conn, name, provider, stored))

    def get(self, name: str) -> Binding:
        with self._mart.engine.connect() as conn:
            return self._wrap(bindings_table.get(conn, name))

    def list(self) -> list[Binding]:
        with self._mart.engine.connect() as conn:
            return [self._wrap(r) for r in bindings_table.list_all(conn)]

    def remove(self, name: str) -> None:
        with self._mart.engine.begin() as conn:
            bindings_table.remove(conn, name)

    def rotate_key(self, new_key: str) -> int:
        """Re-encrypt every stored secret under ``new_key`` alone, in one transaction (all
        bindings, or none on any failure); secrets an older openmart kept in clear are sealed on
        the way. Returns how many values were re-encrypted. The caller stores the new key."""
        old = secrets.require_keyring(self._mart.settings, "re-encrypting the stored secrets needs the current key")
        count = 0
        with self._mart.engine.begin() as conn:
            for row in bindings_table.all_for_update(conn):
                rotated, n = secrets.reencrypt(
                    row.stored_settings, old, new_key, _declared_secrets(row.provider), row.name
                )
                if n:
                    bindings_table.update_settings(conn, row.id, rotated)
                    count += n
            from openmart.mart import alert_channels

            for channel in alert_channels.all_for_update(conn):  # alert channels' secrets too, same transaction
                label = f"alert channel {channel.subscription}/{channel.name}"
                rotated, n = secrets.reencrypt(channel.stored_settings, old, new_key, (), label)
                if n:
                    alert_channels.update_settings(conn, channel.id, rotated)
                    count += n
        return count


def _declared_secrets(provider: str) -> frozenset[str]:
    """A provider's declared secrets; none known when its plug-in is not installed here (what it
    stored encrypted is rotated all the same)."""
    from openmart.errors import ProviderNotInstalled

    try:
        return registry.secret_settings(provider)
    except ProviderNotInstalled:
        return frozenset()


# -- subscriptions -------------------------------------------------------------------------------


class Subscriptions:
    def __init__(self, mart: Mart) -> None:
        self._mart = mart

    def add(
        self,
        name: str,
        *,
        reference: pd.DataFrame | None = None,
        schema: SubscriptionSchema | None = None,
        label: str | None = None,
        problem_type: ProblemType | str | None = None,
        binding: str | None = None,
        deployment: str | None = None,
        asset_revision: str | None = None,
        categorical: Iterable[str] = (),
        numeric: Iterable[str] = (),
        features: Sequence[str] | None = None,
        meta: Iterable[str] = (),
        prediction: str = "prediction",
        probability: str | None = "probability",
        class_labels: Sequence[Any] | None = None,
    ) -> Subscription:
        """Subscribe a deployment. The schema is inferred from ``reference`` (with the overrides
        given) unless ``schema`` is passed. One transaction: the subscription, its record tables,
        its reference and the reference's profile are all stored, or (a refused reference row, a
        lost connection) none of them."""
        validate_name(name, "subscription")
        if schema is None:
            if reference is None or label is None or problem_type is None:
                raise ValidationError("give either a schema, or reference data with label and problem_type")
            schema = infer_schema(
                reference,
                label=label,
                problem_type=problem_type,
                categorical=categorical,
                numeric=numeric,
                features=features,
                meta=meta,
                prediction=prediction,
                probability=probability,
                class_labels=class_labels,
            )
        binding_row = self._mart.bindings.get(binding) if binding else None
        if binding_row is not None and deployment:
            # check the deployment exists on the platform now, not at the first evaluation
            provider = binding_row.connect()
            try:
                provider.describe(deployment)
            finally:
                provider.close()
        frame = to_frame(reference, schema) if reference is not None else None
        with self._mart.engine.begin() as conn:
            record = subscriptions_table.create(
                conn,
                name,
                schema,
                binding_id=binding_row.id if binding_row else None,
                deployment_id=deployment,
                asset_revision=asset_revision,
            )
            if frame is not None:
                # columns the schema left out (features= given) were left out on purpose
                record_store.replace_reference(
                    conn, record, frame, partial(reference_profile, schema), allow_extra_columns=True
                )
                record = subscriptions_table.by_id(conn, record.id)  # with its reference version
        return Subscription(self._mart, record)

    def get(self, name: str) -> Subscription:
        with self._mart.engine.connect() as conn:
            return Subscription(self._mart, subscriptions_table.get(conn, name))

    def list(self) -> list[Subscription]:
        with self._mart.engine.connect() as conn:
            return [Subscription(self._mart, r) for r in subscriptions_table.list_all(conn)]

    def add_classes(self, name: str, labels: Sequence[Any]) -> Subscription:
        """The model answers classes it did not have when subscribed: add them (a multiclass
        subscription without a probability column, whose stored records stay valid as they are).
        Records set aside for an unknown class can then be replayed (``capture replay``)."""
        with self._mart.engine.begin() as conn:
            record = subscriptions_table.get(conn, name)
            subscriptions_table.lock(conn, record.id)
            schema = record.schema
            if schema.problem_type is not ProblemType.MULTICLASS or schema.probability:
                raise ValidationError(
                    f"subscription {name!r}: classes can be added to a multiclass subscription without a probability "
                    "column only (stored probabilities would no longer match the classes)"
                )
            known = list(schema.class_labels or ())
            numeric = schema.outputs_numeric
            new = [_number(v) if numeric else str(v) for v in labels]
            added = [v for v in new if v not in known]
            if not added:
                raise ValidationError(f"subscription {name!r} has every one of these classes already: {known}")
            updated = SubscriptionSchema.from_dict({**schema.to_dict(), "class_labels": known + added})
            subscriptions_table.update_schema(conn, record.id, updated)
        return self.get(name)

    def remove(self, name: str) -> None:
        with self._mart.engine.begin() as conn:
            subscriptions_table.remove(conn, subscriptions_table.get(conn, name))


def reference_profile(schema: SubscriptionSchema, frame: pd.DataFrame) -> dict[str, Any]:
    """The reference's statistics, computed once when it is stored (drift compares with them)."""
    from openmart.monitors.profile import set_profile

    return set_profile(schema, frame)


class Subscription(RecordFields):
    """A deployment under monitoring: a façade over its frozen record (``.record``) and the
    context the layers below work from (``.context``)."""

    def __init__(self, mart: Mart, record: SubscriptionRecord) -> None:
        self._mart = mart
        self.record = record
        connect = partial(_connect_binding, mart, record.binding) if record.binding else None
        self.context = SubscriptionContext(record, mart.engine, mart.settings, connect)
        self.payload = PayloadRecords(self, RecordKind.PAYLOAD)
        self.feedback = FeedbackRecords(self, RecordKind.FEEDBACK)
        self.reference = ReferenceRecords(self, RecordKind.REFERENCE)
        self.versions = Versions(self)
        self._capture: PayloadCapture | None = None
        from openmart.monitors.constraints import Constraints
        from openmart.monitors.store import Monitors

        self.monitors = Monitors(self)
        self.constraints = Constraints(self)  # data-quality baseline and violations (docs/data-quality.md)
        self.channels = AlertChannels(self)

    @property
    def mart(self) -> Mart:
        return self._mart

    def reload(self) -> Subscription:
        """Read the subscription's record again (its current version and reference move when
        a version starts or a training set is loaded); returns itself."""
        with self._mart.engine.connect() as conn:
            self.record = subscriptions_table.by_id(conn, self.id)
        self.context = self.context.with_record(self.record)
        return self

    @property
    def reference_version(self) -> str | None:
        """The version whose training set is THE reference (drift's default baseline)."""
        return self.record.reference_version

    def __repr__(self) -> str:
        return f"<Subscription {self.name!r} ({self.schema.problem_type}, binding={self.binding!r})>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "binding": self.binding,
            "deployment": self.deployment_id,
            "asset_revision": self.asset_revision,
            "schema": self.schema.to_dict(),
            "tables": self.record.tables,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }

    def score(self, records: pd.DataFrame, *, wait: bool = False) -> pd.DataFrame:
        """Score through the binding and log the payload in the background (``wait=True``: return
        once it is kept). Returns the records with ``scoring_id``, prediction and probability;
        ``.attrs["openmart"]`` holds the counts (scored, accepted, refused, and stored with wait).

        An answer that does not fit the schema (a label outside the classes, a probability
        outside [0, 1], a null prediction) is refused by name: the other records are logged, the
        refused ones are set aside (``openmart capture rejected``), and :class:`RecordsRefused`
        is raised with every scored record and each refusal's reason."""
        from openmart.scoring.score import score_for_capture

        scored, intake = score_for_capture(self.context, records)  # with its scoring_requests row
        self.capture.submit_intake(intake)
        counts = {"scored": len(scored), "accepted": intake.rows, "refused": len(intake.set_aside)}
        if wait:
            self.capture.flush()
            counts["stored"] = self.payload.count_ids(intake.table.column("scoring_id")) if intake.rows else 0
        scored.attrs["openmart"] = counts
        if intake.set_aside:
            refused = [{"scoring_id": a.scoring_id, "reason": a.reason} for a in intake.set_aside]
            raise RecordsRefused(
                f"{len(refused)} of {len(scored)} scored records refused (set aside); first: "
                f"{refused[0]['scoring_id']}: {refused[0]['reason']}",
                scored=scored,
                refused=refused,
                counts=counts,
            )
        return scored

    @property
    def capture(self) -> PayloadCapture:
        """This subscription's background payload writer (made on first use)."""
        if self._capture is None:
            from openmart.scoring.capture import PayloadCapture

            self._capture = PayloadCapture(self.context)
        return self._capture

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait for background payload writes to finish."""
        return self._capture.flush(timeout) if self._capture is not None else True

    # -- performance (scoring_requests) --------------------------------------------------------------
    def log_requests(self, requests: Iterable[Mapping[str, Any]] | pd.DataFrame, *, source: str = "rest") -> int:
        """Record scoring requests seen outside capture (e.g. the OpenScale routes, ``source="openscale"``)
        for the performance monitor: mappings with ``status`` (the HTTP status the client got) and
        optionally ``at`` (default now), ``records``, ``request_bytes``, ``response_bytes``,
        ``latency_ms``, ``source``, ``request_id`` (one stored already is skipped: a retry is
        counted once). All or none (ValidationError names the request and field); returns how many were added."""
        from openmart.mart import scoring_requests

        rows = scoring_requests.rows_from(requests, source=source)
        with self._mart.engine.begin() as conn:
            return scoring_requests.insert(conn, self.id, rows)

    def performance(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        last: int | None = None,
        bucket: str | None = "minute",
    ) -> Performance:
        """Throughput, payload size, latency percentiles and error rate of the scoring requests in
        [since, until) (or the newest ``last``), and a time series per ``bucket`` (minute, hour,
        day, 5m, ...; None: no series). Units: docs/monitors.md."""
        from openmart.monitors.performance import report

        start, end = arguments.time_window(since, until)
        last = arguments.optional_integer(last, "last", minimum=1)
        with self._mart.engine.connect() as conn:
            return report(conn, self.context, since=start, until=end, last=last, bucket=bucket)

    def evaluate(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        last: int | None = None,
        kinds: Iterable[str] | None = None,
        wait: bool = True,
        progress: Callable[[str], None] | None = None,
        on_started: Callable[[int], object] | None = None,
        chunk_by: str | None = None,
        on_chunk: Callable[[int, int], object] | None = None,
    ) -> EvaluationResult:
        """Run the enabled monitors over the window; stores and returns the measurements and
        alerts — all of them, or (anything failed) none: the evaluation is recorded failed and
        EvaluationFailed raised. While another evaluation of this subscription runs, wait for
        it (``wait=False``: raise EvaluationBusy).

        ``chunk_by`` (``"1d"``, ``"size=500"``, ``"number=10"``): cut the window into chunks and
        run the monitors on each, as ONE evaluation of kind ``chunked`` (a ``ChunkedResult``:
        ``result.frame`` is one row per chunk and measurement; alerts come from the newest chunk;
        ``on_chunk(index, total)`` hears each chunk). docs/chunks.md."""
        from openmart.evaluation.runner import evaluate

        start, end = arguments.time_window(since, until)
        if chunk_by is not None:
            from openmart.evaluation import chunks

            return chunks.evaluate(
                self.context,
                chunk_by,
                since=start,
                until=end,
                last=arguments.optional_integer(last, "last", minimum=1),
                kinds=kinds,
                progress=progress,
                on_chunk=on_chunk,
                flush=self.flush,
                wait=wait,
                on_started=on_started,
            )
        return evaluate(
            self.context,
            since=start,
            until=end,
            last=arguments.optional_integer(last, "last", minimum=1),
            kinds=kinds,
            progress=progress,
            flush=self.flush,
            wait=wait,
            on_started=on_started,
        )

    def compare(
        self,
        target: Window | str,
        baseline: Window | str | None = None,
        *,
        monitors: Sequence[str] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Comparison:
        """Compare two record sets: ``"production:2"``, ``"validation:2"``, ``"training:1"``,
        ``"production:1@2026-11-01..2026-11-08"`` or a ``Window``. ``baseline`` defaults to THE
        reference (the training set of the reference version). ``monitors``: drift, quality,
        fairness (default: those of them enabled); each runs with its enabled settings. Drift
        measures the target against the baseline; quality and fairness are measured on both.
        Stored as evaluations of kind ``comparison``: no alert is opened. docs/evaluation-store.md."""
        from openmart.evaluation.compare import compare

        return compare(self.context, target, baseline, monitors=monitors, progress=progress, flush=self.flush)

    def comparisons(self, *, limit: int = 3) -> list[Comparison]:
        """The newest stored comparisons, newest first."""
        from openmart.evaluation.compare import latest

        return latest(self.context, limit=arguments.integer(limit, "limit", minimum=1))

    def evaluations(self, *, status: str | None = None, limit: int | None = None) -> list[EvaluationRecord]:
        """This subscription's evaluations, newest first (those whose process died are marked
        abandoned first)."""
        from openmart.evaluation.runner import evaluations_of

        return evaluations_of(self.context, status=status, limit=limit)

    # -- the archive (issue #19; docs/scale.md) ------------------------------------------------------

    @property
    def archive_policy(self) -> int | None:
        """Whole UTC days older than this many days are archived by :meth:`archive` (None: none)."""
        from openmart.mart import archive

        with self._mart.engine.connect() as conn:
            return archive.policy(conn, self.id)

    def set_archive_policy(self, days: int | None) -> None:
        from openmart.mart import archive

        with self._mart.engine.begin() as conn:
            archive.set_policy(conn, self.id, days)

    def archive(
        self,
        *,
        older_than_days: int | None = None,
        to: str | os.PathLike[str] | None = None,
        kinds: Sequence[str] = ("payload", "feedback"),
        now: datetime | None = None,
        on_day: Callable[[str, datetime, int, int], object] | None = None,
    ) -> Any:
        """Move whole UTC days older than ``older_than_days`` (default: the archive policy) of the
        payload and feedback tables to Parquet files under ``to`` (default: the data directory's
        ``archive``), each day once: a crash at any step leaves every record in exactly one place,
        and running again finishes the work. Returns an ``ArchiveReport``."""
        from datetime import UTC, timedelta
        from pathlib import Path

        from openmart.mart import archive

        days = older_than_days if older_than_days is not None else self.archive_policy
        if days is None:
            raise ValidationError(
                f"subscription {self.name!r} has no archive policy: give older_than_days "
                "(or set one with set_archive_policy)"
            )
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise ValidationError(f"older_than_days {days!r}: give a whole number of days >= 0", value=days)
        for kind in kinds:
            if kind not in archive.KINDS:
                raise ValidationError(f"archive kind {kind!r}: choose payload or feedback", value=kind)
        root = Path(to) if to is not None else self._mart.settings.data_dir / "archive"
        before = (now or datetime.now(UTC)) - timedelta(days=days)
        tables = {"payload": self.record.payload_table, "feedback": self.record.feedback_table}
        return archive.run(
            self._mart.engine,
            self._mart.location.schema,
            self.id,
            self.name,
            tables,
            root,
            before,
            kinds=kinds,
            on_day=on_day,
        )

    def archive_segments(self, kind: str | None = None, *, complete: bool = True) -> list[Any]:
        """The archive's manifest for this subscription: one segment per archived day and kind."""
        from openmart.mart import archive

        with self._mart.engine.connect() as conn:
            return archive.segments(conn, self.id, kind, complete=complete)

    def pieces(self, specs: Sequence[Any], *, kind: str = "payload") -> Any:
        """Mergeable pieces (``openmart.aggregates.specs``) over every record of ``kind``: the hot
        table's, counted in PostgreSQL, merged with the archive's, counted by DuckDB."""
        from openmart.mart import archive

        if kind not in archive.KINDS:
            raise ValidationError(f"kind {kind!r}: choose payload or feedback", value=kind)
        table = self.record.payload_table if kind == "payload" else self.record.feedback_table
        with self._mart.engine.connect() as conn:
            return archive.pieces(conn, self.id, table, kind, specs)

    def measurements(
        self,
        *,
        metric: str | None = None,
        monitor: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        evaluation_id: int | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The history of measurements, oldest first (measured in [since, until), of one
        evaluation, the newest ``limit``: when given)."""
        from openmart.mart import evaluations

        start, end = arguments.time_window(since, until)
        limit = arguments.optional_integer(limit, "limit", minimum=1)
        with self._mart.engine.connect() as conn:
            return evaluations.measurements_frame(
                conn,
                self.id,
                metric=metric,
                monitor=monitor,
                since=start,
                until=end,
                evaluation_id=evaluation_id,
                limit=limit,
            )

    def explanations(self, *, limit: int = 20) -> list[dict[str, Any]]:
        """The newest stored explanations (``openmart explain``), newest first."""
        limit = arguments.integer(limit, "limit", minimum=1)
        with self._mart.engine.connect() as conn:
            return explanations_table.recent(conn, self.id, limit)

    def explain(
        self,
        scoring_id: str,
        *,
        method: str = "shap",
        refresh: bool = False,
        link: str = "identity",
        tolerance: float | None = None,
        background_size: int | None = None,
    ) -> StoredExplanation:
        """Explain one payload record through the binding (kept in the mart; read back unless
        ``refresh``). SHAP's ``link``: ``identity`` (the probability, or a regression's output) or
        ``logit`` (log-odds); ``tolerance``: the largest standard error allowed as a share of the
        largest attribution (default 0.05); ``background_size``: reference rows drawn at random
        as the background (default 100). The result's ``estimate`` states the error achieved."""
        from openmart.explain import service

        return service.explain(
            self.context,
            str(scoring_id),
            method=arguments.choice(method, "method", ("shap", "lime")),
            refresh=refresh,
            link=arguments.choice(link, "link", service.LINKS),
            tolerance=service.shapley.DEFAULT_TOLERANCE
            if tolerance is None
            else arguments.number(tolerance, "tolerance", minimum=0, maximum=0.5, exclusive_minimum=True),
            background_size=service.BACKGROUND_ROWS
            if background_size is None
            else arguments.integer(background_size, "background_size", minimum=1, maximum=100_000),
        )

    # -- slices and root cause (docs/slices.md) ---------------------------------------------------
    def slices(
        self,
        *,
        metric: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        last: int | None = None,
        min_support: float = 0.01,
        min_records: int = 30,
        top: int = 10,
        alpha: float = 0.05,
        bins: int = 10,
        expressions: Sequence[str] = (),
        pairs: bool = False,
        features: Sequence[str] | None = None,
        baseline: str | None = None,
        baseline_since: datetime | str | None = None,
        baseline_until: datetime | str | None = None,
        version: str | None = None,
        baseline_version: str | None = None,
    ) -> SliceResult:
        """Quality by slice over the window's labelled records, and the slices that cost the most,
        ranked by impact (``.frame``; every slice tested in ``.tested``; ``expressions`` such as
        ``"age > 50 and sex == 'F'"`` in ``.expressions``). Slices worse than the rest; with
        ``baseline="reference"`` or ``baseline_since``/``baseline_until``, slices whose metric
        dropped from the baseline. ``version``/``baseline_version``: one model version's
        production records (a slice only v2 gets wrong: ``version="2", baseline_version="1"``)."""
        from openmart.slices.service import slices

        window, base = self._slice_windows(
            since, until, last, baseline, baseline_since, baseline_until, version, baseline_version
        )
        with self._mart.engine.connect() as conn:
            return slices(
                self.context,
                conn,
                window,
                metric=metric,
                min_share=arguments.number(min_support, "min_support", minimum=0.0, maximum=1.0),
                min_records=arguments.integer(min_records, "min_records", minimum=2),
                top=arguments.integer(top, "top", minimum=1),
                alpha=arguments.number(alpha, "alpha", minimum=0.0, maximum=1.0, exclusive_minimum=True),
                bins=arguments.integer(bins, "bins", minimum=2, maximum=100),
                expressions=[expressions] if isinstance(expressions, str) else list(expressions),
                pairs=bool(pairs),
                features=features,
                baseline=base,
            )

    def root_cause(
        self,
        *,
        metric: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        last: int | None = None,
        baseline: str | None = None,
        baseline_since: datetime | str | None = None,
        baseline_until: datetime | str | None = None,
        bins: int = 10,
        features: Sequence[str] | None = None,
        version: str | None = None,
        baseline_version: str | None = None,
    ) -> RootCause:
        """The features whose drift best explains the metric's change from the baseline (the
        reference when it holds predictions; else give ``baseline_since``/``baseline_until``),
        ranked (``.frame``)."""
        from openmart.slices.service import root_cause

        window, base = self._slice_windows(
            since, until, last, baseline, baseline_since, baseline_until, version, baseline_version
        )
        with self._mart.engine.connect() as conn:
            return root_cause(
                self.context,
                conn,
                window,
                baseline=base or "reference",
                metric=metric,
                bins=arguments.integer(bins, "bins", minimum=2, maximum=100),
                features=features,
            )

    @staticmethod
    def _slice_windows(
        since: Any,
        until: Any,
        last: Any,
        baseline: str | None,
        baseline_since: Any,
        baseline_until: Any,
        version: str | None = None,
        baseline_version: str | None = None,
    ) -> tuple[Window, Window | str | None]:
        from openmart.mart.windows import Window

        start, end = arguments.time_window(since, until)
        v = check_version(version) if version is not None else None
        bv = check_version(baseline_version, "baseline_version") if baseline_version is not None else None
        window = Window(start, end, arguments.optional_integer(last, "last", minimum=1), version=v)
        if baseline_since is not None or baseline_until is not None or bv is not None:
            b_start, b_end = arguments.time_window(
                baseline_since, baseline_until, since_name="baseline_since", until_name="baseline_until"
            )
            return window, Window(b_start, b_end, version=bv)
        if baseline is not None:
            return window, arguments.choice(baseline, "baseline", ("reference",))
        return window, None

    def evaluation(self, evaluation_id: int) -> EvaluationRecord:
        """One of this subscription's evaluations (NotFound for another subscription's)."""
        from openmart.mart import evaluations

        with self._mart.engine.connect() as conn:
            found = evaluations.get(conn, evaluation_id)
        if found.subscription_id != self.id:
            raise NotFound(f"subscription {self.name!r} has no evaluation {evaluation_id}")
        return found

    def evaluation_alerts(self, evaluation_id: int) -> list[AlertRecord]:
        """The alerts one evaluation opened, updated or resolved."""
        from openmart.mart import alerts

        with self._mart.engine.connect() as conn:
            return alerts.for_evaluation(conn, self.evaluation(evaluation_id).id)

    def provider(self) -> Provider:
        return self.context.provider()


def _connect_binding(mart: Mart, binding: str) -> Provider:
    return mart.bindings.get(binding).connect()


# -- alert channels (docs/alerts.md) ---------------------------------------------------------------


@dataclass(frozen=True)
class AlertChannel:
    id: int
    subscription: str
    name: str
    kind: str
    #: as stored: the password and the webhook URL sealed (see openmart.alerting.channels)
    stored_settings: Mapping[str, str] = field(repr=False)
    enabled: bool
    created_at: datetime

    @property
    def settings(self) -> dict[str, str]:
        """The settings as they may be shown: the password as ***, the webhook URL as host/***."""
        return secrets.redact(self.stored_settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subscription": self.subscription,
            "name": self.name,
            "kind": self.kind,
            "settings": self.settings,
            "enabled": self.enabled,
            "created_at": self.created_at.isoformat(),
        }


class AlertChannels:
    """Where a subscription's alerts are sent: ``webhook`` (a Slack-compatible JSON body) or
    ``email`` (SMTP with STARTTLS). One message when an alert opens, one when it resolves."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    def _wrap(self, row: Any) -> AlertChannel:
        return AlertChannel(
            row.id, row.subscription, row.name, str(row.kind), dict(row.stored_settings), row.enabled, row.created_at
        )

    def add(self, name: str, kind: str, settings: Mapping[str, Any] | None = None) -> AlertChannel:
        """Add a channel. Its secrets (a webhook's URL, an SMTP password, values given as enc:...)
        are stored encrypted; refused without a key (``openmart secrets init``)."""
        from openmart.alerting import channels
        from openmart.mart import alert_channels

        validate_name(name, "alert channel")
        channel_kind = alert_channels.parse_kind(kind)
        raw = {str(k): str(v) for k, v in (settings or {}).items()}
        clear, given_encrypted = secrets.open_given(raw, self._sub.mart.settings)
        secrets.remember_settings(clear, channels.secret_names(channel_kind) | given_encrypted)
        if clear.get("url"):
            channels.remember_url(clear["url"])
        with secrets.scrubbed_errors():
            clear = channels.validate(channel_kind, clear)
        stored = channels.seal(channel_kind, clear, given_encrypted, self._sub.mart.settings)
        with self._sub.mart.engine.begin() as conn:
            return self._wrap(alert_channels.insert(conn, self._sub.id, name, channel_kind, stored))

    def get(self, name: str) -> AlertChannel:
        from openmart.mart import alert_channels

        with self._sub.mart.engine.connect() as conn:
            return self._wrap(alert_channels.get(conn, self._sub.id, name))

    def list(self) -> list[AlertChannel]:
        from openmart.mart import alert_channels

        with self._sub.mart.engine.connect() as conn:
            return [self._wrap(r) for r in alert_channels.list_channels(conn, self._sub.id)]

    def remove(self, name: str) -> None:
        """Remove a channel and its deliveries (nothing is left to send them to)."""
        from openmart.mart import alert_channels

        with self._sub.mart.engine.begin() as conn:
            alert_channels.remove(conn, self._sub.id, name)

    def _set_enabled(self, name: str, enabled: bool) -> AlertChannel:
        from openmart.mart import alert_channels

        with self._sub.mart.engine.begin() as conn:
            return self._wrap(alert_channels.set_enabled(conn, self._sub.id, name, enabled))

    def enable(self, name: str) -> AlertChannel:
        """Enable a channel: new alerts are queued to it, and those held while it was disabled go."""
        return self._set_enabled(name, True)

    def disable(self, name: str) -> AlertChannel:
        """Disable a channel: no new messages are queued to it, queued ones wait."""
        return self._set_enabled(name, False)

    def test(self, name: str) -> Message:
        """Send a test message through the channel now (no alert, no outbox); raises
        DeliveryError (scrubbed) when it was not taken. Returns what was sent."""
        from openmart.alerting.dispatcher import send_test
        from openmart.mart import alert_channels

        with self._sub.mart.engine.connect() as conn:
            channel = alert_channels.get(conn, self._sub.id, name)
        return send_test(channel, self._sub.mart.settings)


def _number(value: Any) -> int | float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"class label {value!r} is not a number, as this subscription's classes are") from None
    return int(f) if f.is_integer() else f


def parse_time(value: datetime | str | None, name: str = "since/until") -> datetime | None:
    return arguments.timestamp(value, name)  # ValidationError naming the argument, not a pandas traceback


class RecordStore:
    """One of a subscription's record tables."""

    def __init__(self, sub: Subscription, kind: RecordKind) -> None:
        self._sub = sub
        self.kind = kind
        self.table = sub.record.table(kind)

    def _log(
        self,
        data: Any,
        on_duplicate: OnDuplicate | str = OnDuplicate.REFUSE,
        allow_extra_columns: bool = False,
        version: str | None = None,
    ) -> tuple[Any, int]:
        ids, rows = self.log_batches(
            [data], on_duplicate=on_duplicate, allow_extra_columns=allow_extra_columns, version=version
        )
        return (ids[0] if ids else None), rows

    def log_batches(
        self,
        batches: Iterable[Any],
        progress: Callable[[int], None] | None = None,
        *,
        on_duplicate: OnDuplicate | str = OnDuplicate.REFUSE,
        allow_extra_columns: bool = False,
        version: str | None = None,
    ) -> tuple[list[Any], int]:
        """Store several batches in ONE transaction: all of them, or (on a bad record) none.
        ``progress`` is called with each batch's row count (the CLI's progress bar); a record
        whose scoring id is stored already is refused, or replaces it with ``on_duplicate="replace"``;
        a column the subscription has no place for is refused, or dropped with ``allow_extra_columns``.
        ``version``: the model version of records without an ``asset_revision`` of their own
        (default: the current version; a version new to the mart becomes the current one)."""
        with self._sub.mart.engine.begin() as conn:
            return record_store.log_batches(
                conn,
                self._sub.record,
                self.kind,
                batches,
                on_duplicate=on_duplicate,
                allow_extra_columns=allow_extra_columns,
                progress=progress,
                version=version,
            )

    def count(self) -> int:
        with self._sub.mart.engine.connect() as conn:
            return record_store.count(conn, self.table)

    def page(
        self, *, limit: int = 100, after: Sequence[Any] | None = None, offset: int = 0
    ) -> tuple[pd.DataFrame, int]:
        """One page in a stable order (payload: scoring_timestamp, scoring_id; else record_id):
        the records after the cursor ``after`` (the last record's values of those columns) or
        ``offset`` records, and the table's total."""
        limit = arguments.integer(limit, "limit", minimum=1)
        offset = arguments.integer(offset, "offset", minimum=0)
        with self._sub.mart.engine.connect() as conn:
            return record_store.page(conn, self._sub.record, self.kind, limit=limit, after=after, offset=offset)

    def count_ids(self, scoring_ids: Iterable[Any]) -> int:
        """How many of these scoring ids the table holds (the truth, read from the mart)."""
        with self._sub.mart.engine.connect() as conn:
            return record_store.count_ids(conn, self.table, scoring_ids)

    def read(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
        columns: Sequence[str] | None = None,
        newest_first: bool = False,
    ) -> pd.DataFrame:
        with self._sub.mart.engine.connect() as conn:
            return record_store.read(
                conn,
                self._sub.record,
                self.kind,
                since=parse_time(since, "since"),
                until=parse_time(until, "until"),
                limit=limit,
                columns=columns,
                newest_first=newest_first,
            )


class PayloadRecords(RecordStore):
    def log(
        self,
        data: Any,
        *,
        allow_extra_columns: bool = False,
        requests: Iterable[Mapping[str, Any]] | None = None,
        request_source: str = "rest",
        version: str | None = None,
    ) -> pd.Series:
        """Store scored records (DataFrame, list of dicts, or OpenScale request/response); returns
        their scoring ids (kept as given, or generated). ``requests``: the scoring requests these
        records came in (see :meth:`Subscription.log_requests`), stored in the same transaction.
        ``version``: the model version of records without an ``asset_revision`` (default: current)."""
        if requests is None:
            ids, _ = self._log(data, allow_extra_columns=allow_extra_columns, version=version)
        else:
            from openmart.mart import scoring_requests

            rows = scoring_requests.rows_from(requests, source=request_source)  # refused before anything is stored
            with self._sub.mart.engine.begin() as conn:
                batch_ids, _ = record_store.log_batches(
                    conn, self._sub.record, self.kind, [data], allow_extra_columns=allow_extra_columns, version=version
                )
                scoring_requests.insert(conn, self._sub.id, rows)
            ids = batch_ids[0] if batch_ids else None
        return ids.to_pandas(types_mapper=pd.ArrowDtype) if ids is not None else pd.Series(dtype=str)


class FeedbackRecords(RecordStore):
    def log(
        self,
        data: Any,
        *,
        on_duplicate: OnDuplicate | str = OnDuplicate.REFUSE,
        allow_extra_columns: bool = False,
        version: str | None = None,
    ) -> int:
        """Store labelled records; a ``scoring_id`` column links them to payload records. One
        label per scoring id: logging one again is refused by name (nothing stored), or replaces
        the stored label with ``on_duplicate="replace"``. ``version``: the model version of
        records without an ``asset_revision`` (default: the current version)."""
        return self._log(data, on_duplicate, allow_extra_columns, version)[1]


class Versions:
    """The subscription's model versions (``sub.versions``): records carry their version (their
    ``asset_revision``); records written without one belong to the current version."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    def list(self) -> list[versions_table.ModelVersion]:
        with self._sub.mart.engine.connect() as conn:
            return versions_table.list_for(conn, self._sub.id)

    @property
    def current(self) -> str | None:
        with self._sub.mart.engine.connect() as conn:
            return versions_table.current_version(conn, self._sub.id)

    def start(self, version: str, *, note: str | None = None) -> bool:
        """``version`` becomes the current version: records written from now on without a
        version of their own (captured, scored, logged) belong to it, a new production set.
        True when the version is new to the mart."""
        with self._sub.mart.engine.begin() as conn:
            # versions.start takes its locks itself, in the order capture takes them (no deadlock)
            new = versions_table.start(conn, self._sub.id, version, note=note)
        self._sub.reload()
        return new

    def summary(self) -> list[dict[str, Any]]:
        """Every version, oldest first, with its records: payload and feedback (production) and
        the labelled sets (training, validation); JSON-ready (the CLI's and REST's table)."""
        sub = self._sub
        with sub.mart.engine.connect() as conn:
            known = versions_table.list_for(conn, sub.id)
            counts = versions_table.counts(
                conn, sub.record.payload_table, sub.record.feedback_table, sub.record.reference_table
            )
        rows = [{**v.to_dict(), **asdict(counts.pop(v.version, versions_table.VersionCounts()))} for v in known]
        # records of a version the mart did not register (none is expected): shown, not hidden
        for version, found in counts.items():
            unknown = {"version": version, "source": None, "started_at": None, "current": False, "note": None}
            rows.append({**unknown, **asdict(found)})
        return rows


class ReferenceRecords(RecordStore):
    """The labelled sets: every model version's training and validation records. THE reference
    (the default baseline of drift, data quality and explanations) is the training set of the
    reference version (``Subscription.reference_version``)."""

    def load(
        self,
        data: Any,
        *,
        replace: bool = True,
        allow_extra_columns: bool = False,
        environment: str = "training",
        version: str | None = None,
    ) -> int:
        """Store a labelled set (``environment`` training or validation, of model ``version``,
        default the current version), in one transaction: replacing that set (``replace=False``:
        adding to it), or, on a refused row, leaving it as it was. A training set of the current
        version (or the first one loaded) becomes THE reference, its statistics kept in
        ``subscriptions.reference_profile`` for drift."""
        sub = self._sub
        frame = to_frame(data, sub.schema)
        env = records_environment(environment)
        rows = self._load(frame, replace, allow_extra_columns, env, version)
        sub.reload()
        return rows

    def _load(
        self, frame: pd.DataFrame, replace: bool, allow_extra_columns: bool, env: Environment, version: str | None
    ) -> int:
        sub = self._sub
        profile_of = partial(reference_profile, sub.schema)
        with sub.mart.engine.begin() as conn:
            if replace:
                return record_store.replace_set(
                    conn,
                    sub.record,
                    frame,
                    profile_of,
                    environment=env,
                    version=version,
                    allow_extra_columns=allow_extra_columns,
                )
            subscriptions_table.lock(conn, sub.id)
            fresh = subscriptions_table.by_id(conn, sub.id)
            target = (env, fresh.asset_revision if version is None else check_version(version))
            _, rows = record_store.log_batches(
                conn, fresh, self.kind, [frame], allow_extra_columns=allow_extra_columns, labelled_set=target
            )
            # as replace_set decides: the current version's training set, or the reference's own
            becomes_reference = env is Environment.TRAINING and (
                target[1] in (fresh.asset_revision, fresh.reference_version) or fresh.reference_version is None
            )
            if becomes_reference:
                whole = record_store.read(conn, fresh, self.kind, labelled_set=target)
                subscriptions_table.set_reference_profile(conn, sub.id, profile_of(whole), version=target[1])
            return rows

    def count(self) -> int:
        """THE reference's records (:meth:`sets` counts every labelled set)."""
        with self._sub.mart.engine.connect() as conn:
            fresh = subscriptions_table.by_id(conn, self._sub.id)
            return record_store.count_set(conn, fresh, record_store.reference_set(fresh))

    def use(self, version: str) -> int:
        """The training set of ``version`` becomes THE reference (its statistics recomputed); its rows."""
        with self._sub.mart.engine.begin() as conn:
            rows = record_store.use_reference(
                conn, self._sub.record, version, partial(reference_profile, self._sub.schema)
            )
        self._sub.reload()
        return rows

    def sets(self) -> pd.DataFrame:
        """The labelled sets stored: environment, version, records, and which one is THE reference."""
        with self._sub.mart.engine.connect() as conn:
            rows = record_store.labelled_sets(conn, self._sub.record)
            ref = subscriptions_table.by_id(conn, self._sub.id).reference_version
        return pd.DataFrame(
            [
                {"environment": e, "version": v, "records": n, "reference": e == "training" and v == ref}
                for e, v, n in rows
            ],
            columns=["environment", "version", "records", "reference"],
        )

    def read_set(self, environment: str = "training", version: str | None = None, **kwargs: Any) -> pd.DataFrame:
        """One labelled set's records (default: the current version's training set)."""
        env = records_environment(environment)
        with self._sub.mart.engine.connect() as conn:
            fresh = subscriptions_table.by_id(conn, self._sub.id)
            target = (env, fresh.asset_revision if version is None else check_version(version))
            return record_store.read(conn, fresh, self.kind, labelled_set=target, **kwargs)

    def profile(self) -> dict[str, Any] | None:
        with self._sub.mart.engine.connect() as conn:
            return subscriptions_table.reference_profile(conn, self._sub.id)
