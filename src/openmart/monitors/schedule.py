"""How often the service's scheduler runs each kind of monitor, and the ``every`` values people
write (``3600``, ``"90s"``, ``"15m"``, ``"1h"``, ``"3h"``, ``"1d"``, ``"1h30m"``, ``"default"``,
``"off"``).

Defaults follow OpenScale: quality and fairness hourly, drift every three hours; performance
hourly; data quality hourly over the last hour (SageMaker Model Monitor's hourly schedule).
Explainability is not scheduled by default: each run explains records through the deployment,
which costs scoring calls (give it a period to schedule it). A plug-in monitor is
not scheduled unless it sets ``default_schedule_seconds`` or is given a period.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from openmart.errors import ValidationError
from openmart.monitors import registry

HOUR: Final = 3600
DEFAULT_SECONDS: dict[str, int] = {
    "quality": HOUR,
    "fairness": HOUR,
    "drift": 3 * HOUR,
    "performance": HOUR,
    "data_quality": HOUR,
}

#: what a scheduled run of each kind looks at: "period", the records of the period(s) it runs
#: for (drift as OpenScale's drift: the last 3 hours; performance: throughput per hour), or
#: "history", every record up to its slot (quality and fairness: labels arrive late, and a
#: label logged after its payload's period must still count). A plug-in says so with
#: ``scheduled_window``; the default is "history".
PERIOD = "period"
HISTORY = "history"
SCHEDULED_WINDOW: dict[str, str] = {"drift": PERIOD, "performance": PERIOD, "data_quality": PERIOD}

DEFAULT: Final = "default"
OFF: Final = "off"
_UNITS = {"s": 1, "m": 60, "h": HOUR, "d": 24 * HOUR}
_PART = re.compile(r"(\d+)\s*([smhd])")


def default_seconds(kind: str) -> int | None:
    """The kind's period when the monitor has none of its own (None: not scheduled by default)."""
    if str(kind) in DEFAULT_SECONDS:
        return DEFAULT_SECONDS[str(kind)]
    try:
        declared = getattr(registry.get(kind), "default_schedule_seconds", None)
    except Exception:  # an unknown or broken plug-in: not scheduled, the evaluation names the problem
        return None
    return int(declared) if isinstance(declared, int) and declared > 0 else None


def scheduled_window(kind: str) -> str:
    """ "period" or "history": see :data:`SCHEDULED_WINDOW`."""
    if str(kind) in SCHEDULED_WINDOW:
        return SCHEDULED_WINDOW[str(kind)]
    try:
        declared = getattr(registry.get(kind), "scheduled_window", HISTORY)
    except Exception:  # an unknown or broken plug-in: the evaluation names the problem
        return HISTORY
    return PERIOD if declared == PERIOD else HISTORY


def defaults() -> dict[str, int]:
    """Every kind's default period the scheduler needs (built-ins and installed plug-ins)."""
    found = dict(DEFAULT_SECONDS)
    for kind in registry.available():
        seconds = default_seconds(kind)
        if seconds is not None:
            found[kind] = seconds
    return found


def parse_every(value: Any, name: str = "every") -> int | str:
    """Seconds (an integer > 0), or ``"default"`` (the kind's period; also None) or ``"off"``."""
    if value is None:
        return DEFAULT
    if isinstance(value, bool):
        raise _bad(value, name)
    if isinstance(value, int | float):
        if value != int(value) or value <= 0:
            raise _bad(value, name)
        return int(value)
    text = str(value).strip().lower()
    if text in (DEFAULT, OFF):
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    parts = _PART.findall(text)
    if not parts or _PART.sub("", text).strip():
        raise _bad(value, name)
    seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if seconds <= 0:
        raise _bad(value, name)
    return seconds


def _bad(value: Any, name: str) -> ValidationError:
    return ValidationError(
        f"{name} {value!r}: expected a period such as 90s, 15m, 1h, 3h, 1d or seconds (> 0), or 'default' or 'off'"
    )


def describe(seconds: int | None) -> str:
    """3600 -> '1h', 5400 -> '1h30m', None -> 'off'."""
    if seconds is None:
        return OFF
    out, rest = [], int(seconds)
    for unit, size in (("d", 24 * HOUR), ("h", HOUR), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)


@dataclass(frozen=True)
class MonitorSchedule:
    """When a monitor runs: every ``every_seconds`` (``own``: set for this monitor, else its
    kind's default), next at ``next_run_at`` (None: not scheduled)."""

    subscription: str
    kind: str
    enabled: bool
    every_seconds: int | None
    own: bool
    next_run_at: datetime | None

    @property
    def scheduled(self) -> bool:
        return self.enabled and self.next_run_at is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "subscription": self.subscription,
            "kind": self.kind,
            "enabled": self.enabled,
            "scheduled": self.scheduled,
            "every": describe(self.every_seconds) if self.scheduled else OFF,
            "every_seconds": self.every_seconds if self.scheduled else None,
            "default": not self.own,
            "next_run_at": self.next_run_at.isoformat() if self.scheduled and self.next_run_at else None,
        }


def schedule_of(
    subscription: str, kind: str, enabled: bool, schedule_seconds: int | None, next_run_at: datetime | None
) -> MonitorSchedule:
    every = schedule_seconds if schedule_seconds is not None else default_seconds(kind)
    return MonitorSchedule(subscription, kind, enabled, every, schedule_seconds is not None, next_run_at)
