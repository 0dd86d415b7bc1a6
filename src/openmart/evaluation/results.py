"""What an evaluation produces: small dataclasses, stored as rows of the mart."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openmart.mart.alerts import AlertChanges


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


@dataclass
class Measurement:
    monitor: str
    metric: str
    value: float | None
    threshold: float | None = None
    threshold_type: str | None = None
    breached: bool = False
    feature: str | None = None
    group: str | None = None
    details: dict[str, Any] | None = None
    #: a chunked evaluation's chunk (docs/chunks.md): its index, scoring times and record count
    chunk: int | None = None
    chunk_start: datetime | None = None
    chunk_end: datetime | None = None
    chunk_records: int | None = None

    def __post_init__(self) -> None:
        self.value = _clean(self.value)

    @classmethod
    def judged(cls, monitor: str, metric: str, value: float | None, threshold: Any, **kwargs: Any) -> Measurement:
        """A measurement compared with its threshold (a monitors.config.Threshold, or None)."""
        if threshold is None:
            return cls(monitor, metric, value, **kwargs)
        return cls(monitor, metric, value, threshold.value, str(threshold.type), threshold.breached(value), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "breached": self.breached,
            "feature": self.feature,
            "group": self.group,
        } | (
            {
                "chunk": self.chunk,
                "chunk_start": self.chunk_start.isoformat() if self.chunk_start else None,
                "chunk_end": self.chunk_end.isoformat() if self.chunk_end else None,
                "chunk_records": self.chunk_records,
            }
            if self.chunk is not None
            else {}
        )

    def describe(self) -> str:
        where = "".join(f" [{k}={v}]" for k, v in (("feature", self.feature), ("group", self.group)) if v)
        limit = ""
        if self.threshold is not None:
            limit = f" ({'below' if self.threshold_type == 'lower_limit' else 'above'} {self.threshold:g})"
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        return f"{self.monitor}.{self.metric}{where} = {value}{limit if self.breached else ''}"


@dataclass
class MonitorOutcome:
    kind: str
    status: str = "ok"  # ok | not_enough_data | error | skipped
    reason: str | None = None
    records: int = 0
    measurements: list[Measurement] = field(default_factory=list)
    scoring_calls: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "records": self.records,
            "scoring_calls": self.scoring_calls,
            **self.info,
        }


@dataclass
class EvaluationResult:
    """A finished evaluation (a failed one raises ``EvaluationFailed`` instead)."""

    evaluation_id: int
    subscription: str
    window: dict[str, Any]
    outcomes: list[MonitorOutcome]
    elapsed_s: float = 0.0
    #: payload records in the window
    records: int | None = None
    #: feedback records scored through the binding by this evaluation
    scored_feedback: int = 0
    #: alerts this evaluation opened, updated (breached again) and resolved (passed)
    alerts: AlertChanges = field(default_factory=AlertChanges)
    status: str = "finished"

    @property
    def measurements(self) -> list[Measurement]:
        return [m for o in self.outcomes for m in o.measurements]

    @property
    def breaches(self) -> list[Measurement]:
        return [m for m in self.measurements if m.breached]

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluation_id": self.evaluation_id,
            "subscription": self.subscription,
            "window": self.window,
            "status": self.status,
            "elapsed_s": round(self.elapsed_s, 3),
            "records": self.records,
            "scored_feedback": self.scored_feedback,
            "alerts": {
                "opened": list(self.alerts.opened),
                "updated": list(self.alerts.updated),
                "resolved": list(self.alerts.resolved),
            },
            "monitors": {o.kind: o.summary() for o in self.outcomes},
            "measurements": [m.to_dict() for m in self.measurements],
        }
