"""Monitor configuration as stored in the ``monitors`` table: kind, parameters, thresholds and
``min_records``. Parsing of the CLI's compact forms (``roc_auc=0.8``, ``age`` ranges ``18-25``)
lives here too, so the CLI and the Python API agree."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from openmart.errors import MonitorError


class MonitorKind:
    """The built-in monitors' kinds. A kind is any registered monitor's name (a plain string):
    custom monitors add theirs through the ``openmart.monitors`` entry-point group."""

    QUALITY: Final = "quality"
    FAIRNESS: Final = "fairness"
    DRIFT: Final = "drift"
    EXPLAINABILITY: Final = "explainability"
    PERFORMANCE: Final = "performance"
    DATA_QUALITY: Final = "data_quality"
    ESTIMATED_PERFORMANCE: Final = "estimated_performance"
    MULTIVARIATE_DRIFT: Final = "multivariate_drift"
    BUILT_IN: Final = (
        QUALITY,
        FAIRNESS,
        DRIFT,
        EXPLAINABILITY,
        PERFORMANCE,
        DATA_QUALITY,
        ESTIMATED_PERFORMANCE,
        MULTIVARIATE_DRIFT,
    )


class ThresholdType(StrEnum):
    LOWER_LIMIT = "lower_limit"  # breached when the value falls below
    UPPER_LIMIT = "upper_limit"  # breached when the value rises above


@dataclass(frozen=True)
class Threshold:
    metric: str
    type: ThresholdType
    value: float
    feature: str | None = None
    #: a threshold learned from THE reference's chunks (monitors/learned.py, docs/chunks.md): the
    #: band ``lower``..``upper`` = mean ± k·std of the metric over reference chunks, with ``k``,
    #: ``mean``, ``std``, the reference chunk ``values`` and the ``chunking``; ``value`` is then
    #: the band's limit on the metric's own side (what a plain reader of thresholds sees)
    learned: dict[str, Any] | None = None

    def breached(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.learned and "lower" in self.learned:  # a learned band: breached on either side
            lower, upper = self.learned["lower"], self.learned["upper"]
            return (lower is not None and value < lower) or (upper is not None and value > upper)
        return value < self.value if self.type is ThresholdType.LOWER_LIMIT else value > self.value

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric, "type": str(self.type), "value": self.value}
        if self.feature:
            out["feature"] = self.feature
        if self.learned is not None:
            out["learned"] = self.learned
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Threshold:
        learned = d.get("learned")
        value = d.get("value")
        return cls(
            str(d["metric"]),
            ThresholdType(d["type"]),
            float(value) if value is not None else float("nan"),
            d.get("feature"),
            dict(learned) if learned is not None else None,
        )


_THRESHOLD = re.compile(r"^(?P<metric>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<type>lower|upper))?\s*=\s*(?P<value>\S+)$")


def parse_threshold(text: str, default_type: dict[str, ThresholdType]) -> Threshold:
    """``metric=value`` (the metric's natural direction) or ``metric:lower=value``/``:upper``."""
    m = _THRESHOLD.match(str(text).strip())
    if not m:
        example = f"{next(iter(default_type))}=0.8" if default_type else "metric=0.8"
        raise MonitorError(f"threshold {text!r}: expected metric=value, e.g. {example}")
    metric = m["metric"]
    try:
        value = float(m["value"])
    except ValueError:
        raise MonitorError(f"threshold {text!r}: {m['value']!r} is not a number") from None
    if m["type"]:
        kind = ThresholdType.LOWER_LIMIT if m["type"] == "lower" else ThresholdType.UPPER_LIMIT
    elif metric in default_type:
        kind = default_type[metric]
    else:
        raise MonitorError(f"threshold {text!r}: unknown metric {metric!r} (known: {', '.join(sorted(default_type))})")
    return Threshold(metric, kind, value)


def parse_group(text: str) -> list[Any]:
    """A fairness group: comma-separated categories (``female,other``) or numeric ranges
    (``18-25``, ``60-120``); ranges become ``[lo, hi]`` with inclusive bounds."""
    values: list[Any] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = re.match(r"^(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)$", part)
        if m:
            lo, hi = float(m[1]), float(m[2])
            if lo > hi:
                raise MonitorError(f"group range {part!r}: the lower bound is above the upper one")
            values.append([lo, hi])
        else:
            values.append(number_or_text(part))
    if not values:
        raise MonitorError(f"group {text!r} is empty")
    return values


def number_or_text(value: str) -> Any:
    """'1' -> 1, '0.5' -> 0.5, 'yes' -> 'yes' (command-line values that name classes or groups)."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


@dataclass
class MonitorConfig:
    kind: str
    parameters: dict[str, Any] = field(default_factory=dict)
    thresholds: list[Threshold] = field(default_factory=list)
    min_records: int = 100
    enabled: bool = True
    #: when the service runs it (``MonitorSchedule.to_dict()``), as stored; None on a config not read back
    schedule: dict[str, Any] | None = field(default=None, compare=False)

    def threshold(self, metric: str, feature: str | None = None) -> Threshold | None:
        for t in self.thresholds:
            if t.metric == metric and t.feature == feature:
                return t
        for t in self.thresholds:
            if t.metric == metric and t.feature is None:
                return t
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "parameters": self.parameters,
            "enabled": self.enabled,
            "thresholds": [t.to_dict() for t in self.thresholds],
            "min_records": self.min_records,
        } | ({"schedule": self.schedule} if self.schedule is not None else {})
