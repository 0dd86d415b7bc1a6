"""A subscription page's tabs, one module each. A tab reads only what it draws, within the
page's time range; the page renders only its active tab."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection

from openmart.dashboard.view import View
from openmart.mart.dashboard import SubscriptionOverview

TABS = ("quality", "drift", "fairness", "performance", "explanations", "alerts")
#: the tab that shows a monitor's results (custom monitors have none: their chip links nowhere)
MONITOR_TABS = {
    "quality": "quality",
    "drift": "drift",
    "fairness": "fairness",
    "performance": "performance",
    "explainability": "explanations",
}

Renderer = Callable[[View, Connection, SubscriptionOverview, str | None], str]


def tab_of_monitor(kind: str) -> str | None:
    return MONITOR_TABS.get(kind)


def render_tab(tab: str, view: View, conn: Connection, sub: SubscriptionOverview, feature: str | None) -> str:
    # imported here: a page needs one tab's module, and `import openmart.dashboard` stays light
    from openmart.dashboard.tabs import alerts, drift, explanations, fairness, performance, quality

    renderers: dict[str, Renderer] = {
        "quality": quality.render,
        "drift": drift.render,
        "fairness": fairness.render,
        "performance": performance.render,
        "explanations": explanations.render,
        "alerts": alerts.render,
    }
    return renderers[tab](view, conn, sub, feature)
