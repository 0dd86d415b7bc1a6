"""What every page is rendered with: where the dashboard and the REST API are (as the browser
sees them: the dashboard may be mounted anywhere), who is looking, the time range, the polling
period. Links are built from the request's ``root_path``, never from a hard-coded absolute path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from openmart.dashboard.html import url
from openmart.dashboard.timerange import TimeRange
from openmart.mart.api_keys import Scope
from openmart.service.auth import CSRF_COOKIE, Principal

POLL_MS = 5000
MIN_POLL_MS = 250  # tests poll fast; nobody needs faster


def root_of(request: Request) -> str:
    """The dashboard's path prefix as the browser sees it: ``""`` at a server's root, else e.g.
    ``/dashboard`` or ``/monitoring`` (where the app is mounted, behind any proxy prefix)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def api_of(request: Request, api_prefix: str | None) -> str:
    """Where the alert buttons post: the service's API when given, else the dashboard's own."""
    return api_prefix.rstrip("/") if api_prefix is not None else root_of(request) + "/api/v1"


def cookie_path(root: str, api: str) -> str:
    """The narrowest path covering the dashboard and the API it calls: the cookies go nowhere else."""
    common: list[str] = []
    for a, b in zip((root or "/").split("/")[1:], api.split("/")[1:], strict=False):
        if a != b:
            break
        common.append(a)
    return "/" + "/".join(c for c in common if c)


def poll_ms(value: str | None) -> int:
    try:
        return max(MIN_POLL_MS, int(value)) if value else POLL_MS
    except ValueError:
        return POLL_MS


@dataclass(frozen=True)
class View:
    root: str
    api: str
    principal: Principal
    range: TimeRange
    poll_ms: int
    csrf: str
    poll_override: bool = False  # ?poll= was given: links keep it

    @classmethod
    def of(cls, request: Request, principal: Principal, time_range: TimeRange, api_prefix: str | None) -> View:
        poll = request.query_params.get("poll")
        return cls(
            root=root_of(request),
            api=api_of(request, api_prefix),
            principal=principal,
            range=time_range,
            poll_ms=poll_ms(poll),
            csrf=request.cookies.get(CSRF_COOKIE, ""),
            poll_override=bool(poll),
        )

    @property
    def can_write(self) -> bool:
        return self.principal.scope >= Scope.WRITE

    def link(self, path: str, *, keep_range: bool = True, **params: Any) -> str:
        """A link inside the dashboard: ``path`` relative to its root, with the range (and the
        polling override) kept."""
        query: dict[str, Any] = {}
        query.update(params)
        if keep_range:
            query.update(self.range.params())
        if self.poll_override:
            query["poll"] = self.poll_ms
        return url(self.root + path, query)

    def static(self, name: str) -> str:
        return f"{self.root}/static/{name}"
