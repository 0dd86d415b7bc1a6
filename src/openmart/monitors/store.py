"""``sub.monitors``: enable, disable and list a subscription's monitors (stored in the
``monitors`` table through :mod:`openmart.mart.monitor_configs`)."""

from __future__ import annotations

from typing import Any

from openmart.context import SubscriptionContext
from openmart.errors import MonitorError, NotFound
from openmart.mart import monitor_configs
from openmart.monitors import registry
from openmart.monitors.base import Monitor, context_of, validate_options
from openmart.monitors.config import MonitorConfig, Threshold


class Monitors:
    def __init__(self, ctx: SubscriptionContext | Any) -> None:
        self._ctx = ctx

    @property
    def ctx(self) -> SubscriptionContext:
        # an API Subscription may be given while it is being built: its context is read when used
        return context_of(self._ctx)

    def enable(self, kind: str, **options: Any) -> MonitorConfig:
        """Enable (or reconfigure) a monitor. Its options are checked now, not at the first
        evaluation: against the monitor's declared options (type, allowed values, range; an
        unknown option is refused with the known ones listed), then by the monitor itself
        against the subscription (its columns, classes, reference)."""
        monitor = registry.get(kind)
        ctx = self.ctx
        config = monitor.configure(ctx, **validate_options(monitor, options))
        _check_config(monitor, config)
        with ctx.engine.begin() as conn:
            monitor_configs.upsert(
                conn,
                ctx.id,
                monitor.kind,
                parameters=config.parameters,
                thresholds=[t.to_dict() for t in config.thresholds],
                min_records=config.min_records,
            )
        return config

    def disable(self, kind: str) -> None:
        ctx = self.ctx
        with ctx.engine.begin() as conn:
            done = monitor_configs.disable(conn, ctx.id, str(kind))
        if not done:
            raise NotFound(f"subscription {ctx.name!r} has no {kind} monitor")

    def configs(self) -> list[MonitorConfig]:
        ctx = self.ctx
        with ctx.engine.connect() as conn:
            rows = monitor_configs.list_for(conn, ctx.id)
        return [
            MonitorConfig(
                r.kind, dict(r.parameters), [Threshold.from_dict(t) for t in r.thresholds], r.min_records, r.enabled
            )
            for r in rows
        ]

    def get(self, kind: str) -> MonitorConfig:
        for c in self.configs():
            if c.kind == str(kind):
                return c
        raise NotFound(f"subscription {self.ctx.name!r} has no {kind} monitor")


def _check_config(monitor: Monitor, config: Any) -> None:
    """What a plug-in's configure() returned is something the mart can keep."""
    if not isinstance(config, MonitorConfig):
        raise MonitorError(f"monitor {monitor.kind!r}: configure() returned {type(config).__name__}, not MonitorConfig")
    if config.kind != monitor.kind:
        raise MonitorError(f"monitor {monitor.kind!r}: configure() returned a config of kind {config.kind!r}")
    if not isinstance(config.min_records, int) or config.min_records < 1:
        raise MonitorError(f"monitor {monitor.kind!r}: min_records must be an integer >= 1")
    known = {m.name for m in monitor.metrics}
    for t in config.thresholds:
        if not isinstance(t, Threshold):
            raise MonitorError(f"monitor {monitor.kind!r}: thresholds must be Threshold objects")
        if known and t.metric not in known:
            raise MonitorError(
                f"{monitor.kind} threshold on {t.metric!r}: unknown metric (known: {', '.join(sorted(known))})"
            )
