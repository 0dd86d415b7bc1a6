"""Quality: each metric's history with its threshold, and the newest confusion matrix."""

from __future__ import annotations

from itertools import groupby

from sqlalchemy.engine import Connection

from openmart.dashboard import charts
from openmart.dashboard.html import e, figure, number
from openmart.dashboard.tabs.common import chip_of, no_measurements, not_enabled, series, thresholds
from openmart.dashboard.view import View
from openmart.mart import dashboard as reads
from openmart.mart.dashboard import SubscriptionOverview


def render(view: View, conn: Connection, sub: SubscriptionOverview, feature: str | None) -> str:
    if chip_of(sub, "quality") is None:
        return not_enabled(sub, "quality")
    r = view.range
    points = reads.measurement_history(conn, sub.id, "quality", start=r.start, end=r.end)
    if not points:
        return no_measurements(sub, "quality", r.describe())
    out = ['<div class="grid">']
    for metric, group in groupby(sorted(points, key=lambda p: p.metric), key=lambda p: p.metric):
        pts = [p for p in group if p.feature is None]
        if not pts:
            continue
        svg = charts.time_series([series(metric, pts)], thresholds=thresholds(pts), y_label=metric, start=r.start)
        last = pts[-1]
        caption = f"{metric}: {number(last.value)}{' — breached' if last.breached else ''}"
        out.append(figure(svg, caption, class_="metric-history", data_metric=metric))
    out.append("</div>")
    details = reads.latest_details(conn, sub.id, "quality", start=r.start, end=r.end)
    cm = next((d.details["confusion_matrix"] for d in details if d.details and "confusion_matrix" in d.details), None)
    if cm:
        svg = charts.matrix([str(x) for x in cm["labels"]], cm["matrix"])
        out.append(f'<h2>confusion matrix <span class="muted">evaluation #{e(details[0].evaluation_id)}</span></h2>')
        out.append(figure(svg, "rows: actual, columns: predicted", id="confusion-matrix"))
    return "".join(out)
