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
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from openmart import secrets
from openmart.config import Settings
from openmart.errors import AlreadyExists, NotFound, RecordsRefused, ValidationError
from openmart.mart import migrate, models
from openmart.mart.engine import DEFAULT_SCHEMA, Location, create_engine, resolve
from openmart.mart.identifiers import quote, validate_name
from openmart.mart.records import RecordKind, copy_into, create_table_sql, prepare, select_sql, table_name
from openmart.providers import registry
from openmart.schema import ProblemType, SubscriptionSchema, infer_schema

if TYPE_CHECKING:
    from openmart.evaluation.results import EvaluationResult
    from openmart.providers.base import Provider
    from openmart.scoring.capture import PayloadCapture


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
        from openmart.mart.readonly import check_read_only, query_error

        check_read_only(query)  # one statement: a second one (after a COMMIT) would escape the transaction
        with self.engine.connect() as conn:
            try:
                # the transaction's first statement, so it holds before the query runs
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                conn.exec_driver_sql("SET LOCAL standard_conforming_strings = on")  # as check_read_only reads quotes
                return pd.read_sql_query(sa.text(query), conn, params=dict(params or {}))
            except (sa.exc.DBAPIError, pd.errors.DatabaseError) as exc:  # pandas wraps the driver's error
                raise query_error(exc) from None
            finally:
                conn.rollback()

    def alerts(self, *, status: str | None = "open") -> pd.DataFrame:
        q = sa.select(models.Alert, models.Subscription.name.label("subscription")).join(
            models.Subscription, models.Subscription.id == models.Alert.subscription_id
        )
        if status:
            q = q.where(models.Alert.status == status)
        with self.engine.connect() as conn:
            return pd.read_sql_query(q.order_by(models.Alert.id), conn)


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

    def _wrap(self, row: models.Binding) -> Binding:
        return Binding(row.id, row.name, row.provider, dict(row.settings), row.created_at, self._mart)

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
        with sa.orm.Session(self._mart.engine) as s:
            if s.scalar(sa.select(models.Binding).where(models.Binding.name == name)):
                raise AlreadyExists(f"a binding named {name!r} exists already")
            row = models.Binding(name=name, provider=provider, settings=stored)
            s.add(row)
            s.commit()
            s.refresh(row)
            return self._wrap(row)

    def get(self, name: str) -> Binding:
        with sa.orm.Session(self._mart.engine) as s:
            row = s.scalar(sa.select(models.Binding).where(models.Binding.name == name))
            if row is None:
                raise NotFound(f"no binding named {name!r}")
            return self._wrap(row)

    def list(self) -> list[Binding]:
        with sa.orm.Session(self._mart.engine) as s:
            return [self._wrap(r) for r in s.scalars(sa.select(models.Binding).order_by(models.Binding.name))]

    def remove(self, name: str) -> None:
        with sa.orm.Session(self._mart.engine) as s:
            row = s.scalar(sa.select(models.Binding).where(models.Binding.name == name))
            if row is None:
                raise NotFound(f"no binding named {name!r}")
            users = s.scalars(sa.select(models.Subscription.name).where(models.Subscription.binding_id == row.id)).all()
            if users:
                raise ValidationError(f"binding {name!r} is used by subscriptions {list(users)}: remove them first")
            s.delete(row)
            s.commit()

    def rotate_key(self, new_key: str) -> int:
        """Re-encrypt every stored secret under ``new_key`` alone, in one transaction (all
        bindings, or none on any failure); secrets an older openmart kept in clear are sealed on
        the way. Returns how many values were re-encrypted. The caller stores the new key."""
        old = secrets.require_keyring(self._mart.settings, "re-encrypting the stored secrets needs the current key")
        count = 0
        with self._mart.engine.begin() as conn:
            rows = conn.execute(
                sa.select(models.Binding.id, models.Binding.name, models.Binding.provider, models.Binding.settings)
                .order_by(models.Binding.id)
                .with_for_update()
            ).all()
            for id_, name, provider, stored in rows:
                rotated, n = secrets.reencrypt(stored, old, new_key, _declared_secrets(provider), name)
                if n:
                    conn.execute(sa.update(models.Binding).where(models.Binding.id == id_).values(settings=rotated))
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
        given) unless ``schema`` is passed; the reference data is then loaded too."""
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
        with self._mart.engine.begin() as conn:
            session = sa.orm.Session(bind=conn)
            if session.scalar(sa.select(models.Subscription).where(models.Subscription.name == name)):
                raise AlreadyExists(f"a subscription named {name!r} exists already")
            row = models.Subscription(
                name=name,
                binding_id=binding_row.id if binding_row else None,
                deployment_id=deployment,
                asset_revision=asset_revision,
                problem_type=str(schema.problem_type),
                schema=schema.to_dict(),
                payload_table="",
                feedback_table="",
                reference_table="",
            )
            session.add(row)
            session.flush()
            for kind in RecordKind:
                table = table_name(kind, row.id)
                setattr(row, f"{kind}_table", table)
                for stmt in create_table_sql(kind, table, schema):
                    conn.exec_driver_sql(stmt)
            session.flush()
            sub_id = row.id
        sub = self.get(name)
        assert sub.id == sub_id
        if reference is not None:
            sub.reference.load(reference)
        return sub

    def get(self, name: str) -> Subscription:
        with sa.orm.Session(self._mart.engine) as s:
            row = s.scalar(sa.select(models.Subscription).where(models.Subscription.name == name))
            if row is None:
                raise NotFound(f"no subscription named {name!r}")
            binding = s.get(models.Binding, row.binding_id) if row.binding_id else None
            return Subscription(self._mart, row, binding.name if binding else None)

    def list(self) -> list[Subscription]:
        with sa.orm.Session(self._mart.engine) as s:
            rows = s.execute(
                sa.select(models.Subscription, models.Binding.name)
                .outerjoin(models.Binding, models.Binding.id == models.Subscription.binding_id)
                .order_by(models.Subscription.name)
            ).all()
            return [Subscription(self._mart, r, b) for r, b in rows]

    def add_classes(self, name: str, labels: Sequence[Any]) -> Subscription:
        """The model answers classes it did not have when subscribed: add them (a multiclass
        subscription without a probability column, whose stored records stay valid as they are).
        Records set aside for an unknown class can then be replayed (``capture replay``)."""
        sub = self.get(name)
        schema = sub.schema
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
        with self._mart.engine.begin() as conn:
            conn.execute(
                sa.update(models.Subscription).where(models.Subscription.id == sub.id).values(schema=updated.to_dict())
            )
        return self.get(name)

    def remove(self, name: str) -> None:
        sub = self.get(name)
        with self._mart.engine.begin() as conn:
            for table in (sub.payload.table, sub.feedback.table, sub.reference.table):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(table)}")
            conn.execute(sa.delete(models.Subscription).where(models.Subscription.id == sub.id))


class Subscription:
    """A deployment under monitoring."""

    def __init__(self, mart: Mart, row: models.Subscription, binding: str | None) -> None:
        self._mart = mart
        self.id: int = row.id
        self.name: str = row.name
        self.binding: str | None = binding
        self.deployment_id: str | None = row.deployment_id
        self.asset_revision: str | None = row.asset_revision
        self.schema = SubscriptionSchema.from_dict(row.schema)
        self.created_at: datetime = row.created_at
        self.payload = PayloadRecords(self, RecordKind.PAYLOAD, row.payload_table)
        self.feedback = FeedbackRecords(self, RecordKind.FEEDBACK, row.feedback_table)
        self.reference = ReferenceRecords(self, RecordKind.REFERENCE, row.reference_table)
        self._capture: PayloadCapture | None = None
        from openmart.monitors.store import Monitors

        self.monitors = Monitors(self)

    @property
    def mart(self) -> Mart:
        return self._mart

    def __repr__(self) -> str:
        return f"<Subscription {self.name!r} ({self.schema.problem_type}, binding={self.binding!r})>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "binding": self.binding,
            "deployment": self.deployment_id,
            "asset_revision": self.asset_revision,
            "schema": self.schema.to_dict(),
            "tables": {
                "payload": self.payload.table,
                "feedback": self.feedback.table,
                "reference": self.reference.table,
            },
            "created_at": self.created_at.isoformat(),
        }

    def score(self, records: pd.DataFrame, *, wait: bool = False) -> pd.DataFrame:
        """Score through the binding and log the payload in the background (``wait=True``: return
        once it is kept). Returns the records with ``scoring_id``, prediction and probability;
        ``.attrs["openmart"]`` holds the counts (scored, accepted, refused, and stored with wait).

        An answer that does not fit the schema (a label outside the classes, a probability
        outside [0, 1], a null prediction) is refused by name: the other records are logged, the
        refused ones are set aside (``openmart capture rejected``), and :class:`RecordsRefused`
        is raised with every scored record and each refusal's reason."""
        from openmart.scoring.intake import IntakeBuilder
        from openmart.scoring.score import score_frame

        scored = score_frame(self, records)
        intake = IntakeBuilder(self.schema, asset_revision=self.asset_revision).build([scored])
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

            self._capture = PayloadCapture(self)
        return self._capture

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait for background payload writes to finish."""
        return self._capture.flush(timeout) if self._capture is not None else True

    def evaluate(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        last: int | None = None,
        kinds: Iterable[str] | None = None,
    ) -> EvaluationResult:
        """Run the enabled monitors over the window; stores and returns the measurements."""
        from openmart.evaluation.runner import evaluate

        return evaluate(self, since=parse_time(since), until=parse_time(until), last=last, kinds=kinds)

    def measurements(self, *, metric: str | None = None, monitor: str | None = None) -> pd.DataFrame:
        """The history of measurements, oldest first."""
        q = sa.select(models.Measurement).where(models.Measurement.subscription_id == self.id)
        if metric:
            q = q.where(models.Measurement.metric == metric)
        if monitor:
            q = q.where(models.Measurement.monitor == monitor)
        with self._mart.engine.connect() as conn:
            return pd.read_sql_query(q.order_by(models.Measurement.id), conn)

    def provider(self) -> Provider:
        if not self.binding:
            raise ValidationError(f"subscription {self.name!r} has no binding to score through")
        return self._mart.bindings.get(self.binding).connect()


def _number(value: Any) -> int | float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"class label {value!r} is not a number, as this subscription's classes are") from None
    return int(f) if f.is_integer() else f


def parse_time(value: datetime | str | None) -> datetime | None:
    return pd.Timestamp(value).to_pydatetime() if isinstance(value, str) else value


class RecordStore:
    """One of a subscription's record tables."""

    time_column: str | None = None

    def __init__(self, sub: Subscription, kind: RecordKind, table: str) -> None:
        self._sub = sub
        self.kind = kind
        self.table = table

    def _log(self, data: Any) -> Any:
        ids, rows = self.log_batches([data])
        return (ids[0] if ids else None), rows

    def log_batches(
        self, batches: Iterable[Any], progress: Callable[[int], None] | None = None
    ) -> tuple[list[Any], int]:
        """Store several batches in ONE transaction: all of them, or (on a bad record) none.
        ``progress`` is called with each batch's row count (the CLI's progress bar)."""
        raw = self._sub.mart.engine.raw_connection()
        all_ids, rows, offset = [], 0, 0
        try:
            for data in batches:
                try:
                    arrow, ids = prepare(self.kind, data, self._sub.schema)
                    copy_into(raw, self.table, arrow, self.kind)
                except ValidationError as exc:
                    if offset and exc.row is not None:  # name the record by its place in the whole input
                        raise ValidationError(
                            f"{exc} [record {offset + exc.row} of the input]",
                            row=offset + exc.row,
                            column=exc.column,
                            value=exc.value,
                        ) from exc
                    raise
                all_ids.append(ids)
                rows += arrow.num_rows
                offset += arrow.num_rows
                if progress:
                    progress(arrow.num_rows)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
        return all_ids, rows

    def count(self) -> int:
        with self._sub.mart.engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {quote(self.table)}").scalar_one())

    def count_ids(self, scoring_ids: Iterable[Any]) -> int:
        """How many of these scoring ids the table holds (the truth, read from the mart)."""
        ids = [str(i) for i in scoring_ids]
        with self._sub.mart.engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    f"SELECT count(*) FROM {quote(self.table)} WHERE scoring_id = ANY(%(ids)s)", {"ids": ids}
                ).scalar_one()
            )

    def read(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
        columns: Sequence[str] | None = None,
        newest_first: bool = False,
    ) -> pd.DataFrame:
        since, until = parse_time(since), parse_time(until)
        sql, params = select_sql(
            self.table,
            time_column=self.time_column,
            since=since,
            until=until,
            limit=limit,
            columns=columns,
            newest_first=newest_first,
        )
        raw = self._sub.mart.engine.raw_connection()
        try:
            with raw.cursor() as cur:
                cur.execute(sql, params)
                names = [d[0] for d in cur.description]
                frame = pd.DataFrame(cur.fetchall(), columns=names)
        finally:
            raw.close()
        for col in self._sub.schema.numeric_features:
            if col in frame.columns:
                frame[col] = pd.to_numeric(frame[col])
        return frame


class PayloadRecords(RecordStore):
    time_column = "scoring_timestamp"

    def log(self, data: Any) -> pd.Series:
        """Store scored records (DataFrame, list of dicts, or OpenScale request/response); returns
        their scoring ids (kept as given, or generated)."""
        ids, _ = self._log(data)
        return ids.to_pandas(types_mapper=pd.ArrowDtype) if ids is not None else pd.Series(dtype=str)


class FeedbackRecords(RecordStore):
    time_column = "recorded_at"

    def log(self, data: Any) -> int:
        """Store labelled records; a ``scoring_id`` column links them to payload records."""
        return self._log(data)[1]


class ReferenceRecords(RecordStore):
    def load(self, data: Any, *, replace: bool = True) -> int:
        """Store the reference (training/baseline) data, replacing what was there, and compute
        its statistics once (kept in ``subscriptions.reference_profile`` for drift)."""
        from openmart.mart.records import to_frame
        from openmart.monitors.profile import profile_frame

        frame = to_frame(data, self._sub.schema)
        if replace:
            with self._sub.mart.engine.begin() as conn:
                conn.exec_driver_sql(f"TRUNCATE {quote(self.table)}")
        rows = self._log(frame)[1]
        s = self._sub.schema
        kinds = {c.name: str(c.kind) for c in s.input_columns}
        outputs = frame.copy()
        # output drift compares predictions with the reference's predictions, or its labels
        source = s.prediction if s.prediction in frame.columns else s.label
        outputs["__output__"] = frame[source]
        kinds["__output__"] = "numeric" if s.problem_type is ProblemType.REGRESSION else "categorical"
        profile = profile_frame(outputs, kinds)
        profile["output_source"] = source
        with self._sub.mart.engine.begin() as conn:
            conn.execute(
                sa.update(models.Subscription)
                .where(models.Subscription.id == self._sub.id)
                .values(reference_profile=profile)
            )
        return rows

    def profile(self) -> dict[str, Any] | None:
        with self._sub.mart.engine.connect() as conn:
            return conn.execute(
                sa.select(models.Subscription.reference_profile).where(models.Subscription.id == self._sub.id)
            ).scalar_one()
