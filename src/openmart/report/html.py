"""``openmart report SUB``: one self-contained HTML file (inline SVG charts, no script, no
network): metrics over time with thresholds, drift per feature, fairness by group, quality with
the confusion matrix, performance (throughput and latency over time), recent alerts, explanations."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from openmart.report import charts, chunks, comparisons, performance, slices

if TYPE_CHECKING:
    from openmart.api import Subscription

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1180px;color:#222}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2rem}
.meta{color:#666} .grid{display:flex;flex-wrap:wrap;gap:1rem} .chart{flex:0 0 auto}
table{border-collapse:collapse;font-size:.85rem} td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
.bad{color:#c0392b;font-weight:600} .ok{color:#2b7a78} .empty{color:#888;font-style:italic}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return '<p class="empty">none</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _chart(svg: str) -> str:
    return f'<div class="chart">{svg}</div>'


def _over_time(history: pd.DataFrame) -> str:
    if history.empty:
        return '<p class="empty">no evaluations yet</p>'
    series = history[history["feature"].isna() | (history["monitor"] == "fairness")]
    keep = series[
        series["metric"].isin(
            [
                "roc_auc",
                "accuracy",
                "f1",
                "log_loss",
                "r2",
                "rmse",
                "disparate_impact",
                "statistical_parity_difference",
                "share_of_drifted_features",
                "attribution_ndcg",
            ]
        )
    ]
    out = []
    for (monitor, metric, feature), g in keep.groupby(["monitor", "metric", "feature"], dropna=False, sort=False):
        g = g.sort_values("evaluation_id")
        title = f"{monitor} · {metric}" + (f" [{feature}]" if isinstance(feature, str) else "")
        last = g.iloc[-1]
        threshold = None if pd.isna(last["threshold"]) else float(last["threshold"])
        out.append(
            _chart(
                charts.time_series(
                    title,
                    g["measured_at"].tolist(),
                    [None if pd.isna(v) else float(v) for v in g["value"]],
                    threshold,
                    last["threshold_type"],
                    g["breached"].astype(bool).tolist(),
                )
            )
        )
    return f'<div class="grid">{"".join(out)}</div>' if out else '<p class="empty">no metrics yet</p>'


def _latest(history: pd.DataFrame) -> pd.DataFrame:
    if history.empty:
        return history
    return history[history["evaluation_id"] == history["evaluation_id"].max()]


def _drift(latest: pd.DataFrame) -> str:
    rows = latest[(latest["monitor"] == "drift") & latest["feature"].notna()]
    if rows.empty:
        return '<p class="empty">drift not evaluated</p>'
    rows = rows.sort_values("breached", ascending=False)
    out = []
    for r in rows.head(16).itertuples():
        h = (r.details or {}).get("histogram") or {}
        if "categories" in h:
            labels = [str(c) for c in h["categories"]]
        elif "edges" in h:
            edges = h["edges"]
            labels = (
                (
                    [f"<{edges[0]:.3g}"]
                    + [f"{a:.3g}–{b:.3g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
                    + [f"≥{edges[-1]:.3g}"]
                )
                if edges
                else ["all"]
            )
        else:
            continue
        value = "n/a" if pd.isna(r.value) else f"{r.value:.3g}"
        out.append(
            _chart(
                charts.distribution(
                    f"{r.feature}: {r.metric} {value}",
                    labels,
                    h.get("reference", []),
                    h.get("current", []),
                    bool(r.breached),
                )
            )
        )
    return f'<div class="grid">{"".join(out)}</div>'


def _fairness(latest: pd.DataFrame) -> str:
    rows = latest[(latest["monitor"] == "fairness") & (latest["metric"] == "disparate_impact")]
    if rows.empty:
        return '<p class="empty">fairness not evaluated</p>'
    out = []
    for r in rows.itertuples():
        d = r.details or {}
        by_value = d.get("by_value") or {}
        labels = [f"{k} ({v['records']})" for k, v in by_value.items() if v.get("favourable_percent") is not None]
        values = [v["favourable_percent"] for v in by_value.values() if v.get("favourable_percent") is not None]
        monitored = {str(x) if not isinstance(x, list) else f"{x[0]:g}-{x[1]:g}" for x in d.get("monitored", [])}
        flags = [lab.split(" (")[0] in monitored for lab in labels]
        di = "n/a" if pd.isna(r.value) else f"{r.value:.3f}"
        if labels:
            out.append(
                _chart(
                    charts.bars(
                        f"{r.feature}: favourable % by value (disparate impact {di})",
                        labels,
                        values,
                        highlight=flags,
                        xlabel="favourable outcomes, %",
                    )
                )
            )
        rates = d.get("rates") or {}
        debiased = d.get("debiased") or {}
        notes = [
            f"monitored {rates.get('monitored', {}).get('favourable_percent', 0) or 0:.1f}% vs reference "
            f"{rates.get('reference', {}).get('favourable_percent', 0) or 0:.1f}% favourable"
        ]
        if d.get("perturbation"):
            p = d["perturbation"]
            notes.append(
                f"perturbation: {p['flips_monitored_to_reference']} of {p['monitored_records']} monitored "
                f"outcomes flip when only {r.feature} changes ({p['scoring_calls']} scoring calls)"
            )
        if "disparate_impact_after" in debiased:
            notes.append(
                f"de-biased (EqOdds post-processing): disparate impact {debiased['disparate_impact_before']:.3f}"
                f" → {debiased['disparate_impact_after']:.3f}, accuracy {debiased['accuracy_before']:.3f} → "
                f"{debiased['accuracy_after']:.3f}"
            )
        out.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    return f'<div class="grid">{"".join(out)}</div>'


def _quality(latest: pd.DataFrame) -> str:
    rows = latest[latest["monitor"] == "quality"]
    if rows.empty:
        return '<p class="empty">quality not evaluated</p>'
    table = _table(
        [
            {
                "metric": r.metric,
                "value": "n/a" if pd.isna(r.value) else f"{r.value:.4f}",
                "threshold": "" if pd.isna(r.threshold) else f"{r.threshold:g}",
                "breached": "BREACHED" if r.breached else "",
            }
            for r in rows.itertuples()
        ],
        ["metric", "value", "threshold", "breached"],
    )
    cm = next(
        (
            (r.details or {}).get("confusion_matrix")
            for r in rows.itertuples()
            if (r.details or {}).get("confusion_matrix")
        ),
        None,
    )
    chart = _chart(charts.confusion(cm["labels"], cm["matrix"])) if cm else ""
    return f'<div class="grid"><div>{table}</div>{chart}</div>'


def _explanations(sub: Subscription) -> str:
    frame = pd.DataFrame(sub.explanations(limit=6))
    if frame.empty:
        return '<p class="empty">no explanations stored</p>'
    out = [
        _chart(charts.signed_bars(f"{r.method} · {r.scoring_id[:13]} → {r.prediction}", r.attributions))
        for r in frame.itertuples()
    ]
    return f'<div class="grid">{"".join(out)}</div>'


def _data_quality(sub: Subscription) -> str:
    """The latest data-quality evaluation's constraint violations; nothing when the monitor is
    not enabled (docs/data-quality.md)."""
    from openmart.errors import NotFound

    if not any(c.kind == "data_quality" and c.enabled for c in sub.monitors.configs()):
        return ""
    head = "<h2>Data quality: constraint violations</h2>"
    try:
        evaluation = sub.constraints.latest_evaluation()
    except NotFound:
        return f'{head}<p class="empty">not evaluated yet</p>'
    found = sub.constraints.violations(evaluation)["violations"]
    note = f"<p>evaluation {evaluation}: {len(found)} violation(s)</p>"
    return head + note + (_table(found, ["feature_name", "constraint_check_type", "description"]) if found else "")


def render(sub: Subscription) -> str:
    history = sub.measurements()
    # comparisons of two record sets have a section of their own: the monitored stream's
    # history and latest evaluation are the monitoring evaluations'
    compared = {e.id for e in sub.evaluations() if e.kind == "comparison"}
    if compared and not history.empty:
        history = history[~history["evaluation_id"].isin(compared)]
    if "chunk" in history.columns:  # a chunked evaluation has its own section (chunks.section)
        history = history[history["chunk"].isna()]
    latest = _latest(history)
    alerts = sub.mart.alerts()
    alerts = alerts[alerts["subscription"] == sub.name].tail(20)
    alert_rows = [
        {
            "when": r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "monitor": r.monitor,
            "metric": r.metric,
            "message": r.message,
        }
        for r in alerts.itertuples()
    ]
    counts = {k: getattr(sub, k).count() for k in ("payload", "feedback", "reference")}
    breaches = latest[latest["breached"]] if not latest.empty else latest
    summary = (
        (
            f'<span class="bad">{len(breaches)} threshold(s) breached</span>'
            if len(breaches)
            else '<span class="ok">no threshold breached</span>'
        )
        if not latest.empty
        else "not evaluated yet"
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>openmart · {_e(sub.name)}</title><style>{CSS}</style></head>
<body>
<h1>openmart report · {_e(sub.name)}</h1>
<p class="meta">{_e(sub.schema.problem_type)} model · deployment {_e(sub.deployment_id)} on binding {_e(sub.binding)}
 · {counts["payload"]} payload, {counts["feedback"]} feedback, {counts["reference"]} reference records
 · generated {generated}</p>
<p>Latest evaluation: {summary}</p>
<h2>Alerts</h2>{_table(alert_rows, ["when", "monitor", "metric", "message"])}
<h2>Metrics over time</h2>{_over_time(history)}
<h2>Quality</h2>{_quality(latest)}
<h2>Fairness</h2>{_fairness(latest)}
<h2>Drift: reference against current</h2>{_drift(latest)}
{_data_quality(sub)}
<h2>Performance: throughput, latency, errors</h2>{performance.section(sub)}
<h2>Slices: where quality is worst</h2>{slices.section(sub)}
<h2>Comparisons: one record set against another</h2>{comparisons.section(sub)}
<h2>Chunks: the newest chunked evaluation</h2>{chunks.section(sub)}
<h2>Explanations</h2>{_explanations(sub)}
</body></html>
"""


def write_report(sub: Subscription, out: str | Path | None = None) -> Path:
    path = Path(out) if out else Path(f"openmart-report-{sub.name}.html")
    path.write_text(render(sub), encoding="utf-8")
    return path
