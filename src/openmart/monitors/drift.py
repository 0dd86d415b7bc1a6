"""Drift: is the model still seeing the data it was trained on? Per feature and for the model's
output, against the reference profile; dataset drift when a share of features drift.

Methods (one pure function each, Evidently-style, with their defaults):

=============  ==========  ==============================================  ======================
method         columns     statistic                                       drift when
=============  ==========  ==============================================  ======================
psi            any         population stability index on reference bins    psi >= 0.1
ks             numeric     two-sample Kolmogorov–Smirnov p-value           p < 0.05
chisquare      categorical chi-square goodness of fit p-value              p < 0.05
jensenshannon  any         Jensen–Shannon distance (natural log)           distance >= 0.1
wasserstein    numeric     Wasserstein distance / reference std            distance >= 0.1
=============  ==========  ==============================================  ======================

Windows larger than ``max_rows`` (default 200,000; 0: no limit) are measured on a uniform sample
of that size, chosen by a hash of the scoring id, so the same records are chosen every time;
the sample size is reported with the outcome.

``auto`` picks as Evidently does: with a reference of at most 1,000 rows, ks for numeric
columns (more than 5 distinct values) and chisquare otherwise; with a larger reference,
wasserstein for numeric columns and jensenshannon otherwise.

Current-window statistics are computed in PostgreSQL (``monitors.sqlstats``): histograms on the
reference's fine (percentile) and PSI (decile) edges, value counts, moments. KS and Wasserstein
on large windows are computed from the percentile histogram (documented approximation: the
CDFs are compared at 99 reference percentiles); small windows against a small reference fetch
the column and use scipy's exact functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from openmart.errors import MonitorError
from openmart.evaluation.results import Measurement, MonitorOutcome
from openmart.evaluation.window import Window, fetch_frame
from openmart.mart.identifiers import quote
from openmart.monitors import sqlstats
from openmart.monitors.config import MonitorConfig, MonitorKind, Threshold, ThresholdType
from openmart.monitors.profile import SMALL_SAMPLE, ColumnProfile, merge_buckets

if TYPE_CHECKING:
    from openmart.api import Subscription

KIND = MonitorKind.DRIFT
PSI_EPSILON = 1e-4  # share given to an empty bin, so the logarithm stays finite
EXACT_LIMIT = 5000  # current windows up to this size are fetched for exact p-value tests


class Method(StrEnum):
    AUTO = "auto"
    PSI = "psi"
    KS = "ks"
    CHISQUARE = "chisquare"
    JENSENSHANNON = "jensenshannon"
    WASSERSTEIN = "wasserstein"


@dataclass(frozen=True)
class MethodSpec:
    default_threshold: float
    p_value: bool  # drift when value < threshold (a p-value) instead of >= threshold

    @property
    def threshold_type(self) -> ThresholdType:
        return ThresholdType.LOWER_LIMIT if self.p_value else ThresholdType.UPPER_LIMIT


SPECS = {
    Method.PSI: MethodSpec(0.1, False),
    Method.KS: MethodSpec(0.05, True),
    Method.CHISQUARE: MethodSpec(0.05, True),
    Method.JENSENSHANNON: MethodSpec(0.1, False),
    Method.WASSERSTEIN: MethodSpec(0.1, False),
}


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
    method: Method
    value: float | None
    statistic: float | None
    threshold: float
    drifted: bool
    reason: str | None = None
    histogram: dict[str, Any] | None = None


def choose_method(profile: ColumnProfile, reference_rows: int) -> Method:
    numeric = profile.kind == "numeric" and profile.n_unique > 5
    if reference_rows <= SMALL_SAMPLE:
        return Method.KS if numeric else Method.CHISQUARE
    return Method.WASSERSTEIN if numeric else Method.JENSENSHANNON


# -- configuration ---------------------------------------------------------------------------------


def configure(
    sub: Subscription,
    *,
    method: str = "auto",
    thresholds: Sequence[str | Mapping[str, Any]] = (),
    threshold: float | None = None,
    drift_share: float = 0.5,
    min_records: int = 100,
    max_rows: int = 200_000,
    features: Sequence[str] | None = None,
    **unknown: Any,
) -> MonitorConfig:
    if unknown:
        raise MonitorError(f"drift monitor: unknown options {sorted(unknown)}")
    try:
        chosen = Method(method)
    except ValueError:
        raise MonitorError(f"drift method {method!r}: choose from {', '.join(Method)}") from None
    if sub.reference.profile() is None:
        raise MonitorError(f"subscription {sub.name!r} has no reference data: load it first (openmart reference load)")
    parsed: list[Threshold] = []
    for t in thresholds:
        if isinstance(t, str):  # the CLI's --threshold: a bare number, or feature=value
            name, sep, value = t.rpartition("=")
            try:
                number = float(value)
            except ValueError:
                raise MonitorError(f"drift threshold {t!r}: expected a number or feature=number") from None
            if sep:
                sub.schema.column(name)
                parsed.append(Threshold("drift", ThresholdType.UPPER_LIMIT, number, name))
            else:
                threshold = number
        else:
            parsed.append(Threshold.from_dict(dict(t)))
    if threshold is not None:
        parsed.append(Threshold("drift", ThresholdType.UPPER_LIMIT, float(threshold)))
    if not 0 < drift_share <= 1:
        raise MonitorError("drift_share must lie in (0, 1]")
    for f in features or ():
        sub.schema.column(f)
    if chosen in (Method.KS, Method.WASSERSTEIN) and features is None and sub.schema.categorical_features:
        pass  # categorical columns fall back to their auto method (ks/wasserstein are numeric only)
    params = {
        "method": str(chosen),
        "drift_share": drift_share,
        "features": list(features) if features else None,
        "max_rows": int(max_rows),
    }
    return MonitorConfig(KIND, params, parsed, int(min_records))


# -- run over the mart ----------------------------------------------------------------------------


def _method_for(config: MonitorConfig, profile: ColumnProfile, rows: int) -> Method:
    method = Method(config.parameters.get("method", "auto"))
    if method is Method.AUTO:
        return choose_method(profile, rows)
    if method in (Method.KS, Method.WASSERSTEIN) and profile.kind != "numeric":
        return choose_method(profile, rows)  # numeric-only tests fall back for categories
    if method is Method.CHISQUARE and profile.kind == "numeric":
        return choose_method(profile, rows)
    return method


def _threshold(config: MonitorConfig, method: Method, column: str) -> float:
    spec = SPECS[method]
    specific = next((t for t in config.thresholds if t.feature == column), None)
    if specific:
        return specific.value
    general = next((t for t in config.thresholds if t.feature is None), None)
    # a user's single threshold is a distance: it does not apply to p-value tests
    return general.value if general and not spec.p_value else spec.default_threshold


def _drift(
    profile: ColumnProfile,
    method: Method,
    threshold: float,
    summary: sqlstats.NumericSummary | None,
    counts: Mapping[str | None, int] | None,
    exact: np.ndarray | None,
) -> ColumnDrift:
    spec = SPECS[method]
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
        if method is Method.PSI:
            value = stat = psi(profile.psi_counts, psi_counts)
        elif method is Method.JENSENSHANNON:
            value = stat = jensenshannon(profile.fine_counts, fine)
        elif method is Method.KS:
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
        if method is Method.PSI:
            value = stat = psi(ref, cur)
        elif method is Method.CHISQUARE:
            value = chisquare_pvalue(ref, cur)
            stat = None
        else:
            value = stat = jensenshannon(ref, cur)
    drifted = value < threshold if spec.p_value else value >= threshold
    return ColumnDrift(profile.name, method, value, stat, threshold, bool(drifted), histogram=histogram)


def run(sub: Subscription, config: MonitorConfig, window: Window, raw: Any) -> MonitorOutcome:
    outcome = MonitorOutcome(str(KIND))
    ref = sub.reference.profile()
    if not ref:
        outcome.status, outcome.reason = "skipped", "no reference data loaded"
        return outcome
    s = sub.schema
    wanted = config.parameters.get("features") or [c.name for c in s.features]
    profiles = {name: ColumnProfile.from_dict(ref["columns"][name]) for name in wanted if name in ref["columns"]}
    out_profile = ColumnProfile.from_dict(ref["columns"]["__output__"]) if "__output__" in ref["columns"] else None
    # the model's output, under its own column name, alongside the features
    columns = {name: name for name in profiles}
    if out_profile is not None:
        columns[s.prediction] = "__output__"
        profiles["__output__"] = out_profile
    sql, params = window.payload_sql(sub.payload.table)
    n = sqlstats.count(raw, sql, params)
    outcome.records = n
    if n < config.min_records:
        outcome.status, outcome.reason = "not_enough_data", f"{n} payload records, fewer than {config.min_records}"
        return outcome
    rows = int(ref["rows"])
    methods = {c: _method_for(config, profiles[key], rows) for c, key in columns.items()}
    max_rows = int(config.parameters.get("max_rows") or 0)
    sampled = bool(max_rows) and n > max_rows
    if sampled:
        # a window larger than max_rows is measured on a uniform sample of it, chosen by a hash of
        # the scoring id (the same records every time), kept in a narrow temporary table: the
        # cost of PostgreSQL's per-row binning grows with rows x columns
        per_million = int(np.ceil(max_rows / n * 1_000_000))
        cols = ", ".join(f"w.{quote(c)}" for c in columns)
        with raw.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS _openmart_drift_sample")
            cur.execute(
                f"CREATE TEMP TABLE _openmart_drift_sample AS SELECT {cols} FROM ({sql}) w "
                f"WHERE (hashtext(w.scoring_id) & 2147483647) %% 1000000 < %(per_million)s",
                {**params, "per_million": per_million},
            )
            sample_rows = cur.rowcount
        sql, params = "SELECT * FROM _openmart_drift_sample", {}
        outcome.info["sampled_rows"] = sample_rows
    tasks: dict[str, Any] = {}
    for c, key in columns.items():
        if profiles[key].kind == "numeric":
            tasks[c] = lambda r, c=c, e=profiles[key].fine_edges: sqlstats.numeric_summary(r, sql, params, c, e)
        else:
            tasks[c] = lambda r, c=c: sqlstats.column_counts(r, sql, params, c)
    if sampled:  # the temporary table lives on this connection
        summaries = {c: task(raw) for c, task in tasks.items()}
    else:
        summaries = sqlstats.per_column(sub.mart.engine.raw_connection, tasks)
    exact_cols = [
        c
        for c in columns
        if methods[c] in (Method.KS, Method.WASSERSTEIN)
        and profiles[columns[c]].values is not None
        and n <= EXACT_LIMIT
    ]
    exact: dict[str, np.ndarray] = {}
    if exact_cols:
        frame = fetch_frame(raw, f"SELECT {', '.join('w.' + quote(c) for c in exact_cols)} FROM ({sql}) w", params)
        exact = {c: pd.to_numeric(frame[c]).dropna().to_numpy(dtype=float) for c in exact_cols}
    drifted_features = 0
    results = []
    for column, key in columns.items():
        profile, method, summary = profiles[key], methods[column], summaries[column]
        numeric = profile.kind == "numeric"
        present = summary.moments.count if numeric else sum(v for k, v in summary.items() if k is not None)
        if present == 0:
            results.append(
                (
                    column,
                    ColumnDrift(
                        column,
                        method,
                        None,
                        None,
                        _threshold(config, method, column),
                        False,
                        reason="no values in the window",
                    ),
                )
            )
            continue
        result = _drift(
            profile,
            method,
            _threshold(config, method, column),
            summary if numeric else None,
            None if numeric else summary,
            exact.get(column),
        )
        results.append((column, result))
        if key != "__output__" and result.drifted:
            drifted_features += 1
    n_features = sum(1 for c, k in columns.items() if k != "__output__")
    for column, r in results:
        spec = SPECS[r.method]
        outcome.measurements.append(
            Measurement(
                str(KIND),
                str(r.method),
                r.value,
                r.threshold,
                str(spec.threshold_type),
                r.drifted,
                feature=column,
                details={
                    "statistic": r.statistic,
                    "kind": profiles[columns[column]].kind,
                    "reason": r.reason,
                    "output": columns[column] == "__output__",
                    "histogram": r.histogram,
                },
            )
        )
    share = drifted_features / n_features if n_features else 0.0
    drift_share = float(config.parameters.get("drift_share", 0.5))
    outcome.measurements.append(
        Measurement(
            str(KIND),
            "share_of_drifted_features",
            share,
            drift_share,
            str(ThresholdType.UPPER_LIMIT),
            share >= drift_share,
            details={"drifted": drifted_features, "features": n_features},
        )
    )
    outcome.info["dataset_drift"] = share >= drift_share
    return outcome
