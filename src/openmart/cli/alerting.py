"""Alert delivery on the command line, under ``openmart alerts``: ``channel add|list|remove|
enable|disable|test``, ``deliveries``, ``retry``, ``deliver``. A thin layer over the Python API
(``sub.channels``, ``mart.deliveries``, ``mart.retry_delivery``, ``mart.deliver_alerts``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from openmart import arguments, secrets
from openmart.api import Mart
from openmart.cli.common import OpenmartGroup, emit_json, err, out, parse_settings, state
from openmart.errors import OpenmartError

channel_app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="""Alert channels: where a subscription's alerts are sent, one message when an alert opens and
one when it resolves. Secrets (the webhook URL, the SMTP password) are stored encrypted (needs a key:
`openmart secrets init`) and shown as ***.

Examples:

  openmart alerts channel add credit slack --kind webhook --set url=https://hooks.slack.com/services/T/B/X

  openmart alerts channel add credit ops --kind email --set host=smtp.example.org --set port=587 \\
      --set to=a@example.org,b@example.org --set from=openmart@example.org \\
      --set username=openmart --set password=...

  openmart alerts channel test credit slack
""",
)


def wide_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    """A table at its natural width, never narrower than the terminal: names and ids are never
    cut to fit 80 columns (a terminal wraps a long line; a pipe keeps it whole)."""
    table = Table(title=title)
    for c in columns:
        table.add_column(c, no_wrap=True)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else secrets.scrub_known(str(r.get(c))) for c in columns))
    natural = Measurement.get(out, out.options.update_width(100_000), table).maximum
    Console(width=max(out.width, natural), soft_wrap=True).print(table)


def _settings_text(settings: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())


@channel_app.command("add")
def channel_add(
    ctx: typer.Context,
    subscription: str = typer.Argument(..., help="The subscription whose alerts it receives."),
    name: str = typer.Argument(..., help="A name for the channel."),
    kind: str = typer.Option(..., "--kind", "-k", help="webhook (Slack-compatible JSON) or email (SMTP)."),
    settings: list[str] = typer.Option(
        [],
        "--set",
        help="A setting as key=value (repeat). webhook: url, timeout, public_url. email: host, port, to, from, "
        "username, password, tls (starttls|ssl|none), ca_file, timeout, subject_prefix, public_url.",
    ),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Add an alert channel to a subscription."""
    channel = state(ctx).mart.subscriptions.get(subscription).channels.add(name, kind, parse_settings(settings))
    if json_:
        emit_json(channel.to_dict())
    else:
        out.print(f"alert channel {channel.name!r} ({channel.kind}) added to {subscription!r}", highlight=False)


@channel_app.command("list")
def channel_list(
    ctx: typer.Context,
    subscription: str | None = typer.Argument(None, help="Only this subscription's (default: every one)."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List alert channels (secrets as ***)."""
    mart = state(ctx).mart
    subs = [mart.subscriptions.get(subscription)] if subscription else mart.subscriptions.list()
    rows = [c.to_dict() for sub in subs for c in sub.channels.list()]
    if json_:
        emit_json(rows)
        return
    wide_table(
        [{**r, "settings": _settings_text(r["settings"]), "enabled": "yes" if r["enabled"] else "no"} for r in rows],
        ["subscription", "name", "kind", "enabled", "settings"],
    )


@channel_app.command("remove")
def channel_remove(ctx: typer.Context, subscription: str, name: str) -> None:
    """Remove an alert channel (and its deliveries)."""
    state(ctx).mart.subscriptions.get(subscription).channels.remove(name)
    out.print(f"alert channel {name!r} of {subscription!r} removed", highlight=False)


@channel_app.command("enable")
def channel_enable(ctx: typer.Context, subscription: str, name: str) -> None:
    """Enable an alert channel (messages held while it was disabled go at the next pass)."""
    state(ctx).mart.subscriptions.get(subscription).channels.enable(name)
    out.print(f"alert channel {name!r} of {subscription!r} enabled", highlight=False)


@channel_app.command("disable")
def channel_disable(ctx: typer.Context, subscription: str, name: str) -> None:
    """Disable an alert channel: nothing new is queued to it, queued messages wait."""
    state(ctx).mart.subscriptions.get(subscription).channels.disable(name)
    out.print(f"alert channel {name!r} of {subscription!r} disabled", highlight=False)


@channel_app.command("test")
def channel_test(ctx: typer.Context, subscription: str, name: str) -> None:
    """Send a test message through the channel now (exit 1 with the reason when it is not taken)."""
    message = state(ctx).mart.subscriptions.get(subscription).channels.test(name)
    out.print(f"test message sent through {name!r}: {message.title}", highlight=False)


_DELIVERY_COLUMNS = [
    "id",
    "subscription",
    "channel",
    "kind",
    "alert_id",
    "event",
    "status",
    "attempts",
    "when",
    "last_error",
]


def deliveries(
    ctx: typer.Context,
    status: str = typer.Option("all", "--status", help="pending, sending, sent, failed or all."),
    subscription: str | None = typer.Option(None, "--subscription", "-s", help="Only this subscription's."),
    limit: int | None = typer.Option(None, "--limit", help="Only the newest N."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Messages about alerts, oldest first: one per alert, channel and event (opened, resolved),
    with their status, attempts and last error. A failed one is sent again by `openmart alerts retry ID`."""
    frame = state(ctx).mart.deliveries(status=status, subscription=subscription, limit=limit)
    rows = json.loads(frame.to_json(orient="records", date_format="iso")) if len(frame) else []
    if json_:
        emit_json(rows)
        return
    for r in rows:
        r["when"] = r["sent_at"] if r["status"] == "sent" else r["next_attempt_at"] if r["status"] == "pending" else ""
    wide_table(rows, _DELIVERY_COLUMNS)


def retry(
    ctx: typer.Context,
    delivery_id: int = typer.Argument(..., metavar="ID", help="The delivery's id (openmart alerts deliveries)."),
) -> None:
    """Send a failed delivery again (at the next pass: `openmart alerts deliver`, or the service)."""
    record = state(ctx).mart.retry_delivery(delivery_id)
    out.print(
        f"delivery {record.id} ({record.event} of alert {record.alert_id} to {record.subscription}/{record.channel}) "
        "queued again",
        highlight=False,
    )


def deliver(
    ctx: typer.Context,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep sending as messages come due (Ctrl-C stops)."),
    interval: float = typer.Option(5.0, "--interval", help="With --follow: seconds between passes."),
    limit: int = typer.Option(100, "--limit", help="Messages at most per pass."),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output (one object per pass)."),
) -> None:
    """Send the due alert messages now (one pass), or keep sending them (--follow). `openmart serve`
    does this on its own; several senders at once never send one message twice."""
    mart = state(ctx).mart
    interval = arguments.number(interval, "--interval", minimum=0, exclusive_minimum=True)
    stopping = threading.Event()
    while True:
        counts = mart.deliver_alerts(limit=limit)
        if json_:
            emit_json(counts.to_dict())
        elif counts.claimed or not follow:
            from openmart.alerting.dispatcher import describe

            err.print(f"alert messages: {describe(counts)}", highlight=False)
        if not follow:
            if counts.failed:
                raise typer.Exit(1)
            return
        if counts.claimed < limit:  # more may be due at once when the pass was full
            try:
                stopping.wait(interval)
            except KeyboardInterrupt:
                return


def deliver_after_evaluate(mart: Mart) -> None:
    """One delivery pass after `openmart evaluate`, so that a CLI-only user is told too; its
    failure never fails the evaluation (it is stored, and retried by the next pass)."""
    try:
        counts = mart.deliver_alerts()
    except OpenmartError as exc:
        err.print(f"alert messages not sent: {secrets.scrub(str(exc))}", highlight=False, markup=False)
        return
    if counts.claimed:
        from openmart.alerting.dispatcher import describe

        hint = " (openmart alerts deliveries --status failed)" if counts.failed else ""
        err.print(f"alert messages: {describe(counts)}{hint}", highlight=False)
