"""Drift tests: plain functions ``fn(reference, current) -> value``, in a registry a user can
extend, chosen per column by the drift monitor (its ``tests`` option maps column -> test name).

``reference`` and ``current`` are 1-D numpy arrays of the column's values (numbers for numeric
columns, text for categorical ones; NULLs left out). A test returns a number (the value compared
with the threshold), or a :class:`DriftResult` / a mapping with ``value`` and optionally
``statistic`` and ``details``. A test is registered with its default threshold and its side:
``drift_when="above"`` (a distance: drift when value >= threshold) or ``"below"`` (a p-value:
drift when value < threshold), and the column kinds it applies to.

Add one from Python::

    openmart.register_drift_test("mean_shift", fn, threshold=0.5, kinds=("numeric",))

or from a package, through the entry-point group ``openmart.drift_tests`` (the object is a
:class:`DriftTest`, or a plain function whose optional attributes ``threshold``,
``drift_when`` and ``kinds`` give the rest). A plug-in that fails to load is skipped with a
logged reason.

The built-in tests (psi, ks, chisquare, jensenshannon, wasserstein) are registered here as
plain functions too — they are the definitions — but the drift monitor computes them from
aggregates PostgreSQL returns (histograms on the reference's bins), never fetching the window.
A custom test is given the values: the reference column from the mart, the window's column
(sampled to the monitor's ``max_rows``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Literal

import numpy as np

from openmart.errors import MonitorError

GROUP = "openmart.drift_tests"
log = logging.getLogger(__name__)
KINDS = ("numeric", "categorical")
PSI_EPSILON = 1e-4  # share given to an empty bin, so the logarithm stays finite

TestFunction = Callable[[np.ndarray, np.ndarray], Any]


@dataclass(frozen=True)
class DriftResult:
    value: float | None
    statistic: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftTest:
    name: str
    fn: TestFunction
    threshold: float = 0.1
    drift_when: Literal["above", "below"] = "above"
    kinds: tuple[str, ...] = KINDS
    help: str = ""
    builtin: bool = False  # computed by the drift monitor from PostgreSQL's aggregates

    @property
    def p_value(self) -> bool:
        return self.drift_when == "below"

    def drifted(self, value: float, threshold: float) -> bool:
        return value < threshold if self.p_value else value >= threshold

    def __call__(self, reference: Any, current: Any) -> DriftResult:
        """Run the test on two columns of values; the answer as a :class:`DriftResult`."""
        return as_result(self.name, self.fn(np.asarray(reference), np.asarray(current)))


def as_result(name: str, answer: Any) -> DriftResult:
    if isinstance(answer, DriftResult):
        return answer
    if isinstance(answer, Mapping):
        if "value" not in answer:
            raise MonitorError(f"drift test {name!r} answered a mapping without 'value'")
        details = {k: v for k, v in answer.items() if k not in ("value", "statistic")}
        return DriftResult(_float(name, answer["value"]), _float(name, answer.get("statistic")), details)
    return DriftResult(_float(name, answer))


def _float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise MonitorError(f"drift test {name!r} answered {value!r}, not a number") from None
    return out if not math.isnan(out) else None


# -- the built-in tests, on values ----------------------------------------------------------------


def shares(counts: Any, epsilon: float = 0.0) -> np.ndarray:
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    s = c / total if total else np.zeros_like(c)
    return np.where(s == 0, epsilon, s) if epsilon else s


def _numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "iuf"


def _category_counts(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cats = sorted(set(map(str, reference)) | set(map(str, current)))
    ref = {c: 0 for c in cats}
    cur = dict(ref)
    for v in map(str, reference):
        ref[v] += 1
    for v in map(str, current):
        cur[v] += 1
    return np.array([ref[c] for c in cats], float), np.array([cur[c] for c in cats], float)


def psi_values(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index: reference deciles as bins (numeric), categories otherwise."""
    if _numeric(reference) and _numeric(current):
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)[1:-1]))
        r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
        c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    else:
        r, c = _category_counts(reference, current)
    rs, cs = shares(r, PSI_EPSILON), shares(c, PSI_EPSILON)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


def ks_values(reference: np.ndarray, current: np.ndarray) -> DriftResult:
    from scipy import stats

    res = stats.ks_2samp(reference.astype(float), current.astype(float))
    return DriftResult(float(res.pvalue), float(res.statistic))


def chisquare_values(reference: np.ndarray, current: np.ndarray) -> float:
    r, c = _category_counts(reference, current)
    expected = shares(r) * c.sum()
    keep = expected > 0
    if c[~keep].sum():  # categories the reference never had: drift by construction
        return 0.0
    from scipy import stats

    return float(stats.chisquare(c[keep], expected[keep] * c[keep].sum() / expected[keep].sum()).pvalue)


def jensenshannon_values(reference: np.ndarray, current: np.ndarray) -> float:
    if _numeric(reference) and _numeric(current):
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, 101)[1:-1]))
        r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
        c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    else:
        r, c = _category_counts(reference, current)
    from scipy.spatial import distance

    return float(distance.jensenshannon(shares(r), shares(c)))


def wasserstein_values(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance over the reference's standard deviation."""
    from scipy import stats

    w = float(stats.wasserstein_distance(reference.astype(float), current.astype(float)))
    std = float(np.std(reference.astype(float), ddof=1)) if reference.size > 1 else 0.0
    if std == 0:
        return 0.0 if w == 0 else float("inf")
    return w / std


BUILT_IN: dict[str, DriftTest] = {
    t.name: t
    for t in (
        DriftTest("psi", psi_values, 0.1, "above", KINDS, "population stability index on reference deciles", True),
        DriftTest("ks", ks_values, 0.05, "below", ("numeric",), "two-sample Kolmogorov-Smirnov p-value", True),
        DriftTest("chisquare", chisquare_values, 0.05, "below", ("categorical",), "chi-square p-value", True),
        DriftTest("jensenshannon", jensenshannon_values, 0.1, "above", KINDS, "Jensen-Shannon distance", True),
        DriftTest("wasserstein", wasserstein_values, 0.1, "above", ("numeric",), "Wasserstein / reference std", True),
    )
}

# -- the registry ----------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_registered: dict[str, DriftTest] = {}
_skipped: dict[str, str] = {}


def _as_test(name: str, obj: Any, **given: Any) -> DriftTest:
    if not _NAME.match(name):
        raise MonitorError(f"drift test name {name!r}: letters, digits and _ only, starting with a letter")
    if name in BUILT_IN or name == "auto":
        raise MonitorError(f"drift test name {name!r} is a built-in test's")
    if isinstance(obj, DriftTest):
        test = DriftTest(name, obj.fn, obj.threshold, obj.drift_when, obj.kinds, obj.help)
    elif callable(obj):
        opts = {k: getattr(obj, k) for k in ("threshold", "drift_when", "kinds") if hasattr(obj, k)} | {
            k: v for k, v in given.items() if v is not None
        }
        test = DriftTest(
            name,
            obj,
            float(opts.get("threshold", 0.1)),
            opts.get("drift_when", "above"),
            tuple(opts.get("kinds", KINDS)),
            str(opts.get("help") or (obj.__doc__ or "").strip().split("\n")[0]),
        )
    else:
        raise MonitorError(f"drift test {name!r}: {obj!r} is not a function")
    if test.drift_when not in ("above", "below"):
        raise MonitorError(f"drift test {name!r}: drift_when must be 'above' or 'below', not {test.drift_when!r}")
    bad = [k for k in test.kinds if k not in KINDS]
    if bad or not test.kinds:
        raise MonitorError(f"drift test {name!r}: kinds must be among {', '.join(KINDS)}, not {list(test.kinds)}")
    if not math.isfinite(test.threshold):
        raise MonitorError(f"drift test {name!r}: threshold must be a number")
    return test


def register(
    name: str,
    fn: TestFunction | DriftTest,
    *,
    threshold: float | None = None,
    drift_when: Literal["above", "below"] | None = None,
    kinds: tuple[str, ...] | list[str] | None = None,
    help: str | None = None,  # noqa: A002
) -> DriftTest:
    """Add (or replace) a drift test of this process; the drift monitor can then choose it per
    column (``tests={"income": name}``)."""
    test = _as_test(
        name, fn, threshold=threshold, drift_when=drift_when, kinds=tuple(kinds) if kinds else None, help=help
    )
    _registered[name] = test
    return test


def unregister(name: str) -> None:
    _registered.pop(name, None)


@cache
def _discovered() -> dict[str, DriftTest]:
    found: dict[str, DriftTest] = {}
    _skipped.clear()
    for ep in entry_points(group=GROUP):
        try:
            found[ep.name] = _as_test(ep.name, ep.load())
        except Exception as exc:  # a broken plug-in must not break the others
            _skipped[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("drift test plug-in %r skipped: %s", ep.name, exc)
    return found


def clear_cache() -> None:
    """Forget what entry points were found (read them again on next use)."""
    _discovered.cache_clear()


def available() -> dict[str, DriftTest]:
    """Every test by name: built-in, then from entry points, then registered in this process."""
    return {**BUILT_IN, **_discovered(), **_registered}


def get(name: str) -> DriftTest:
    tests = available()
    if name not in tests:
        why = f" (its plug-in could not be loaded: {_skipped[name]})" if name in _skipped else ""
        raise MonitorError(f"unknown drift test {name!r}{why} (known: {', '.join(sorted(tests))})")
    return tests[name]
