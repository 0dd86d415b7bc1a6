"""Explanations: the newest stored explanations (``openmart explain``), each with its
attributions as bars and its contrastive answer (the smallest change that flips the outcome)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from openmart.dashboard import charts
from openmart.dashboard.html import e, empty, number, table, when
from openmart.dashboard.view import View
from openmart.mart import explanations
from openmart.mart.dashboard import SubscriptionOverview

LIMIT = 20
TOP_FEATURES = 8


def contrastive(answer: dict[str, Any] | None) -> str:
    if not answer:
        return '<span class="muted">not computed</span>'
    if not answer.get("found"):
        keep = ", ".join(map(str, answer.get("keep") or []))
        return e(
            f"no change within the reference's ranges flips it ({answer.get('candidates', 0)} tried)"
            + (f"; it rests on {keep}" if keep else "")
        )
    changes = "; ".join(f"{f}: {c.get('from')} → {c.get('to')}" for f, c in (answer.get("changes") or {}).items())
    new = answer.get("new_output")
    return e(f"flips if {changes}" + (f" (output {number(new)})" if new is not None else ""))


def _row(x: dict[str, Any]) -> str:
    ranked = sorted((x.get("attributions") or {}).items(), key=lambda kv: abs(float(kv[1] or 0)), reverse=True)
    top = ranked[:TOP_FEATURES]
    svg = charts.bars([str(k) for k, _ in top], [None if v is None else float(v) for _, v in top])
    more = f'<div class="muted">{len(ranked) - len(top)} more features</div>' if len(ranked) > len(top) else ""
    base = x.get("base_value")
    return (
        f'<tr data-scoring-id="{e(x["scoring_id"])}"><td><code>{e(x["scoring_id"])}</code>'
        f'<div class="muted">{e(when(x.get("created_at")))}</div></td>'
        f"<td>{e(x.get('prediction'))}</td><td>{e(x.get('method'))}"
        f"{f'<div class=muted>base {e(number(base))}</div>' if base is not None else ''}</td>"
        f'<td class="attributions">{svg}{more}</td>'
        f'<td class="contrastive">{contrastive(x.get("contrastive"))}</td></tr>'
    )


def render(view: View, conn: Connection, sub: SubscriptionOverview, feature: str | None) -> str:
    rows = explanations.recent(conn, sub.id, LIMIT)
    r = view.range
    rows = [
        x
        for x in rows
        if (r.start is None or x["created_at"] >= r.start) and (r.end is None or x["created_at"] < r.end)
    ]
    if not rows:
        return empty(
            f"no explanations in {r.describe()}: explain the newest records with",
            f"openmart explain {sub.name} --last 5",
        )
    return table(
        ("scoring id", "prediction", "method", "attributions", "what would change it"),
        [_row(x) for x in rows],
        id="explanations",
    )
