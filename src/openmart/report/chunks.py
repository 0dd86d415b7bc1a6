"""The report's chunks section: the newest chunked evaluation (``openmart evaluate --chunk-by``,
docs/chunks.md), one small chart per metric — its value in each chunk, the breached chunks in
red, and the learned threshold band when the metric has one (else its fixed limit)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import pandas as pd

from openmart.report import charts

if TYPE_CHECKING:
    from openmart.api import Subscription

#: at most this many charts: the dataset-level metrics first (a per-feature one is drift's)
MAX_CHARTS = 6


def chunk_series(title: str, frame: pd.DataFrame) -> str:
    """Values by chunk, the band lower..upper shaded (or the fixed threshold dashed)."""
    fig, ax = plt.subplots(figsize=(5.2, 2.4))
    xs = frame["chunk"].astype(int).tolist()
    ax.plot(xs, frame["value"].astype(float), marker="o", color=charts.OK, lw=1.5)
    bad = frame[frame["breached"].astype(bool)]
    ax.plot(bad["chunk"].astype(int), bad["value"].astype(float), "o", color=charts.BAD, ms=8, ls="none")
    lower, upper = frame["lower"].astype(float), frame["upper"].astype(float)
    if lower.notna().any():
        ax.fill_between(xs, lower, upper, color=charts.REF, alpha=0.2, label="learned band")
        ax.legend(loc="best", frameon=False)
    elif frame["threshold"].notna().any():
        ax.axhline(float(frame["threshold"].dropna().iloc[0]), ls="--", color=charts.BAD, lw=1)
    ax.set_title(title)
    ax.set_xlabel("chunk")
    ax.set_xticks(xs)
    return charts._svg(fig)


def _band(details: Any, side: str) -> float | None:
    band = (details or {}).get("learned") if isinstance(details, dict) else None
    return band.get(side) if band else None


def section(sub: Subscription) -> str:
    chunked = [e for e in sub.evaluations(status="finished", limit=50) if e.kind == "chunked"]
    if not chunked:
        return "<p>No chunked evaluation yet (<code>openmart evaluate SUB --chunk-by 1d</code>).</p>"
    newest = chunked[0]
    rows = sub.measurements(evaluation_id=newest.id)
    if rows.empty:
        return f"<p>Chunked evaluation {newest.id} measured nothing.</p>"
    rows = rows.assign(
        lower=[_band(d, "lower") for d in rows["details"]], upper=[_band(d, "upper") for d in rows["details"]]
    )
    head = (
        f'<p class="meta">evaluation {newest.id} · {html.escape(str(newest.chunking))} · '
        f"{rows['chunk'].nunique()} chunks · {newest.records} records</p>"
    )
    series = rows[rows["feature"].isna()].groupby(["monitor", "metric"], sort=False)
    parts = [head]
    for (monitor, metric), frame in list(series)[:MAX_CHARTS]:
        if frame["value"].notna().any():
            parts.append(f'<div class="chart">{chunk_series(f"{monitor}.{metric}", frame.sort_values("chunk"))}</div>')
    return "".join(parts)
