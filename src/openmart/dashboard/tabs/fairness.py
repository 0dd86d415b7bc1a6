"""Fairness: each protected attribute's disparate impact over time (its other metrics folded
below it), the newest evaluation's favourable rates per group, and the flip test (the monitored
group's records re-scored with the attribute switched)."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from sqlalchemy.engine import Connection

from openmart.dashboard import charts
from openmart.dashboard.html import e, empty, figure, number, table, when
from openmart.dashboard.tabs.common import chip_of, no_measurements, not_enabled, series, thresholds
from openmart.dashboard.view import View
from openmart.mart import dashboard as reads
from openmart.mart.dashboard import MeasurementDetail, MeasurementPoint, SubscriptionOverview

HEADLINE = "disparate_impact"


def _figure(feature: str, metric: str, points: list[MeasurementPoint], view: View) -> str:
    svg = charts.time_series(
        [series(f"{metric} ({feature})", points)], thresholds=thresholds(points), y_label=metric, start=view.range.start
    )
    last = points[-1]
    caption = f"{feature}: {metric} {number(last.value)}{' — breached' if last.breached else ''}"
    return figure(svg, caption, class_="metric-history", data_metric=metric, data_feature=feature)


def _rates(details: dict[str, Any]) -> str:
    rates = details.get("rates") or {}
    rows = []
    for group in ("monitored", "reference"):
        r = rates.get(group) or {}
        values = ", ".join(map(str, details.get(group) or []))
        rows.append(
            f"<tr><td>{group}</td><td>{e(values)}</td><td>{number(r.get('records'))}</td>"
            f"<td>{number(r.get('favourable_percent'), 3)}%</td></tr>"
        )
    return table(("group", "values", "records", "favourable"), rows, class_="rates")


def _flip(sub: str, m: MeasurementDetail, flip_rate: float | None) -> str:
    p = (m.details or {}).get("perturbation")
    head = f"<h3>{e(m.feature)}</h3>"
    if not p:
        return head + empty(
            "no flip test in this evaluation: enable it with",
            f"openmart monitor enable {sub} fairness --option perturb=true ...",
        )
    if "error" in p:
        return head + f'<p class="bad">the flip test failed: {e(p["error"])}</p>'
    rate = f"{flip_rate * 100:.1f}%" if flip_rate is not None else "—"
    return head + (
        f'<p data-feature="{e(m.feature)}" class="flip">{number(p.get("records"))} records re-scored with '
        f"{e(m.feature)} switched ({number(p.get('scoring_calls'))} scoring calls): "
        f"<strong>{number(p.get('flips_monitored_to_reference'))}</strong> of "
        f"{number(p.get('monitored_records'))} monitored records changed outcome as if in the reference group "
        f"(flip rate {rate}); {number(p.get('flips_reference_to_monitored'))} reference records changed the "
        "other way.</p>"
    )


def render(view: View, conn: Connection, sub: SubscriptionOverview, feature: str | None) -> str:
    if chip_of(sub, "fairness") is None:
        return not_enabled(sub, "fairness", " --option attributes=...")
    r = view.range
    points = [p for p in reads.measurement_history(conn, sub.id, "fairness", start=r.start, end=r.end) if p.feature]
    if not points:
        return no_measurements(sub, "fairness", r.describe())
    out = []
    for attr, group in groupby(sorted(points, key=lambda p: str(p.feature)), key=lambda p: str(p.feature)):
        by_metric: dict[str, list[MeasurementPoint]] = {}
        for p in group:  # sorted by feature only: stable, so each metric's points stay oldest first
            by_metric.setdefault(p.metric, []).append(p)
        head = by_metric.pop(HEADLINE, None)
        out.append(f'<section class="attribute" data-feature="{e(attr)}"><h2>{e(attr)}</h2><div class="grid">')
        if head:
            out.append(_figure(attr, HEADLINE, head, view))
        out.append("</div>")
        if by_metric:
            others = "".join(_figure(attr, metric, pts, view) for metric, pts in sorted(by_metric.items()))
            out.append(
                f'<details><summary>{len(by_metric)} more metrics</summary><div class="grid">{others}</div></details>'
            )
        out.append("</section>")
    latest = reads.latest_details(conn, sub.id, "fairness", start=r.start, end=r.end)
    heads = [m for m in latest if m.metric == HEADLINE and m.feature]
    flips = {m.feature: m.value for m in latest if m.metric == "perturbation_flip_rate"}
    flip_html = "".join(_flip(sub.name, m, flips.get(m.feature)) for m in heads) or empty(
        "no fairness details in this range"
    )
    rates = "".join(f"<h3>{e(m.feature)}</h3>{_rates(m.details or {})}" for m in heads if m.details)
    evaluation = f"evaluation #{latest[0].evaluation_id}, {when(latest[0].measured_at)}" if latest else ""
    out.append(
        f'<section id="flip-test"><h2>flip test <span class="muted">{e(evaluation)}</span></h2>{flip_html}</section>'
    )
    if rates:
        out.append(f'<section id="group-rates"><h2>favourable rates by group</h2>{rates}</section>')
    return "".join(out)
