"""Alerts: still-open alerts and those seen in the range, newest first, with their deliveries
and buttons that call the REST API (``POST <api>/alerts/{id}/acknowledge|resolve``). A key
without write scope sees the buttons disabled, saying why."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from openmart.dashboard.html import e, empty, table, when
from openmart.dashboard.view import View
from openmart.mart import dashboard as reads
from openmart.mart.alerts import AlertRecord, AlertStatus
from openmart.mart.dashboard import SubscriptionOverview

ACTIONS = {
    AlertStatus.OPEN: ("acknowledge", "resolve"),
    AlertStatus.ACKNOWLEDGED: ("resolve",),
    AlertStatus.RESOLVED: (),
}


def deliveries_of(conn: Connection, alert_ids: list[int]) -> dict[int, list[Any]]:
    try:  # alert delivery arrived with migration 0008; a checkout without its module shows none
        from openmart.mart import alert_deliveries
    except ImportError:
        return {}
    return alert_deliveries.for_alerts(conn, alert_ids)


def delivery_text(records: list[Any]) -> str:
    """``webhook: sent; email: failed (3 attempts)``: one entry per delivery, oldest first."""
    parts = []
    for d in records:
        event = "" if str(d.event) == "opened" else f" ({d.event})"
        status = str(d.status)
        if status in ("failed", "pending") and d.attempts:
            status += f" ({d.attempts} attempt{'s' if d.attempts != 1 else ''})"
        parts.append(f"{d.kind}{event}: {status}")
    return "; ".join(parts)


def _buttons(view: View, alert: AlertRecord) -> str:
    out = []
    for action in ACTIONS[alert.status]:
        if view.can_write:
            out.append(f'<button type="button" data-action="{action}" data-alert-id="{alert.id}">{action}</button>')
        else:
            why = f"needs a key with write scope; {view.principal.name!r} has {view.principal.scope}"
            out.append(
                f'<span title="{e(why)}"><button type="button" data-action="{action}" data-alert-id="{alert.id}" '
                f'disabled title="{e(why)}">{action}</button></span>'
            )
    return "".join(out)


def _row(view: View, alert: AlertRecord, deliveries: list[Any]) -> str:
    what = " · ".join(e(x) for x in (alert.monitor, alert.metric, alert.feature, alert.group) if x)
    state = str(alert.status)
    if alert.status is AlertStatus.ACKNOWLEDGED and alert.acknowledged_by:
        state += f" by {alert.acknowledged_by}"
    if alert.status is AlertStatus.RESOLVED:
        state += f" by {alert.resolved_by or 'a passing evaluation'}"
    channels = "; ".join(
        f"{d.channel} ({d.kind}): {d.status}" + (f" — {d.last_error}" if d.last_error else "") for d in deliveries
    )
    return (
        f'<tr data-alert-id="{alert.id}" data-status="{alert.status}">'
        f"<td>#{alert.id}</td><td>{what}</td><td>{e(alert.message)}</td>"
        f'<td data-field="status">{e(state)}</td><td>{alert.occurrences}</td>'
        f"<td>{e(when(alert.created_at))}<div class=muted>last {e(when(alert.last_seen_at))}</div></td>"
        f'<td data-field="deliveries" title="{e(channels)}">{e(delivery_text(deliveries)) or "—"}</td>'
        f'<td class="actions">{_buttons(view, alert)}</td></tr>'
    )


def render(view: View, conn: Connection, sub: SubscriptionOverview, feature: str | None) -> str:
    r = view.range
    alerts = reads.alerts_in_range(conn, sub.id, start=r.start, end=r.end)
    if not alerts:
        return empty(
            f"no alerts open or seen in {r.describe()}. An alert opens when a measurement breaches its threshold; "
            "list them all with",
            f"openmart alerts --subscription {sub.name} --status all",
        )
    deliveries = deliveries_of(conn, [a.id for a in alerts])
    note = (
        ""
        if view.can_write
        else f'<p class="muted">read-only: {e(view.principal.name)} has scope {e(view.principal.scope)}; '
        "acknowledging and resolving need write.</p>"
    )
    return note + table(
        ("id", "what", "message", "status", "seen", "opened", "deliveries", ""),
        [_row(view, a, deliveries.get(a.id, [])) for a in alerts],
        id="alerts",
    )
