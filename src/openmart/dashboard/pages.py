"""The overview (every subscription, its monitors' chips and figures) and a subscription's page
(its chips, the tabs, the active tab's content). Each returns the contents of ``<main>`` and the
change token the page is current with; :mod:`openmart.dashboard.routes` wraps them in the layout.

The overview is one call to :func:`openmart.mart.dashboard.overview` (two queries, whatever the
number of subscriptions) and the change token (one query). A subscription page reads the same
overview for its chips and then only its active tab's data."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from openmart.dashboard import layout
from openmart.dashboard.html import e, number, segment, table, when
from openmart.dashboard.tabs import TABS, render_tab, tab_of_monitor
from openmart.dashboard.view import View
from openmart.mart import dashboard as reads
from openmart.mart.dashboard import ChipStatus, MonitorChip, SubscriptionOverview

WORST_FIRST = (ChipStatus.FAILED, ChipStatus.BREACHED, ChipStatus.NO_DATA, ChipStatus.OK)


@dataclass(frozen=True)
class Rendered:
    main: str
    change_token: str
    title: str


def _order(sub: SubscriptionOverview) -> tuple[int, str]:
    worst = sub.worst
    return (WORST_FIRST.index(worst) if worst is not None else len(WORST_FIRST), sub.name)


def chip(view: View, sub: SubscriptionOverview, c: MonitorChip) -> str:
    status = str(c.status)
    title = status.replace("_", " ")
    if c.status is ChipStatus.BREACHED:
        title += f": {c.breached} measurement{'s' if c.breached != 1 else ''} past threshold"
    if c.reason:
        title += f": {c.reason}"
    if c.evaluated_at is not None:
        title += f" (evaluation #{c.evaluation_id}, {when(c.evaluated_at)})"
    span = (
        f'<span class="chip chip-{status}" data-monitor="{e(c.kind)}" data-status="{status}" '
        f'title="{e(title)}">{e(c.kind)}</span>'
    )
    tab = tab_of_monitor(c.kind)
    if tab is None:
        return span
    return f'<a class="chip-link" href="{e(view.link("/subscriptions/" + segment(sub.name), tab=tab))}">{span}</a>'


def chips(view: View, sub: SubscriptionOverview) -> str:
    if not sub.chips:
        return f'<span class="muted" title="openmart monitor enable {e(sub.name)} drift">no monitors</span>'
    return "".join(chip(view, sub, c) for c in sub.chips)


def _row(view: View, sub: SubscriptionOverview) -> str:
    href = view.link("/subscriptions/" + segment(sub.name))
    where = " · ".join(e(x) for x in (sub.binding, sub.deployment) if x)
    status = "" if sub.worst is None else str(sub.worst)
    last = when(sub.last_evaluation_at)
    if sub.last_evaluation_status and sub.last_evaluation_status != "finished":
        last += f" ({sub.last_evaluation_status})"
    alerts_cls = ' class="bad"' if sub.open_alerts else ""
    failed_cls = ' class="bad"' if sub.failed_deliveries else ""
    return (
        f'<tr data-subscription="{e(sub.name)}" data-status="{status}">'
        f'<td><a class="subscription-link" href="{e(href)}">{e(sub.name)}</a>'
        f'<div class="muted">{e(sub.problem_type)}{" · " + where if where else ""}</div></td>'
        f'<td class="chips">{chips(view, sub)}</td>'
        f'<td data-field="last-evaluation" data-evaluation-id="{sub.last_evaluation_id or ""}">{e(last)}</td>'
        f'<td data-field="open-alerts"{alerts_cls}>{sub.open_alerts}</td>'
        f'<td data-field="traffic">{number(sub.traffic_last_day)}</td>'
        f'<td data-field="failed-deliveries"{failed_cls}>{sub.failed_deliveries}</td></tr>'
    )


def _newest(subs: list[SubscriptionOverview]) -> SubscriptionOverview | None:
    evaluated = [s for s in subs if s.last_evaluation_id is not None]
    return max(evaluated, key=lambda s: s.last_evaluation_id or 0) if evaluated else None


def overview(view: View, conn: Connection) -> Rendered:
    subs = sorted(reads.overview(conn), key=_order)
    token = reads.change_token(conn)
    newest = _newest(subs)
    head = (
        '<div class="page-head"><h1>Subscriptions</h1>'
        + layout.latest(
            newest.last_evaluation_id if newest else None,
            when(newest.last_evaluation_at) if newest else "",
            newest.last_evaluation_status if newest else None,
        )
        + layout.range_picker(view, {})
        + "</div>"
    )
    if not subs:
        body = (
            '<p class="empty">No subscriptions yet: subscribe a deployment with '
            "<code>openmart subscribe NAME --reference data.csv --label LABEL</code>, or try "
            "<code>openmart quickstart</code>.</p>"
        )
        # the table is there even empty, so the page's shape does not depend on the data
        return Rendered(head + body + '<table id="subscriptions"></table>', token, "subscriptions")
    counts = {s: sum(1 for x in subs if x.worst is s) for s in WORST_FIRST}
    summary = " · ".join(f"{n} {str(s).replace('_', ' ')}" for s, n in counts.items() if n)
    rows = [_row(view, s) for s in subs]
    body = f'<p class="summary">{len(subs)} subscriptions · {e(summary)}</p>' + table(
        ("subscription", "monitors", "last evaluation", "open alerts", "records, last 24h", "failed deliveries"),
        rows,
        id="subscriptions",
    )
    return Rendered(head + body, token, "subscriptions")


def default_tab(sub: SubscriptionOverview) -> str:
    """Drift when its chip is breached, else the first breached monitor's tab, else quality."""
    breached = [c.kind for c in sub.chips if c.status is ChipStatus.BREACHED]
    if "drift" in breached:
        return "drift"
    for kind in breached:
        tab = tab_of_monitor(kind)
        if tab is not None:
            return tab
    return "quality"


def find(conn: Connection, name: str) -> SubscriptionOverview | None:
    return next((s for s in reads.overview(conn) if s.name == name), None)


def subscription(
    view: View, conn: Connection, sub: SubscriptionOverview, tab: str | None, feature: str | None
) -> Rendered:
    tab = tab if tab in TABS else default_tab(sub)
    token = reads.change_token(conn, sub.id)
    base = "/subscriptions/" + segment(sub.name)
    nav = "".join(
        f'<a data-tab="{t}" class="{"active" if t == tab else ""}" href="{e(view.link(base, tab=t))}"'
        f"{' aria-current=page' if t == tab else ''}>{t}</a>"
        for t in TABS
    )
    head = (
        f'<div class="page-head"><h1>{e(sub.name)}</h1>'
        + layout.latest(sub.last_evaluation_id, when(sub.last_evaluation_at), sub.last_evaluation_status)
        + layout.range_picker(view, {"tab": tab, "feature": feature})
        + "</div>"
        + f'<div class="sub-meta"><span class="chips">{chips(view, sub)}</span>'
        f'<span class="muted">{e(sub.problem_type)} · showing {e(view.range.describe())}</span></div>'
        + f'<nav class="tabs">{nav}</nav>'
    )
    content = render_tab(tab, view, conn, sub, feature)
    return Rendered(head + f'<section id="tab-{tab}" class="tab">{content}</section>', token, sub.name)
