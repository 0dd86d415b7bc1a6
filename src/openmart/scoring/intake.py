"""Captured items to payload records, record by record: what fits becomes one Arrow batch, what
does not is set aside with its raw material and its reason. One bad record never takes its
batch with it.

An item is either an :class:`Exchange` (a raw request/response pair the capture proxy saw,
decoded here with the binding's own encoding) or a DataFrame of scored records (``sub.score``).
The unit kept or set aside as a whole is one exchange (one answered request), or one row of a
DataFrame.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from openmart.errors import ValidationError
from openmart.mart.capture_store import SOURCE_EXCHANGE, SOURCE_RECORD, SetAside
from openmart.mart.records import RecordKind, prepare, record_ids
from openmart.mart.scoring_requests import RequestRow
from openmart.schema import SubscriptionSchema

if TYPE_CHECKING:
    from openmart.providers.base import Provider

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exchange:
    """One request/response pair seen by the capture proxy, decoded later, off the hot path."""

    scoring_id: str
    timestamp: pd.Timestamp
    response_time_ms: float
    request: bytes
    response: bytes
    status: int = 200  # the deployment's answer, passed to the client
    #: the answer's headers the provider asked to keep (``exchange_headers``), names in lower case
    headers: tuple[tuple[str, str], ...] = ()


def exchange_request(ex: Exchange, records: int) -> RequestRow:
    """The request row of an answered exchange (its id is the exchange's scoring id)."""
    return RequestRow(
        ex.timestamp.to_pydatetime(warn=False),
        ex.status,
        records,
        len(ex.request),
        len(ex.response),
        ex.response_time_ms,
        "proxy",
        ex.scoring_id,
    )


Item = pd.DataFrame | Exchange

#: one exchange's records, predictions and probabilities (a provider's ``parse_exchange``); a
#: provider that names ``exchange_headers`` also gets the answer's headers it named, as a dict
ExchangeDecoder = Callable[..., tuple[list[dict[str, Any]], list[Any], list[Any] | None]]


def provider_decoder(provider: Provider) -> ExchangeDecoder:
    decode = getattr(provider, "parse_exchange", None)
    if decode is None:
        raise ValidationError(f"the {getattr(provider, 'kind', '?')} provider cannot decode captured exchanges")
    return decode  # type: ignore[no-any-return]


def _json_record(row: dict[str, Any]) -> bytes:
    return json.dumps(row, default=str).encode()


def concat(tables: list[pa.Table]) -> pa.Table | None:
    """Validated batches as one (a column some lack is null there)."""
    if not tables:
        return None
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


@dataclass
class Intake:
    """The outcome of one batch: the records to store, and the ones set aside."""

    table: pa.Table | None
    set_aside: list[SetAside]
    #: the scoring requests these records came in (stored in the same transaction)
    requests: list[RequestRow] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.table.num_rows if self.table is not None else 0


def exchange_aside(ex: Exchange, reason: str) -> SetAside:
    """An exchange kept as it arrived, byte for byte, with the reason it could not be stored."""
    return SetAside(
        ex.scoring_id,
        SOURCE_EXCHANGE,
        reason,
        request=ex.request,
        response=ex.response,
        scoring_timestamp=ex.timestamp.to_pydatetime(warn=False),
        response_time=ex.response_time_ms,
    )


class _Unit:
    """One thing kept or set aside whole: an exchange, or row ``row`` of a DataFrame item."""

    __slots__ = ("item", "row")

    def __init__(self, item: Item, row: int | None) -> None:
        self.item, self.row = item, row

    def aside(self, reason: str) -> SetAside:
        if isinstance(self.item, Exchange):
            return exchange_aside(self.item, reason)
        record = self.item.iloc[[self.row]]
        row = json.loads(record.to_json(orient="records", date_format="iso"))[0]
        sid = row.get("scoring_id")
        if sid is None:
            from openmart.mart.records import new_scoring_ids

            sid = new_scoring_ids(1)[0].as_py()
            row["scoring_id"] = sid
        return SetAside(str(sid), SOURCE_RECORD, reason, record=_json_record(row))


class IntakeBuilder:
    """Decodes and validates captured items for one subscription."""

    def __init__(
        self, schema: SubscriptionSchema, *, decoder: ExchangeDecoder | None = None, asset_revision: str | None = None
    ) -> None:
        self.schema = schema
        self.decoder = decoder
        self.asset_revision = asset_revision

    def build(self, items: Sequence[Item]) -> Intake:
        units: list[_Unit] = []
        aside: list[SetAside] = []
        frames: list[pd.DataFrame] = []
        owners: list[np.ndarray] = []
        requests: list[RequestRow] = []
        exchanges = [i for i in items if isinstance(i, Exchange)]
        exchange_frame = self._exchanges(exchanges, units, aside, owners, requests)
        if exchange_frame is not None:
            frames.append(exchange_frame)
        for item in items:
            if isinstance(item, pd.DataFrame) and len(item):
                start = len(units)
                units.extend(_Unit(item, r) for r in range(len(item)))
                frames.append(item.reset_index(drop=True))
                owners.append(np.arange(start, start + len(item)))
        if not frames:
            return Intake(None, aside, requests)
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        owner = np.concatenate(owners)
        table, bad = self._validate(frame, owner, units)
        aside += bad
        return Intake(table, aside, requests)

    # -- decoding --------------------------------------------------------------------------------
    def _exchanges(
        self,
        exchanges: list[Exchange],
        units: list[_Unit],
        aside: list[SetAside],
        owners: list[np.ndarray],
        requests: list[RequestRow],
    ) -> pd.DataFrame | None:
        if not exchanges:
            return None
        rows: list[dict[str, Any]] = []
        ids: list[str] = []
        stamps, times, preds, probs, owner = [], [], [], [], []
        schema = self.schema
        for ex in exchanges:
            try:
                if self.decoder is None:
                    raise ValidationError("no decoder for this binding's exchanges")
                if ex.headers:
                    records, predictions, probabilities = self.decoder(ex.request, ex.response, dict(ex.headers))
                else:
                    records, predictions, probabilities = self.decoder(ex.request, ex.response)
                n = len(records)
                if n == 0:
                    raise ValidationError("the request holds no records")
                if len(predictions) != n or (probabilities is not None and len(probabilities) != n):
                    raise ValidationError(f"the answer holds {len(predictions)} predictions for {n} records")
            except Exception as exc:  # a provider's decoder may fail any way: keep the exchange, say why
                aside.append(_Unit(ex, None).aside(f"undecodable exchange: {type(exc).__name__}: {exc}"))
                requests.append(exchange_request(ex, 0))
                continue
            requests.append(exchange_request(ex, n))
            unit = len(units)
            units.append(_Unit(ex, None))
            rows += records
            ids += record_ids(ex.scoring_id, n)
            stamps += [ex.timestamp] * n
            times += [ex.response_time_ms] * n
            preds += list(predictions)
            probs += list(probabilities) if probabilities is not None else [None] * n
            owner += [unit] * n
        if not rows:
            return None
        frame = pd.DataFrame.from_records(rows)
        frame["scoring_id"] = ids
        frame["scoring_timestamp"] = stamps
        frame["response_time"] = times
        frame[schema.prediction] = preds
        if schema.probability and any(p is not None for p in probs):
            frame[schema.probability] = probs
        if self.asset_revision:  # for records whose exchange did not name their version itself
            given = frame["asset_revision"] if "asset_revision" in frame.columns else None
            frame["asset_revision"] = self.asset_revision if given is None else given.fillna(self.asset_revision)
        owners.append(np.asarray(owner, dtype=np.int64))
        return frame

    # -- validation ------------------------------------------------------------------------------
    def _validate(self, frame: pd.DataFrame, owner: np.ndarray, units: list[_Unit]) -> tuple[pa.Table | None, list]:
        """Validate the whole batch at once (the common case); on a refusal, set aside the unit
        that holds the named record and try the rest again."""
        aside: list[SetAside] = []
        live = np.ones(len(frame), dtype=bool)
        while live.any():
            part = frame if live.all() else frame.loc[live].reset_index(drop=True)
            part_owner = owner[live]
            try:
                table, _ = prepare(RecordKind.PAYLOAD, part, self.schema)
                return table, aside
            except ValidationError as exc:
                if exc.row is None or not 0 <= exc.row < len(part):
                    # a batch-wide complaint (e.g. a column no record has): judge each unit alone
                    return self._one_by_one(frame, owner, units, live, aside)
                unit = int(part_owner[exc.row])
                rows = owner == unit
                # the reason as the unit alone gives it (its own record numbers), else the batch's
                reason = self._reason(frame.loc[rows].reset_index(drop=True)) or str(exc)
                aside.append(units[unit].aside(reason))
                live &= ~rows
            except Exception as exc:  # a bug must not lose the batch: set it aside, say why
                log.exception("validating captured records failed")
                for unit in dict.fromkeys(int(u) for u in part_owner):
                    aside.append(units[unit].aside(f"internal error while validating: {type(exc).__name__}: {exc}"))
                return None, aside
        return None, aside

    def _one_by_one(
        self, frame: pd.DataFrame, owner: np.ndarray, units: list[_Unit], live: np.ndarray, aside: list[SetAside]
    ) -> tuple[pa.Table | None, list[SetAside]]:
        tables = []
        for unit in dict.fromkeys(int(u) for u in owner[live]):
            part = frame.loc[owner == unit].reset_index(drop=True)
            try:
                tables.append(prepare(RecordKind.PAYLOAD, part, self.schema)[0])
            except ValidationError as exc:
                aside.append(units[unit].aside(str(exc)))
        return concat(tables), aside

    def _reason(self, part: pd.DataFrame) -> str | None:
        try:
            prepare(RecordKind.PAYLOAD, part, self.schema)
        except ValidationError as exc:
            return str(exc)
        return None
