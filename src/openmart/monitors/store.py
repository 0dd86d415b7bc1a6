"""``sub.monitors``: enable, disable and list a subscription's monitors (the ``monitors`` table)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from openmart.errors import NotFound
from openmart.mart import models
from openmart.monitors import registry
from openmart.monitors.config import MonitorConfig, MonitorKind, Threshold

if TYPE_CHECKING:
    from openmart.api import Subscription


class Monitors:
    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    def enable(self, kind: MonitorKind | str, **options: Any) -> MonitorConfig:
        """Enable (or reconfigure) a monitor; options are checked against the subscription now,
        not at the first evaluation."""
        config = registry.get(kind).configure(self._sub, **options)
        values = {
            "subscription_id": self._sub.id,
            "kind": str(config.kind),
            "parameters": config.parameters,
            "thresholds": [t.to_dict() for t in config.thresholds],
            "min_records": config.min_records,
            "enabled": True,
        }
        stmt = insert(models.Monitor).values(**values)
        stmt = stmt.on_conflict_do_update(
            constraint="uq_monitors_subscription_kind",
            set_={k: stmt.excluded[k] for k in ("parameters", "thresholds", "min_records", "enabled")}
            | {"updated_at": sa.func.now()},
        )
        with self._sub.mart.engine.begin() as conn:
            conn.execute(stmt)
        return config

    def disable(self, kind: MonitorKind | str) -> None:
        with self._sub.mart.engine.begin() as conn:
            done = conn.execute(
                sa.update(models.Monitor)
                .where(models.Monitor.subscription_id == self._sub.id, models.Monitor.kind == str(MonitorKind(kind)))
                .values(enabled=False, updated_at=sa.func.now())
            )
        if done.rowcount == 0:
            raise NotFound(f"subscription {self._sub.name!r} has no {kind} monitor")

    def configs(self) -> list[MonitorConfig]:
        with sa.orm.Session(self._sub.mart.engine) as s:
            rows = s.scalars(
                sa.select(models.Monitor)
                .where(models.Monitor.subscription_id == self._sub.id)
                .order_by(models.Monitor.id)
            ).all()
            return [
                MonitorConfig(
                    MonitorKind(r.kind),
                    dict(r.parameters),
                    [Threshold.from_dict(t) for t in r.thresholds],
                    r.min_records,
                    r.enabled,
                )
                for r in rows
            ]

    def get(self, kind: MonitorKind | str) -> MonitorConfig:
        for c in self.configs():
            if c.kind == MonitorKind(kind):
                return c
        raise NotFound(f"subscription {self._sub.name!r} has no {kind} monitor")
