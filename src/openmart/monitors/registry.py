"""Monitor families by kind: each module offers ``run(sub, config, window, raw_conn)`` and
``configure(sub, **options) -> MonitorConfig`` (defaults and validation at enable time)."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from openmart.errors import MonitorError
from openmart.monitors.config import MonitorKind

_MODULES = {
    MonitorKind.QUALITY: "openmart.monitors.quality",
    MonitorKind.FAIRNESS: "openmart.monitors.fairness",
    MonitorKind.DRIFT: "openmart.monitors.drift",
    MonitorKind.EXPLAINABILITY: "openmart.monitors.explainability",
}


def get(kind: MonitorKind | str) -> ModuleType:
    try:
        return import_module(_MODULES[MonitorKind(kind)])
    except ValueError:
        raise MonitorError(f"unknown monitor kind {kind!r} (known: {', '.join(MonitorKind)})") from None
