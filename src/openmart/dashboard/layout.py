"""The page around the content: head (the package's own CSS and script, nothing from elsewhere),
the top bar, ``div#flash`` for messages, and ``<main>``, whose contents live updates replace.
The login page too."""

from __future__ import annotations

from openmart import __version__
from openmart.dashboard.html import attrs, e
from openmart.dashboard.timerange import CUSTOM, RANGES
from openmart.dashboard.view import View


def page(
    view: View,
    title: str,
    main: str,
    *,
    change_token: str,
    changes_url: str,
    back: str | None = None,
) -> str:
    body = attrs(
        {
            "data-change-token": change_token,
            "data-poll-ms": view.poll_ms,
            "data-changes-url": changes_url,
            "data-api": view.api,
        }
    )
    who = f"{view.principal.name} ({view.principal.scope})"
    logout = (
        f'<form method="post" action="{e(view.root)}/logout" class="logout">'
        f'<input type="hidden" name="csrf" value="{e(view.csrf)}"><button type="submit">log out</button></form>'
        if view.principal.key_id is not None
        else ""
    )
    crumbs = f'<a href="{e(view.link("/"))}">subscriptions</a>' + (f" / {e(back)}" if back else "")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # else browsers ask for /favicon.ico and log its 404 as an error
        f'<meta name="csrf-token" content="{e(view.csrf)}">'
        f"<title>{e(title)} · openmart</title>"
        f'<link rel="stylesheet" href="{e(view.static("dashboard.css"))}">'
        f'<script src="{e(view.static("dashboard.js"))}" defer></script>'
        f"</head><body{body}>"
        f'<header class="top"><span class="brand">openmart</span><nav class="crumbs">{crumbs}</nav>'
        f'<span class="who" title="openmart {e(__version__)}">{e(who)}</span>{logout}</header>'
        '<div id="flash" role="alert" aria-live="polite"></div>'
        f"<main>{main}</main></body></html>"
    )


def range_picker(view: View, hidden: dict[str, str | None]) -> str:
    """``form#range``: a select that navigates on change (the script submits it; without
    script, the button does). ``hidden``: what else the page's URL holds (tab, feature)."""
    options = "".join(f'<option value="{k}"{" selected" if k == view.range.key else ""}>{k}</option>' for k in RANGES)
    if view.range.key == CUSTOM:
        options += f'<option value="{CUSTOM}" selected>{e(view.range.describe())}</option>'
        hidden = {**hidden, **{k: v for k, v in view.range.params().items() if k != "range"}}
    if view.poll_override:
        hidden = {**hidden, "poll": str(view.poll_ms)}
    fields = "".join(
        f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in hidden.items() if v not in (None, "")
    )
    return (
        f'<form id="range" method="get" class="range"><label>range <select name="range">{options}</select></label>'
        f'{fields}<noscript><button type="submit">show</button></noscript></form>'
    )


def latest(evaluation_id: int | None, at: str, status: str | None = None) -> str:
    """``span#latest-evaluation``: the newest evaluation this page reflects, and its status (one
    still running is said to be, since its results are not on the page yet)."""
    running = " (running)" if status == "running" else ""
    text = f"latest evaluation #{evaluation_id}{running} · {at}" if evaluation_id is not None else "no evaluation yet"
    return (
        f'<span id="latest-evaluation" data-evaluation-id="{"" if evaluation_id is None else evaluation_id}"'
        f' data-evaluation-status="{e(status or "")}">{e(text)}</span>'
    )


def login(root: str, next_url: str, message: str | None = None) -> str:
    note = f'<p class="error" role="alert">{e(message)}</p>' if message else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        "<title>log in · openmart</title>"
        f'<link rel="stylesheet" href="{e(root)}/static/dashboard.css"></head>'
        '<body class="login-page" data-change-token="" data-poll-ms="0"><main>'
        "<h1>openmart</h1><p>Paste an API key (<code>openmart keys create NAME --scope read</code>). "
        "The key stays here: the browser keeps a session token instead, which dies with the key.</p>"
        f"{note}"
        f'<form id="login" method="post" action="{e(root)}/login">'
        f'<input type="hidden" name="next" value="{e(next_url)}">'
        '<label>API key <input name="key" type="password" autocomplete="current-password" required autofocus></label>'
        '<button type="submit">log in</button></form></main></body></html>'
    )


def not_found(view: View, message: str) -> str:
    return page(
        view,
        "not found",
        f'<h1>not found</h1><p class="empty">{e(message)}</p>',
        change_token="",
        changes_url=f"{view.root}/changes",
    )
