"""Monitors by kind, discovered through the entry-point group ``openmart.monitors``.

openmart declares its built-in monitors there itself (pyproject.toml); a user's package
adds its own the same way (OpenScale's custom monitors). An entry point names a class (made with
no arguments) or an instance implementing :class:`~openmart.monitors.base.Monitor`. A plug-in
that fails to load, or does not look like a monitor, is skipped with a logged reason (as the
provider registry does), so one broken plug-in never takes the others down.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from openmart.errors import MonitorError
from openmart.monitors.base import MetricSpec, Monitor, OptionSpec
from openmart.monitors.config import MonitorKind

GROUP = "openmart.monitors"
log = logging.getLogger(__name__)
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # the monitors table keeps a kind in 32 characters
_registered: dict[str, Monitor] = {}
_skipped: dict[str, str] = {}


def _built_in() -> dict[str, Monitor]:
    """Always there, even where the package's entry points are not installed (a source tree)."""
    from openmart.monitors.data_quality import DataQualityMonitor
    from openmart.monitors.drift import DriftMonitor
    from openmart.monitors.estimated_performance import EstimatedPerformanceMonitor
    from openmart.monitors.explainability import ExplainabilityMonitor
    from openmart.monitors.fairness import FairnessMonitor
    from openmart.monitors.multivariate_drift import MultivariateDriftMonitor
    from openmart.monitors.performance import PerformanceMonitor
    from openmart.monitors.quality import QualityMonitor

    return {
        MonitorKind.QUALITY: QualityMonitor(),
        MonitorKind.FAIRNESS: FairnessMonitor(),
        MonitorKind.DRIFT: DriftMonitor(),
        MonitorKind.EXPLAINABILITY: ExplainabilityMonitor(),
        MonitorKind.PERFORMANCE: PerformanceMonitor(),
        MonitorKind.DATA_QUALITY: DataQualityMonitor(),
        MonitorKind.ESTIMATED_PERFORMANCE: EstimatedPerformanceMonitor(),
        MonitorKind.MULTIVARIATE_DRIFT: MultivariateDriftMonitor(),
    }


def check(obj: Any, name: str | None = None) -> Monitor:
    """``obj`` (a class is instantiated) as a monitor, or MonitorError saying what it lacks."""
    monitor = obj() if isinstance(obj, type) else obj
    kind = getattr(monitor, "kind", None)
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise MonitorError(f"monitor {name or obj!r}: kind {kind!r} must be lower-case letters, digits and _ (<= 32)")
    if name is not None and kind != name:
        raise MonitorError(f"monitor plug-in {name!r}: its kind is {kind!r}, not the entry point's name")
    for method in ("configure", "run"):
        if not callable(getattr(monitor, method, None)):
            raise MonitorError(f"monitor {kind!r}: no {method}() method")
    for attr, spec in (("options", OptionSpec), ("metrics", MetricSpec)):
        values = getattr(monitor, attr, None)
        if not isinstance(values, Sequence) or not all(isinstance(v, spec) for v in values):
            raise MonitorError(f"monitor {kind!r}: {attr} must be a sequence of {spec.__name__}")
    if not hasattr(monitor, "description"):
        raise MonitorError(f"monitor {kind!r}: no description")
    return monitor


@cache
def _discovered() -> dict[str, Monitor]:
    found: dict[str, Monitor] = {}
    _skipped.clear()
    built_in = _built_in()
    for ep in entry_points(group=GROUP):
        if ep.name in built_in:
            continue  # openmart's own declaration of its built-ins
        try:
            found[ep.name] = check(ep.load(), ep.name)
        except Exception as exc:  # a broken plug-in must not break the others
            _skipped[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("monitor plug-in %r skipped: %s", ep.name, exc)
    return built_in | found


def clear_cache() -> None:
    """Forget what entry points were found (read them again on next use)."""
    _discovered.cache_clear()


def register(monitor: Any) -> Monitor:
    """Add a monitor for this process (a class or an instance); a built-in kind cannot be taken."""
    checked = check(monitor)
    if checked.kind in MonitorKind.BUILT_IN:
        raise MonitorError(f"monitor kind {checked.kind!r} is a built-in monitor's")
    _registered[checked.kind] = checked
    return checked


def unregister(kind: str) -> None:
    _registered.pop(kind, None)


def available() -> dict[str, Monitor]:
    """Every monitor by kind: built-in, from entry points, registered in this process."""
    return {**_discovered(), **_registered}


def get(kind: str) -> Monitor:
    monitors = available()
    key = str(kind)
    if key not in monitors:
        why = f" (its plug-in could not be loaded: {_skipped[key]})" if key in _skipped else ""
        raise MonitorError(f"unknown monitor kind {key!r}{why} (known: {', '.join(sorted(monitors))})")
    return monitors[key]
