"""Drift: is the model still seeing the data it was trained on? Per feature and for the model's
output, against the reference profile; dataset drift when a share of features drift.

Tests (plain functions in :mod:`openmart.monitors.drift_tests`, a registry a user can extend),
chosen per column (option ``tests``: column -> test name), else by ``method`` for every column:

=============  ==========  ==============================================  ======================
test           columns     statistic                                       drift when
=============  ==========  ==============================================  ======================
psi            any         population stability index on reference bins    psi >= 0.1
ks             numeric     two-sample Kolmogorov–Smirnov p-value           p < 0.05
chisquare      categorical chi-square goodness of fit p-value              p < 0.05
jensenshannon  any         Jensen–Shannon distance (natural log)           distance >= 0.1
wasserstein    numeric     Wasserstein distance / reference std            distance >= 0.1
(yours)        declared    what your function returns                      its declared side
=============  ==========  ==============================================  ======================

Windows larger than ``max_rows`` (default 200,000; 0: no limit) are measured on a uniform sample
of that size, chosen by a hash of the scoring id, so the same records are chosen every time;
the sample size is reported with the outcome.

``auto`` picks as Evidently does: with a reference of at most 1,000 rows, ks for numeric
columns (more than 5 distinct values) and chisquare otherwise; with a larger reference,
wasserstein for numeric columns and jensenshannon otherwise.

Current-window statistics of the built-in tests are computed in PostgreSQL
(:mod:`openmart.mart.stats`): histograms on the reference's fine (percentile) and PSI (decile)
edges, value counts, moments. KS and Wasserstein on large windows are computed from the
percentile histogram (documented approximation: the CDFs are compared at 99 reference
percentiles); small windows against a small reference fetch the column and use scipy's exact
functions. A custom test gets the values themselves: the reference column, and the window's
(or its sample's).

Thresholds: ``psi=0.2`` (every column measured by psi), ``income=0.3`` (one column), a bare
number (every distance test), ``share_of_drifted_features=0.3`` (the dataset's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from openmart.context import SubscriptionContext
from openmart.errors import MonitorError
from openmart.mart import stats as mart_stats
from openmart.mart import subscriptions as subscriptions_table
from openmart.mart import windows
from openmart.mart.windows import Relation, Window
from openmart.monitors import drift_tests
from openmart.monitors.base import (
    BaseMonitor,
    Direction,
    Measurement,
    MetricSpec,
    MonitorOutcome,
    OptionSpec,
    context_of,
    learned_k,
    min_records_option,
    thresholds_option,
)
from openmart.monitors.config import MonitorConfig, MonitorKind, Threshold, ThresholdType
from openmart.monitors.drift_tests import DriftTest
from openmart.monitors.profile import SMALL_SAMPLE, ColumnProfile, merge_buckets, set_profile
from openmart.schema import ColumnKind, ProblemType

KIND = MonitorKind.DRIFT
PSI_EPSILON = drift_tests.PSI_EPSILON
EXACT_LIMIT = 5000  # current windows up to this size are fetched for exact p-value tests
OUTPUT = "__output__"  # the model's output in the reference profile
SHARE = "share_of_drifted_features"
GENERAL = "drift"  # a threshold for every distance test (and, with a feature, for one column)


# -- pure statistics ------------------------------------------------------------------------------


def shares(counts: Sequence[float], epsilon: float = 0.0) -> np.ndarray:
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    s = c / total if total else np.zeros_like(c)
    return np.where(s == 0, epsilon, s) if epsilon else s


def psi(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    r, c = shares(reference_counts, PSI_EPSILON), shares(current_counts, PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def jensenshannon(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    return float(distance.jensenshannon(shares(reference_counts), shares(current_counts)))


def chisquare_pvalue(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    ref, cur = np.asarray(reference_counts, float), np.asarray(current_counts, float)
    expected = shares(ref) * cur.sum()
    keep = expected > 0
    unseen = cur[~keep].sum()  # categories the reference never had: drift by construction
    if unseen:
        return 0.0
    return float(stats.chisquare(cur[keep], expected[keep] * cur[keep].sum() / expected[keep].sum()).pvalue)


def ks_binned(
    edges: Sequence[float], reference_counts: Sequence[float], current_counts: Sequence[float]
) -> tuple[float, float]:
    """KS statistic from two histograms on the same edges (CDFs compared at the edges), with
    the asymptotic two-sample p-value."""
    r, c = np.asarray(reference_counts, float), np.asarray(current_counts, float)
    n, m = r.sum(), c.sum()
    d = float(np.max(np.abs(np.cumsum(r)[:-1] / n - np.cumsum(c)[:-1] / m))) if len(edges) else 0.0
    p = float(stats.distributions.kstwobign.sf(d * np.sqrt(n * m / (n + m))))
    return d, p


def wasserstein_buckets(
    reference_counts: Sequence[float],
    reference_sums: Sequence[float],
    current_counts: Sequence[float],
    current_sums: Sequence[float],
) -> float:
    """W1 between the two distributions with each bucket's mass placed at its own mean (the
    reference's and the window's, which PostgreSQL sums per bucket): exact on the tails, where
    a histogram alone would have to guess how far the outer buckets reach."""
    rc, rs = np.asarray(reference_counts, float), np.asarray(reference_sums, float)
    cc, cs = np.asarray(current_counts, float), np.asarray(current_sums, float)
    r_ok, c_ok = rc > 0, cc > 0
    return float(stats.wasserstein_distance(rs[r_ok] / rc[r_ok], cs[c_ok] / cc[c_ok], rc[r_ok], cc[c_ok]))


@dataclass
class ColumnDrift:
    column: str
    method: str
    value: float | None
    statistic: float | None
    threshold: float
    drifted: bool
    reason: str | None = None
    histogram: dict[str, Any] | None = None
    details: dict[str, Any] | None = None


def choose_method(profile: ColumnProfile, reference_rows: int) -> str:
    numeric = profile.kind == "numeric" and profile.n_unique > 5
    if reference_rows <= SMALL_SAMPLE:
        return "ks" if numeric else "chisquare"
    return "wasserstein" if numeric else "jensenshannon"


# -- configuration ---------------------------------------------------------------------------------


def _column_kinds(ctx: SubscriptionContext) -> dict[str, str]:
    """Every column drift can measure, with its kind: the features, and the model's output."""
    s = ctx.schema
    kinds = {c.name: "categorical" if c.kind is ColumnKind.CATEGORICAL else "numeric" for c in s.features}
    kinds[s.prediction] = "numeric" if s.problem_type is ProblemType.REGRESSION else "categorical"
    return kinds


class DriftMonitor(BaseMonitor):
    """Per-column drift against the reference profile, and dataset drift."""

    kind = KIND
    description = "Feature and output drift against the reference; dataset drift when a share of features drift."

    @property
    def options(self) -> Sequence[OptionSpec]:  # type: ignore[override]
        names = ("auto", *drift_tests.available())
        return (
            OptionSpec(
                "method", str, "auto", choices=names, help="The test for every column (auto: by kind and size)."
            ),
            OptionSpec("tests", dict, None, help="A test per column: {column: test name}; others follow 'method'."),
            thresholds_option(),
            OptionSpec("threshold", float, None, low=0.0, help="One threshold for every distance test."),
            OptionSpec(
                "drift_share",
                float,
                0.5,
                low=0.0,
                high=1.0,
                low_open=True,
                help="Share of drifting features that makes the dataset drift.",
            ),
            min_records_option(100),
            OptionSpec(
                "max_rows", int, 200_000, low=0, help="Larger windows are measured on a sample this big (0: all)."
            ),
            OptionSpec("features", list, None, help="Only these features (default: all)."),
        )

    @property
    def metrics(self) -> Sequence[MetricSpec]:  # type: ignore[override]
        tests = [
            MetricSpec(
                t.name,
                Direction.HIGHER_IS_BETTER if t.p_value else Direction.LOWER_IS_BETTER,
                t.threshold,
                low=0.0,
                high=1.0 if t.p_value else None,
                help=t.help,
            )
            for t in drift_tests.available().values()
        ]
        return [
            *tests,
            MetricSpec(GENERAL, Direction.LOWER_IS_BETTER, None, low=0.0, help="a threshold for every distance test"),
            MetricSpec(SHARE, Direction.LOWER_IS_BETTER, 0.5, low=0.0, high=1.0, help="share of drifting features"),
        ]

    def check(self, ctx: SubscriptionContext, values: dict[str, Any]) -> dict[str, Any]:
        with ctx.engine.connect() as conn:
            profile = subscriptions_table.reference_profile(conn, ctx.id)
        if profile is None:
            raise MonitorError(
                f"subscription {ctx.name!r} has no reference data: load it first (openmart reference load)"
            )
        kinds = _column_kinds(ctx)
        features = values["features"]
        for f in features or ():
            ctx.schema.column(str(f))  # raises, naming it
        tests: dict[str, str] = {}
        for column, name in (values["tests"] or {}).items():
            if column not in kinds:
                raise MonitorError(
                    f"drift monitor: option 'tests' names {column!r}, not a feature or the output "
                    f"(known: {', '.join(kinds)})"
                )
            test = drift_tests.get(str(name))  # unknown: the known ones listed
            if kinds[column] not in test.kinds:
                raise MonitorError(
                    f"drift monitor: option 'tests': {name!r} measures {' and '.join(test.kinds)} columns; "
                    f"{column!r} is {kinds[column]}"
                )
            tests[str(column)] = test.name
        return {
            "method": values["method"],
            "tests": tests or None,
            "drift_share": float(values["drift_share"]),
            "features": [str(f) for f in features] if features else None,
            "max_rows": int(values["max_rows"]),
            "threshold": values["threshold"],
        }

    def thresholds(self, ctx: SubscriptionContext, given: Sequence[Any], parameters: dict[str, Any]) -> list[Threshold]:
        """``TEST=value`` (every column measured by that test), ``COLUMN=value`` (one column), a
        bare number or ``drift=value`` (every distance test), ``share_of_drifted_features=value``."""
        kinds = _column_kinds(ctx)
        tests = drift_tests.available()
        parsed: list[Threshold] = []
        general = parameters.pop("threshold", None)
        for t in given:
            if isinstance(t, Mapping):
                feature = t.get("feature")
                if feature is not None:
                    if feature not in kinds:
                        raise MonitorError(
                            f"drift threshold {dict(t)!r}: {feature!r} is not a feature or the output "
                            f"(known: {', '.join(kinds)})"
                        )
                    value = _value(t, t.get("value"))
                    parsed.append(Threshold(GENERAL, ThresholdType.UPPER_LIMIT, value, str(feature)))
                    continue
                if "metric" not in t:
                    raise MonitorError(f"drift threshold {dict(t)!r}: give metric (or feature) and value")
                name, raw = str(t["metric"]), t.get("value")
            else:
                text = str(t).strip()
                name, sep, raw = text.rpartition("=")
                name = name.strip()
                if not sep:
                    general = _value(t, raw)
                    continue
                if not name:
                    raise MonitorError(f"drift threshold {t!r}: expected TEST=value, COLUMN=value or a number")
            k = learned_k(raw)
            if k is not None and (name in tests or name == SHARE):  # a band learned from reference chunks
                if k <= 0:
                    raise MonitorError(f"drift threshold {t!r}: k (standard deviations) must be a number > 0")
                if name in tests and tests[name].p_value:
                    # under no drift a p-value is uniform on [0, 1]: mean ± k·std over reference
                    # chunks covers the whole range, so such a band could never breach
                    raise MonitorError(
                        f"drift threshold {t!r}: {name} gives p-values, which spread evenly over [0, 1] on "
                        "chunks of the reference, so a learned band would never breach; learn a distance "
                        "instead (jensenshannon=learned, psi=learned, wasserstein=learned) or give a p-value"
                    )
                parsed.append(Threshold(name, ThresholdType.UPPER_LIMIT, float("nan"), None, {"k": k}))
                continue
            value = _value(t, raw)
            if name == SHARE:
                if not 0 < value <= 1:
                    raise MonitorError(f"drift threshold {t!r}: {SHARE} must lie in (0, 1]")
                parameters["drift_share"] = value
            elif name == GENERAL:
                general = value
            elif name in tests:
                test = tests[name]
                if test.p_value and not 0 <= value <= 1:
                    raise MonitorError(f"drift threshold {t!r}: {name} is a p-value, in [0, 1]")
                side = ThresholdType.LOWER_LIMIT if test.p_value else ThresholdType.UPPER_LIMIT
                parsed.append(Threshold(name, side, value))
            elif name in kinds:
                parsed.append(Threshold(GENERAL, ThresholdType.UPPER_LIMIT, value, name))
            else:
                raise MonitorError(
                    f"drift threshold {t!r}: {name!r} is neither a drift test ({', '.join(sorted(tests))}, "
                    f"{SHARE}) nor a column ({', '.join(kinds)})"
                )
        if general is not None:
            if general < 0:
                raise MonitorError(f"drift threshold {general!r}: a distance threshold is >= 0")
            parsed.append(Threshold(GENERAL, ThresholdType.UPPER_LIMIT, float(general)))
        return parsed

    def run(self, ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
        return run(context_of(ctx), config, window, conn)


def _value(given: Any, raw: Any) -> float:
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
    except (TypeError, ValueError):
        raise MonitorError(f"drift threshold {given!r}: {raw!r} is not a number") from None
    if not np.isfinite(value):
        raise MonitorError(f"drift threshold {given!r}: {raw!r} is not a number")
    return value


# -- run over the mart ----------------------------------------------------------------------------


def _test_for(config: MonitorConfig, column: str, profile: ColumnProfile, rows: int) -> DriftTest:
    chosen = (config.parameters.get("tests") or {}).get(column) or config.parameters.get("method", "auto")
    if chosen == "auto":
        return drift_tests.get(choose_method(profile, rows))
    test = drift_tests.get(chosen)
    if profile.kind not in test.kinds:  # a numeric-only test falls back for categories, and back
        return drift_tests.get(choose_method(profile, rows))
    return test


def _threshold(config: MonitorConfig, test: DriftTest, column: str) -> float:
    specific = next((t for t in config.thresholds if t.feature == column), None)
    if specific:
        return specific.value
    per_test = next((t for t in config.thresholds if t.metric == test.name and t.feature is None), None)
    if per_test:
        return per_test.value
    general = next((t for t in config.thresholds if t.metric == GENERAL and t.feature is None), None)
    # a user's single threshold is a distance: it does not apply to p-value tests
    return general.value if general and not test.p_value else test.threshold


def _drift(
    profile: ColumnProfile,
    test: DriftTest,
    threshold: float,
    summary: mart_stats.NumericSummary | None,
    counts: Mapping[str | None, int] | None,
    exact: np.ndarray | None,
) -> ColumnDrift:
    """A built-in test from the window's aggregates (and its values, for small windows)."""
    method = test.name
    if profile.kind == "numeric":
        assert summary is not None
        fine = summary.counts
        psi_counts = merge_buckets(profile.fine_edges, profile.psi_edges, fine)
        histogram = {
            "edges": profile.psi_edges,
            "reference": shares(profile.psi_counts).tolist(),
            "current": shares(psi_counts).tolist(),
            "min": profile.min,
            "max": profile.max,
        }
        if method == "psi":
            value = stat = psi(profile.psi_counts, psi_counts)
        elif method == "jensenshannon":
            value = stat = jensenshannon(profile.fine_counts, fine)
        elif method == "ks":
            if exact is not None and profile.values is not None:
                res = stats.ks_2samp(np.asarray(profile.values), exact)
                stat, value = float(res.statistic), float(res.pvalue)
            else:
                stat, value = ks_binned(profile.fine_edges, profile.fine_counts, fine)
        else:
            std = profile.std or 0.0
            if exact is not None and profile.values is not None:
                w = float(stats.wasserstein_distance(profile.values, exact))
            else:
                w = wasserstein_buckets(profile.fine_counts, profile.fine_sums, fine, summary.sums)
            if std == 0:  # a constant reference: any movement is total drift, none is none
                value = stat = 0.0 if w == 0 else float("inf")
            else:
                value = stat = w / std
    else:
        seen = {k: v for k, v in (counts or {}).items() if k is not None}
        cats = sorted(set(profile.categories) | set(seen))
        ref = [profile.categories.get(k, 0) for k in cats]
        cur = [seen.get(k, 0) for k in cats]
        histogram = {
            "categories": cats[:50],
            "reference": shares(ref).tolist()[:50],
            "current": shares(cur).tolist()[:50],
        }
        if method == "psi":
            value = stat = psi(ref, cur)
        elif method == "chisquare":
            value = chisquare_pvalue(ref, cur)
            stat = None
        else:
            value = stat = jensenshannon(ref, cur)
    return ColumnDrift(
        profile.name, method, value, stat, threshold, test.drifted(value, threshold), histogram=histogram
    )


def _custom(
    test: DriftTest, column: str, profile: ColumnProfile, threshold: float, reference: np.ndarray, current: np.ndarray
) -> ColumnDrift:
    """A user's test, on the values."""
    try:
        result = test(reference, current)
    except MonitorError:
        raise
    except Exception as exc:  # the user's function failed: say which, on which column
        raise MonitorError(f"drift test {test.name!r} failed on {column!r}: {type(exc).__name__}: {exc}") from exc
    if result.value is None:
        return ColumnDrift(column, test.name, None, result.statistic, threshold, False, "the test gave no value")
    return ColumnDrift(
        column,
        test.name,
        result.value,
        result.statistic,
        threshold,
        test.drifted(result.value, threshold),
        details=result.details or None,
    )


def _values(frame: pd.DataFrame, column: str, kind: str) -> np.ndarray:
    series = frame[column].dropna()
    if kind == "numeric":
        return pd.to_numeric(series).to_numpy(dtype=float)
    from openmart.mart.records import as_text

    return np.asarray([as_text(v) for v in series], dtype=object)


def _profiled_columns(ctx: SubscriptionContext, baseline: Window) -> list[str]:
    """The columns a baseline's profile is made of: the inputs, the prediction, and (a labelled
    set) the label, which stands for the output when the set has no predictions."""
    s = ctx.schema
    label = [s.label] if baseline.labelled_set else []
    return [*(c.name for c in s.input_columns), s.prediction, *label]


def run(ctx: SubscriptionContext, config: MonitorConfig, window: Window, conn: Any) -> MonitorOutcome:
    outcome = MonitorOutcome(str(KIND))
    baseline = window.baseline or windows.reference_window(ctx.record.reference_version)
    if window.baseline is None:  # the reference: its profile was stored when it was loaded
        with ctx.engine.connect() as c:
            ref = subscriptions_table.reference_profile(c, ctx.id)
    else:  # another record set: profiled now, from its rows
        frame = windows.set_rows(conn, baseline, ctx, _profiled_columns(ctx, baseline))
        ref = set_profile(ctx.schema, frame) if len(frame) else None
    if not ref:
        outcome.status = "skipped"
        outcome.reason = (
            "no reference data loaded" if window.baseline is None else f"the baseline ({baseline.describe()}) is empty"
        )
        return outcome
    s = ctx.schema
    wanted = config.parameters.get("features") or [c.name for c in s.features]
    profiles = {name: ColumnProfile.from_dict(ref["columns"][name]) for name in wanted if name in ref["columns"]}
    out_profile = ColumnProfile.from_dict(ref["columns"][OUTPUT]) if OUTPUT in ref["columns"] else None
    # the model's output, under its own column name, alongside the features
    columns = {name: name for name in profiles}
    if out_profile is not None:
        columns[s.prediction] = OUTPUT
        profiles[OUTPUT] = out_profile
    relation: Relation = windows.payload(window, ctx)
    n = mart_stats.count(conn, relation)
    outcome.records = n
    if n < config.min_records:
        outcome.status, outcome.reason = "not_enough_data", f"{n} payload records, fewer than {config.min_records}"
        return outcome
    rows = int(ref["rows"])
    tests = {c: _test_for(config, c, profiles[key], rows) for c, key in columns.items()}
    max_rows = int(config.parameters.get("max_rows") or 0)
    if max_rows and n > max_rows:
        # a window larger than max_rows is measured on a uniform sample of it (the same records every time)
        relation, sample_rows = mart_stats.hashed_sample(conn, relation, list(columns), max_rows / n)
        outcome.info["sampled_rows"] = sample_rows
    builtin = {c for c, t in tests.items() if t.builtin}
    tasks: dict[str, Any] = {}
    for c in builtin:
        profile, rel = profiles[columns[c]], relation
        if profile.kind == "numeric":
            tasks[c] = lambda r, c=c, e=profile.fine_edges, rel=rel: mart_stats.numeric_summary(r, rel, c, e)
        else:
            tasks[c] = lambda r, c=c, rel=rel: mart_stats.column_counts(r, rel, c)
    if relation.temporary:  # the temporary table lives on this connection
        summaries = {c: task(conn) for c, task in tasks.items()}
    else:
        summaries = mart_stats.per_column(ctx.engine.raw_connection, tasks)
    exact_cols = [
        c
        for c in builtin
        if tests[c].name in ("ks", "wasserstein") and profiles[columns[c]].values is not None and n <= EXACT_LIMIT
    ]
    custom_cols = [c for c in columns if c not in builtin]
    fetched = (
        windows.columns(conn, relation, sorted(set(exact_cols) | set(custom_cols)))
        if exact_cols or custom_cols
        else None
    )
    exact = (
        {c: pd.to_numeric(fetched[c]).dropna().to_numpy(dtype=float) for c in exact_cols} if fetched is not None else {}
    )
    reference_values: pd.DataFrame | None = None
    if custom_cols:
        source = {c: (ref.get("output_source") or s.prediction) if columns[c] == OUTPUT else c for c in custom_cols}
        reference_values = windows.set_rows(conn, baseline, ctx, sorted(set(source.values())))
    drifted_features = 0
    results = []
    for column, key in columns.items():
        profile, test = profiles[key], tests[column]
        threshold = _threshold(config, test, column)
        if column in custom_cols:
            assert fetched is not None and reference_values is not None
            current = _values(fetched, column, profile.kind)
            if current.size == 0:
                result = ColumnDrift(column, test.name, None, None, threshold, False, reason="no values in the window")
            else:
                result = _custom(
                    test, column, profile, threshold, _values(reference_values, source[column], profile.kind), current
                )
        else:
            summary = summaries[column]
            numeric = profile.kind == "numeric"
            present = summary.moments.count if numeric else sum(v for k, v in summary.items() if k is not None)
            if present == 0:
                result = ColumnDrift(column, test.name, None, None, threshold, False, reason="no values in the window")
            else:
                result = _drift(
                    profile,
                    test,
                    threshold,
                    summary if numeric else None,
                    None if numeric else summary,
                    exact.get(column),
                )
        results.append((column, result))
        if key != OUTPUT and result.drifted:
            drifted_features += 1
    n_features = sum(1 for c, k in columns.items() if k != OUTPUT)
    for column, r in results:
        test = tests[column]
        outcome.measurements.append(
            Measurement(
                str(KIND),
                r.method,
                r.value,
                r.threshold,
                str(ThresholdType.LOWER_LIMIT if test.p_value else ThresholdType.UPPER_LIMIT),
                r.drifted,
                feature=column,
                details={
                    "statistic": r.statistic,
                    "kind": profiles[columns[column]].kind,
                    "reason": r.reason,
                    "output": columns[column] == OUTPUT,
                    "histogram": r.histogram,
                    **({"test": r.details} if r.details else {}),
                },
            )
        )
    share = drifted_features / n_features if n_features else 0.0
    drift_share = float(config.parameters.get("drift_share", 0.5))
    outcome.measurements.append(
        Measurement(
            str(KIND),
            SHARE,
            share,
            drift_share,
            str(ThresholdType.UPPER_LIMIT),
            share >= drift_share,
            details={"drifted": drifted_features, "features": n_features},
        )
    )
    outcome.info["dataset_drift"] = share >= drift_share
    return outcome
