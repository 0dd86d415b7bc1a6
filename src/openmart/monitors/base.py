"""What a monitor is: the :class:`Monitor` protocol, with its declared options
(:class:`OptionSpec`) and metrics (:class:`MetricSpec`).

A monitor declares what it accepts and what it measures; openmart validates the options a user
gives against those declarations when the monitor is enabled (:func:`validate_options`: the
option's type, allowed values or range; unknown names are refused with the known ones listed),
and parses thresholds against the declared metrics (:func:`parse_thresholds`). The monitor's own
``configure`` then checks what only it knows (a column of the subscription's schema, a class
label) and returns the :class:`~openmart.monitors.config.MonitorConfig` to store. At evaluation
time ``run(ctx, config, window, conn)`` measures the window and returns a
:class:`MonitorOutcome`.

The four built-in monitors subclass :class:`BaseMonitor`, which does the generic part; a custom
monitor may do the same or implement the protocol from scratch. Either way it is found through
the ``openmart.monitors`` entry-point group (see docs/monitors.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from openmart.context import SubscriptionContext, context_of
from openmart.errors import MonitorError
from openmart.evaluation.results import Measurement, MonitorOutcome
from openmart.mart.windows import Window
from openmart.monitors.config import MonitorConfig, Threshold, ThresholdType

__all__ = [
    "BaseMonitor",
    "Direction",
    "Measurement",
    "MetricSpec",
    "Monitor",
    "MonitorConfig",
    "MonitorOutcome",
    "OptionSpec",
    "Threshold",
    "ThresholdType",
    "Window",
    "context_of",
    "min_records_option",
    "parse_thresholds",
    "thresholds_option",
    "validate_options",
]


class Direction(StrEnum):
    HIGHER_IS_BETTER = "higher_is_better"  # a threshold is a lower limit
    LOWER_IS_BETTER = "lower_is_better"  # a threshold is an upper limit


@dataclass(frozen=True)
class MetricSpec:
    """One metric a monitor measures: which way is better, its default threshold (None: no
    alert unless the user sets one) and the range a threshold may take."""

    name: str
    direction: Direction
    default_threshold: float | None = None
    low: float | None = None  # thresholds below this are refused
    high: float | None = None  # thresholds above this are refused
    help: str = ""

    @property
    def threshold_type(self) -> ThresholdType:
        return ThresholdType.LOWER_LIMIT if self.direction is Direction.HIGHER_IS_BETTER else ThresholdType.UPPER_LIMIT

    def default(self) -> Threshold | None:
        if self.default_threshold is None:
            return None
        return Threshold(self.name, self.threshold_type, float(self.default_threshold))

    def describe_range(self) -> str:
        if self.low is not None and self.high is not None:
            return f"[{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f">= {self.low:g}"
        if self.high is not None:
            return f"<= {self.high:g}"
        return "any number"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "direction": str(self.direction),
            "default_threshold": self.default_threshold,
            "range": self.describe_range(),
            "help": self.help,
        }


_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "text",
    list: "a list",
    dict: "a mapping",
}


@dataclass(frozen=True)
class OptionSpec:
    """One option a monitor accepts. ``type`` is int, float, bool, str, list, dict or object
    (anything; the monitor checks it). ``default`` None makes the option optional (None allowed)
    unless ``required``. ``choices`` lists the allowed values; ``low``/``high`` bound a number
    (``low_open``: the lower bound itself is refused)."""

    name: str
    type: type
    default: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    required: bool = False
    help: str = ""

    def describe(self) -> str:
        """What a valid value is, for messages and ``openmart monitor kinds``."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        what = _TYPE_NAMES.get(self.type, "any value")
        if self.low is not None and self.high is not None:
            return f"{what} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{what} <= {self.high:g}"
        return what

    def validate(self, kind: str, value: Any) -> Any:
        """The value, coerced to the option's type, or MonitorError naming the option."""

        def bad(why: str = "") -> MonitorError:
            return MonitorError(f"{kind} monitor: option {self.name!r} must be {self.describe()}; got {value!r}{why}")

        if value is None:
            if self.required or (self.default is not None and self.type is not object):
                raise bad()
            return None
        coerced = _coerce(self.type, value)
        if coerced is _INVALID:
            raise bad()
        if self.choices is not None and coerced not in self.choices:
            raise bad()
        if isinstance(coerced, int | float) and not isinstance(coerced, bool):
            if isinstance(coerced, float) and math.isnan(coerced):
                raise bad()
            if self.low is not None and (coerced <= self.low if self.low_open else coerced < self.low):
                raise bad()
            if self.high is not None and coerced > self.high:
                raise bad()
        return coerced

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "valid": self.describe(), "default": self.default, "help": self.help}


_INVALID = object()


def _coerce(kind: type, value: Any) -> Any:
    if kind is object:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        return _INVALID
    if isinstance(value, bool):
        return _INVALID  # True is not the number 1 here
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return _INVALID
        return _INVALID
    if kind is float:
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                return _INVALID
        return _INVALID
    if kind is str:
        return value if isinstance(value, str) else _INVALID
    if kind is list:
        if isinstance(value, list | tuple):
            return list(value)
        if isinstance(value, str):  # the command line's a,b,c
            return [v.strip() for v in value.split(",") if v.strip()]
        return _INVALID
    if kind is dict:
        return dict(value) if isinstance(value, Mapping) else _INVALID
    return value if isinstance(value, kind) else _INVALID


def min_records_option(default: int = 100) -> OptionSpec:
    return OptionSpec(
        "min_records", int, default, low=1, help="Below this many records the monitor reports 'not enough data'."
    )


def thresholds_option() -> OptionSpec:
    return OptionSpec(
        "thresholds",
        list,
        (),
        help="metric=value, metric:lower=value or metric:upper=value (or {metric, value[, type, feature]}).",
    )


@runtime_checkable
class Monitor(Protocol):
    """A monitor family. ``kind`` is its name in the ``monitors`` table (and the entry point's)."""

    kind: str
    description: str

    @property
    def options(self) -> Sequence[OptionSpec]: ...

    @property
    def metrics(self) -> Sequence[MetricSpec]: ...

    def configure(self, ctx: SubscriptionContext, **options: Any) -> MonitorConfig:
        """Options (validated against ``options``) checked against the subscription: what to store."""
        ...

    def run(self, ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
        """Measure the window. ``conn``: the evaluation's connection (read with openmart.mart)."""
        ...


def validate_options(monitor: Monitor, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared option, from ``options`` or its default, coerced and checked; an unknown
    option is refused with the known ones listed."""
    specs = {o.name: o for o in monitor.options}
    unknown = sorted(set(options) - set(specs))
    if unknown:
        raise MonitorError(
            f"{monitor.kind} monitor: unknown option {unknown[0]!r} (known: {', '.join(sorted(specs)) or 'none'})"
        )
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in options:
            out[name] = spec.validate(monitor.kind, options[name])
        elif spec.required:
            raise MonitorError(f"{monitor.kind} monitor: option {name!r} is required ({spec.describe()})")
        else:
            out[name] = list(spec.default) if isinstance(spec.default, tuple) else spec.default
    return out


_SIDES = {
    "lower": ThresholdType.LOWER_LIMIT,
    "lower_limit": ThresholdType.LOWER_LIMIT,
    "upper": ThresholdType.UPPER_LIMIT,
    "upper_limit": ThresholdType.UPPER_LIMIT,
}


def parse_thresholds(kind: str, metrics: Sequence[MetricSpec], given: Sequence[Any]) -> list[Threshold]:
    """``metric=value``, ``metric:lower=value``/``metric:upper=value``, or a mapping
    ``{metric, value[, type][, feature]}``; each metric a declared one, each value a number in the
    metric's range, or ``learned`` (``learned:K``; a mapping may give ``k``): a band learned from
    the reference's chunks when the monitor is enabled (docs/chunks.md)."""
    specs = {m.name: m for m in metrics}
    known = ", ".join(sorted(specs)) or "none"
    out: list[Threshold] = []
    for t in given or ():
        if isinstance(t, Mapping):
            if "metric" not in t or "value" not in t:
                raise MonitorError(f"{kind} threshold {dict(t)!r}: give metric and value")
            text = f"{t['metric']}={t['value']}"
            name, side, raw, feature = str(t["metric"]), t.get("type"), t["value"], t.get("feature")
        elif isinstance(t, str):
            text = t
            left, sep, raw = t.partition("=")
            if not sep or not left.strip():
                example = f"{next(iter(specs))}=0.8" if specs else "metric=value"
                raise MonitorError(f"{kind} threshold {t!r}: expected metric=value, e.g. {example}")
            name, _, side = left.strip().partition(":")
            feature = None
        else:
            raise MonitorError(f"{kind} threshold {t!r}: expected metric=value")
        spec = specs.get(name.strip())
        if spec is None:
            raise MonitorError(f"{kind} threshold {text!r}: unknown metric {name.strip()!r} (known: {known})")
        if side:
            if str(side) not in _SIDES:
                raise MonitorError(f"{kind} threshold {text!r}: the side must be lower or upper, not {side!r}")
            ttype = _SIDES[str(side)]
        else:
            ttype = spec.threshold_type
        k = learned_k(raw)
        if k is not None:  # learned from the reference's chunks when the monitor is enabled (learned.py)
            extra = t.get("k") if isinstance(t, Mapping) else None
            k = _number(extra) if extra is not None else k
            if k is None or k <= 0:
                raise MonitorError(f"{kind} threshold {text!r}: k (standard deviations) must be a number > 0")
            out.append(Threshold(spec.name, ttype, float("nan"), str(feature) if feature else None, {"k": k}))
            continue
        value = _number(raw)
        if value is None:
            raise MonitorError(f"{kind} threshold {text!r}: {raw!r} is not a number")
        if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
            raise MonitorError(f"{kind} threshold {text!r}: {spec.name} must be {spec.describe_range()}")
        out.append(Threshold(spec.name, ttype, value, str(feature) if feature else None))
    return out


#: a threshold's value that asks for a learned band (``accuracy=learned``, ``accuracy=learned:2``)
LEARNED = "learned"
DEFAULT_K = 3.0


def learned_k(raw: Any) -> float | None:
    """``learned`` -> 3.0 (NannyML's default), ``learned:2`` -> 2.0; None: not a learned threshold
    (``learned:x`` gives -1, refused by the caller)."""
    if not isinstance(raw, str):
        return None
    word, sep, k = raw.strip().lower().partition(":")
    if word != LEARNED:
        return None
    if not sep:
        return DEFAULT_K
    value = _number(k)
    return value if value is not None else -1.0


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    try:
        value = float(str(raw).strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class BaseMonitor:
    """The generic part of a monitor: options validated against the declared specs, thresholds
    parsed against the declared metrics (defaults added), then :meth:`check` — a subclass's
    cross-checks against the subscription — returns the parameters to store."""

    kind: ClassVar[str]
    description: ClassVar[str] = ""
    options: Sequence[OptionSpec] = ()
    metrics: Sequence[MetricSpec] = ()

    def configure(self, ctx: SubscriptionContext, **options: Any) -> MonitorConfig:
        ctx = context_of(ctx)
        values = validate_options(self, options)
        given = values.pop("thresholds", None) or []
        min_records = values.pop("min_records", None)
        parameters = self.check(ctx, values)
        thresholds = self.thresholds(ctx, given, parameters)
        return MonitorConfig(self.kind, parameters, thresholds, int(min_records) if min_records is not None else 100)

    def check(self, ctx: SubscriptionContext, values: dict[str, Any]) -> dict[str, Any]:
        """Cross-checks against the subscription (its schema, classes, binding); the parameters to
        keep. The default keeps the validated options as they are."""
        return values

    def applicable_metrics(self, ctx: SubscriptionContext) -> Sequence[MetricSpec]:
        """The metrics this subscription can have (e.g. by problem type)."""
        return self.metrics

    def thresholds(self, ctx: SubscriptionContext, given: Sequence[Any], parameters: dict[str, Any]) -> list[Threshold]:
        """The user's thresholds, then each applicable metric's default for the metrics not given."""
        parsed = parse_thresholds(self.kind, self.applicable_metrics(ctx), given)
        named = {t.metric for t in parsed}
        defaults = [m.default() for m in self.applicable_metrics(ctx) if m.name not in named]
        return parsed + [t for t in defaults if t is not None]

    def run(self, ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return describe(self)


def describe(monitor: Monitor) -> dict[str, Any]:
    """A monitor's declarations as data (``openmart monitor kinds --json``)."""
    return {
        "kind": monitor.kind,
        "description": getattr(monitor, "description", ""),
        "options": [o.to_dict() for o in monitor.options],
        "metrics": [m.to_dict() for m in monitor.metrics],
    }
