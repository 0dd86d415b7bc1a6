"""``openmart capture replay``: store set-aside records once the cause is fixed, exactly once.

Set-aside exchanges are decoded again with the binding as it is now, and every record is
validated against the subscription's schema as it is now. What fits is inserted idempotently
(by scoring id) and removed from ``capture_set_aside`` in the same transaction; what still does
not fit stays, with its reason brought up to date.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from openmart.context import HasContext, SubscriptionContext, context_of
from openmart.mart.capture_store import (
    SOURCE_EXCHANGE,
    SetAside,
    delete_set_aside,
    read_set_aside,
    update_reasons,
)
from openmart.scoring.intake import Exchange, IntakeBuilder, Item, provider_decoder
from openmart.scoring.spool import in_transaction, insert_idempotent, spool_of


@dataclass(frozen=True)
class ReplayReport:
    examined: int
    stored: int  # records (rows) added to the payload table
    replayed: int  # set-aside entries that are now in the mart
    still_refused: int
    spooled_stored: int  # records drained from the spool on the way

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _item(entry: SetAside) -> Item:
    if entry.source == SOURCE_EXCHANGE:
        return Exchange(
            entry.scoring_id,
            pd.Timestamp(entry.scoring_timestamp) if entry.scoring_timestamp else pd.Timestamp.now(tz="UTC"),
            entry.response_time or 0.0,
            entry.request or b"",
            entry.response or b"",
        )
    record = json.loads(entry.record or b"{}")
    return pd.DataFrame.from_records(record if isinstance(record, list) else [record])


def replay(subscription: SubscriptionContext | HasContext) -> ReplayReport:
    sub = context_of(subscription)
    spool = spool_of(sub)
    engine = sub.engine
    spooled = spool.drain(engine.raw_connection, sub.payload_table)
    spool.drain_aside(engine.raw_connection, sub.id)
    entries = read_set_aside(engine, sub.id)
    if not entries:
        return ReplayReport(0, 0, 0, 0, spooled)
    provider = sub.provider() if sub.binding and any(e.source == SOURCE_EXCHANGE for e in entries) else None
    try:
        decoder = provider_decoder(provider) if provider is not None else None
        intake = IntakeBuilder(sub.schema, decoder=decoder).build([_item(e) for e in entries])
    finally:
        if provider is not None:
            provider.close()
    refused = {a.scoring_id: a.reason for a in intake.set_aside}
    done = [e for e in entries if e.scoring_id not in refused]

    def store(conn: Any) -> int:  # stored, and taken off the set-aside list, in one transaction
        stored = insert_idempotent(conn, sub.payload_table, intake.table) if intake.table is not None else 0
        delete_set_aside(conn, [e.id for e in done if e.id is not None])
        update_reasons(conn, {e.id: refused[e.scoring_id] for e in entries if e.scoring_id in refused and e.id})
        return stored

    stored = in_transaction(engine.raw_connection, store)
    return ReplayReport(len(entries), stored, len(done), len(refused), spooled)
