"""The report's slices section: the slices that cost the most (``sub.slices()``), a table and a
bar chart of their impact. docs/slices.md."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from openmart.errors import ValidationError
from openmart.report import charts

if TYPE_CHECKING:
    from openmart.api import Subscription


def _n(value: object) -> str:
    return "n/a" if value is None else f"{value:,.3g}" if isinstance(value, float) else html.escape(str(value))


def section(sub: Subscription, top: int = 10) -> str:
    try:
        result = sub.slices(top=top)
    except ValidationError as exc:  # e.g. a metric the problem type has no slice form of
        return f'<p class="empty">{html.escape(str(exc))}</p>'
    if not result.records:
        return '<p class="empty">no labelled records with a prediction yet</p>'
    head = (
        f"<p>{html.escape(result.metric)} {_n(result.overall)} over {result.records:,} labelled records; "
        f"{len(result.tested):,} slices tested, significant after Benjamini–Hochberg at "
        f"{result.settings['alpha']:g}, ranked by impact (share × shortfall against the rest)</p>"
    )
    if result.frame.empty:
        return head + '<p class="empty">no slice is significantly worse than the rest</p>'
    cols = ["slice", "records", "value", "rest", "impact", "q_value"]
    body = "".join(
        "<tr>" + "".join(f"<td>{_n(r[c])}</td>" for c in cols) + "</tr>" for r in result.frame.to_dict("records")
    )
    table = "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + f"</tr>{body}</table>"
    chart = charts.bars(
        f"impact on {result.metric}",
        [s if len(s) <= 40 else s[:39] + "…" for s in result.frame["slice"]],
        result.frame["impact"].tolist(),
        xlabel="share × shortfall",
    )
    return head + f'<div class="grid"><div class="chart">{chart}</div><div>{table}</div></div>'
