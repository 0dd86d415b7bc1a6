"""The report's comparisons section: the newest stored comparisons of two record sets
(``sub.compare``, ``openmart compare``), each with quality and fairness on both sets, the
features that drifted between them, and a bar chart of baseline against target per quality
metric. docs/evaluation-store.md."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

from openmart.report import charts

if TYPE_CHECKING:
    from openmart.api import Subscription
    from openmart.evaluation.compare import Comparison


def _n(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _one(c: Comparison) -> str:
    target, baseline = c.target_description, c.baseline_description
    head = (
        f"<h3>{html.escape(target)} against {html.escape(baseline)}</h3>"
        f'<p class="meta">evaluations {", ".join(map(str, c.evaluation_ids))} · '
        f"{_n(c.target_records)} target records, {_n(c.baseline_records)} baseline records</p>"
    )
    frame = c.frame
    drift = frame[(frame["monitor"] == "drift") & frame["feature"].notna()]
    drifted = drift[drift["breached"]]
    parts = [head]
    if not drift.empty:
        names = ", ".join(
            f"{html.escape(str(r.feature))} ({html.escape(str(r.metric))} {r.value_kind} {_n(r.target)})"
            for r in drifted.itertuples()
        )
        parts.append(f"<p>drift: {len(drifted)} of {len(drift)} columns drifted{': ' + names if names else ''}</p>")
    measured = frame[frame["monitor"] != "drift"]
    if not measured.empty:
        cols = ["monitor", "metric", "group", "baseline", "target", "delta", "breached"]
        rows = [
            [
                r["monitor"],
                r["metric"],
                f"{r['feature']}={r['group']}" if r["group"] else "",
                _n(r["baseline"]),
                _n(r["target"]),
                _n(r["delta"]),
                "BREACHED" if r["breached"] else "",
            ]
            for r in measured.to_dict("records")
        ]
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
        table = "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + f"</tr>{body}</table>"
        quality = measured[measured["monitor"] == "quality"]
        chart = ""
        if not quality.empty:
            chart = (
                '<div class="chart">'
                + charts.paired_bars(
                    "quality: baseline and target",
                    quality["metric"].tolist(),
                    [None if math.isnan(v) else v for v in quality["baseline"]],
                    [None if math.isnan(v) else v for v in quality["target"]],
                    [baseline, target],
                )
                + "</div>"
            )
        parts.append(f'<div class="grid">{chart}<div>{table}</div></div>')
    parts += [
        f'<p class="empty">{html.escape(n["side"])} {html.escape(n["monitor"])}: '
        f"{html.escape(n['status'].replace('_', ' '))} ({html.escape(str(n['reason']))})</p>"
        for n in c.notes
    ]
    return "".join(parts)


def section(sub: Subscription, limit: int = 2) -> str:
    found = sub.comparisons(limit=limit)
    if not found:
        return '<p class="empty">no comparison yet (openmart compare SUB --target production:2)</p>'
    return "".join(_one(c) for c in found)
