"""Building HTML by hand, safely: every value that reaches a page goes through :func:`e` (text)
or :func:`attrs` (attributes). Subscription names are slugs, but feature names, categories,
messages and notes are users' data and may hold ``<script>``: they are escaped, never trusted.

Pieces are plain strings: a page is small (a few tens of kilobytes), so a template engine would
add a dependency and a startup cost for nothing."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode


def e(value: Any) -> str:
    """Text for an element's content or a quoted attribute value."""
    return html.escape("" if value is None else str(value), quote=True)


def attrs(values: Mapping[str, Any]) -> str:
    """`` name="value"`` pairs; None leaves an attribute out, True writes it bare."""
    out = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        out.append(f" {name}" if value is True else f' {name}="{e(value)}"')
    return "".join(out)


def tag(name: str, content: str = "", /, **attributes: Any) -> str:
    """An element around already-safe ``content``; ``class_`` and ``data_x`` become ``class`` and ``data-x``."""
    fixed = {k.rstrip("_").replace("_", "-"): v for k, v in attributes.items()}
    return f"<{name}{attrs(fixed)}>{content}</{name}>"


def url(path: str, params: Mapping[str, Any] | None = None) -> str:
    """A link: ``path`` (already built from quoted parts) and its query, empty values left out."""
    query = urlencode({k: v for k, v in (params or {}).items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def segment(value: str) -> str:
    """One path segment of a URL (a subscription name)."""
    return quote(value, safe="")


def when(at: datetime | None) -> str:
    """A time as people read it (UTC, to the second); an em dash when there is none."""
    if at is None:
        return "—"
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at.tzinfo else at.strftime("%Y-%m-%d %H:%M:%S")


def iso(at: datetime | None) -> str:
    return "" if at is None else at.isoformat()


def number(value: float | int | None, digits: int = 4) -> str:
    """A measurement as text: integers as they are, others to ``digits`` significant figures."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}g}"


def table(head: Iterable[str], rows: Iterable[str], **attributes: Any) -> str:
    """A table from header labels (escaped here) and rows (already-built ``<tr>``)."""
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    return tag("table", f"<thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody>", **attributes)


def empty(message: str, command: str | None = None) -> str:
    """An empty state that says what to do."""
    hint = f" <code>{e(command)}</code>" if command else ""
    return f'<p class="empty">{e(message)}{hint}</p>'


def figure(svg: str, caption: str, **attributes: Any) -> str:
    return tag("figure", f"{svg}<figcaption>{e(caption)}</figcaption>", **attributes)
