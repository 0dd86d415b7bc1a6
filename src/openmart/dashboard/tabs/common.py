"""What the tabs share: whether a monitor is enabled, the empty state that says how to enable it,
and measurements turned into chart series."""

from __future__ import annotations

from collections.abc import Iterable

from openmart.dashboard.charts import Point, Series, Threshold
from openmart.dashboard.html import empty
from openmart.mart.dashboard import MeasurementPoint, MonitorChip, SubscriptionOverview


def chip_of(sub: SubscriptionOverview, kind: str) -> MonitorChip | None:
    return next((c for c in sub.chips if c.kind == kind), None)


def not_enabled(sub: SubscriptionOverview, kind: str, options: str = "") -> str:
    return empty(f"no {kind} monitor:", f"openmart monitor enable {sub.name} {kind}{options}")


def no_measurements(sub: SubscriptionOverview, kind: str, range_text: str) -> str:
    chip = chip_of(sub, kind)
    why = f" (last evaluation: {chip.reason})" if chip is not None and chip.reason else ""
    return empty(f"no {kind} measurements in {range_text}{why}; evaluate now with", f"openmart evaluate {sub.name}")


def threshold_label(point: MeasurementPoint) -> str:
    kind = (point.threshold_type or "limit").replace("_", " ")
    return f"{kind} {point.threshold:g}" if point.threshold is not None else kind


def series(name: str, points: Iterable[MeasurementPoint]) -> Series:
    return Series(name, [Point(p.measured_at, p.value, p.breached, f"(evaluation #{p.evaluation_id})") for p in points])


def thresholds(points: list[MeasurementPoint]) -> list[Threshold]:
    """The newest threshold (thresholds change when a monitor is reconfigured: the newest applies now)."""
    newest = next((p for p in reversed(points) if p.threshold is not None), None)
    return (
        [Threshold(float(newest.threshold), threshold_label(newest))] if newest and newest.threshold is not None else []
    )
