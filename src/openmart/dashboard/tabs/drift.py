"""Drift: the features of the newest evaluation in range, drifting ones first (worst first), the
selected feature's reference-vs-current distribution and its score over time, and the share of
drifting features over time."""

from __future__ import annotations

import math

from sqlalchemy.engine import Connection

from openmart.dashboard import charts
from openmart.dashboard.html import e, empty, figure, number, segment, when
from openmart.dashboard.tabs.common import chip_of, no_measurements, not_enabled, series, thresholds
from openmart.dashboard.view import View
from openmart.mart import dashboard as reads
from openmart.mart.dashboard import MeasurementDetail, SubscriptionOverview

SHARE = "share_of_drifted_features"  # the drift monitor's metric (monitors/drift.py)


def severity(m: MeasurementDetail) -> float:
    """How far past (or short of) its threshold a score is, as a ratio: above 1 is drift. For a
    p-value test (a lower limit) a smaller value is worse; for a distance (an upper limit) a larger one."""
    if m.value is None or m.threshold is None or math.isnan(m.value):
        return -math.inf
    lower = (m.threshold_type or "").startswith("lower")
    if lower:
        return math.inf if m.value <= 0 else m.threshold / m.value
    return math.inf if m.threshold <= 0 and m.value > 0 else (m.value / m.threshold if m.threshold > 0 else 0.0)


def ordered(features: list[MeasurementDetail]) -> list[MeasurementDetail]:
    """Breached first, then by severity (worst first), then by name."""
    return sorted(features, key=lambda m: (not m.breached, -severity(m), m.feature or ""))


def score_attr(value: float | None) -> str:
    if value is None or math.isnan(value):
        return ""
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"  # what JavaScript's parseFloat reads
    return repr(float(value))


def _labels(histogram: dict) -> list[str]:  # type: ignore[type-arg]
    if "categories" in histogram:
        return [str(c) for c in histogram["categories"]]
    edges = histogram.get("edges") or []
    n = len(histogram.get("reference") or [])
    if len(edges) == n + 1:
        return [f"{number(edges[i], 2)}–{number(edges[i + 1], 2)}" for i in range(n)]
    if len(edges) == n - 1:  # open outer buckets: below the first edge, above the last
        inner = [f"{number(edges[i], 2)}–{number(edges[i + 1], 2)}" for i in range(len(edges) - 1)]
        return [f"< {number(edges[0], 2)}", *inner, f"≥ {number(edges[-1], 2)}"] if edges else []
    return [str(i + 1) for i in range(n)]


def distribution(m: MeasurementDetail) -> str:
    histogram = (m.details or {}).get("histogram")
    if not histogram:
        reason = (m.details or {}).get("reason") or "the test stored no histogram"
        return charts._empty(560, 120, f"no distribution: {reason}")
    ref = [float(x) for x in histogram.get("reference") or []]
    cur = [float(x) for x in histogram.get("current") or []]
    labels = _labels(histogram)
    n = min(len(labels), len(ref), len(cur))
    return charts.distribution(labels[:n], ref[:n], cur[:n])


def _item(view: View, sub: SubscriptionOverview, m: MeasurementDetail, selected: bool) -> str:
    href = view.link("/subscriptions/" + segment(sub.name), tab="drift", feature=m.feature)
    kind = (m.details or {}).get("kind", "")
    verdict = "drifting" if m.breached else "stable"
    classes = " ".join(c for c, on in (("selected", selected), ("drifting", m.breached)) if on)
    return (
        f'<li data-feature="{e(m.feature)}" data-drifted="{"true" if m.breached else "false"}" '
        f'data-score="{score_attr(m.value)}" class="{classes}">'
        f'<a href="{e(href)}" data-inplace>{e(m.feature)}</a> '
        f'<span class="muted">{e(kind)} · {e(m.metric)} {e(number(m.value))} '
        f"({e((m.threshold_type or '').replace('_', ' '))} {e(number(m.threshold))}) · {verdict}</span></li>"
    )


def render(view: View, conn: Connection, sub: SubscriptionOverview, feature: str | None) -> str:
    if chip_of(sub, "drift") is None:
        return not_enabled(sub, "drift")
    r = view.range
    latest = reads.latest_details(conn, sub.id, "drift", start=r.start, end=r.end)
    features = ordered([m for m in latest if m.feature is not None])
    if not features:
        return no_measurements(sub, "drift", r.describe())
    selected = next((m for m in features if m.feature == feature), features[0])
    drifting = sum(1 for m in features if m.breached)
    items = "".join(_item(view, sub, m, m is selected) for m in features)
    out = [
        '<div class="drift">',
        f'<div class="drift-list"><h2>features <span class="muted">{drifting} of {len(features)} drifting · '
        f"evaluation #{latest[0].evaluation_id}, {e(when(latest[0].measured_at))}</span></h2>"
        f'<ol id="drift-features">{items}</ol></div>',
        '<div class="drift-charts">',
        figure(
            distribution(selected),
            f"{selected.feature}: reference vs current ({selected.metric} {number(selected.value)})",
            id="drift-distribution",
            data_feature=selected.feature,
        ),
    ]
    history = reads.measurement_history(conn, sub.id, "drift", start=r.start, end=r.end, feature=selected.feature)
    history = [p for p in history if p.metric == selected.metric]
    out.append(
        figure(
            charts.time_series(
                [series(str(selected.feature), history)],
                thresholds=thresholds(history),
                y_label=selected.metric,
                start=r.start,
            ),
            f"{selected.feature}: {selected.metric} over time",
            id="drift-history",
            data_feature=selected.feature,
        )
    )
    share = reads.measurement_history(conn, sub.id, "drift", start=r.start, end=r.end, metric=SHARE)
    share = [p for p in share if p.feature is None]
    if share:
        out.append(
            figure(
                charts.time_series(
                    [series("share of drifting features", share)], thresholds=thresholds(share), start=r.start
                ),
                "share of drifting features over time",
                id="drift-share",
                class_="metric-history",
                data_metric=SHARE,
            )
        )
    else:
        out.append(empty("no drift share in this range"))
    out.append("</div></div>")
    return "".join(out)
