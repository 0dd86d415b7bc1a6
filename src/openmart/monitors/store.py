"""``sub.monitors``: enable, disable and list a subscription's monitors (stored in the
``monitors`` table through :mod:`openmart.mart.monitor_configs`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openmart.context import SubscriptionContext
from openmart.errors import MonitorError, NotFound, ValidationError
from openmart.mart import monitor_configs, schedules
from openmart.monitors import learned, registry
from openmart.monitors.base import Monitor, context_of, validate_options
from openmart.monitors.config import MonitorConfig, Threshold
from openmart.monitors.schedule import OFF, MonitorSchedule, default_seconds, parse_every, schedule_of


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
        if isinstance(options.get("thresholds"), Mapping):  # {"accuracy": "learned", "f1": 0.7}
            options["thresholds"] = [f"{metric}={value}" for metric, value in options["thresholds"].items()]
        config = monitor.configure(ctx, **validate_options(monitor, options))
        _check_config(monitor, config)
        if learned.has_learned(config):  # learned from THE reference's chunks now (docs/chunks.md)
            with ctx.engine.connect() as conn:
                try:
                    config = learned.learn(ctx, conn, monitor, config, learned.DEFAULT_CHUNKING)
                finally:
                    conn.rollback()
        with ctx.engine.begin() as conn:
            monitor_configs.upsert(
                conn,
                ctx.id,
                monitor.kind,
                parameters=config.parameters,
                thresholds=[t.to_dict() for t in config.thresholds],
                min_records=config.min_records,
                default_schedule_seconds=default_seconds(monitor.kind),
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
                r.kind,
                dict(r.parameters),
                [Threshold.from_dict(t) for t in r.thresholds],
                r.min_records,
                r.enabled,
                schedule_of(ctx.name, r.kind, r.enabled, r.schedule_seconds, r.next_run_at).to_dict(),
            )
            for r in rows
        ]

    def schedule(self, kind: str, every: int | str | None = None) -> MonitorSchedule:
        """When the service runs this monitor: ``every`` seconds or ``"90s"``, ``"15m"``, ``"1h"``,
        ``"3h"``, ``"1d"``; ``"default"``/None: its kind's default; ``"off"``: not scheduled. The
        next run is one period from now (the slots are counted from now on)."""
        period = parse_every(every)
        ctx = self.ctx
        own = period if isinstance(period, int) else None
        arm = None if period == OFF else (own or default_seconds(kind))
        if period != OFF and arm is None:
            raise ValidationError(f"the {kind} monitor has no default schedule: give a period, e.g. every='1d'")
        with ctx.engine.begin() as conn:
            row = schedules.set_schedule(conn, ctx.id, str(kind), schedule_seconds=own, arm_seconds=arm)
        if row is None:
            raise NotFound(f"subscription {ctx.name!r} has no {kind} monitor (enable it first)")
        return schedule_of(ctx.name, row.kind, row.enabled, row.schedule_seconds, row.next_run_at)

    def schedules(self) -> list[MonitorSchedule]:
        """This subscription's monitors' schedules."""
        ctx = self.ctx
        with ctx.engine.connect() as conn:
            rows = schedules.list_schedules(conn, ctx.id)
        return [schedule_of(r.subscription, r.kind, r.enabled, r.schedule_seconds, r.next_run_at) for r in rows]

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
