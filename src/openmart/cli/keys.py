"""``openmart keys``: API keys for ``openmart serve``."""

from __future__ import annotations

import typer

from openmart.cli.common import emit_json, emit_table, err, out, state

app = typer.Typer(help="API keys for `openmart serve`: create, list, revoke.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Who or what the key is for (e.g. a service's name)."),
    scope: str = typer.Option("read", "--scope", "-s", help="read, write (log records, evaluate) or admin."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Make a key. It is printed once, now: store it; openmart keeps only its hash.

    Example: openmart keys create scoring-app --scope write
    """
    record, key = state(ctx).mart.keys.create(name, scope)
    if json_out:
        emit_json({**record.to_dict(), "key": key})
        return
    out.print(key, highlight=False, soft_wrap=True)
    err.print(f"key {record.prefix} ({record.name}, scope {record.scope}): shown once, keep it safe", highlight=False)


@app.command("list")
def list_keys(
    ctx: typer.Context,
    include_revoked: bool = typer.Option(False, "--all", help="Revoked keys too."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """The keys (never their secrets): prefix, name, scope, when made, last used, revoked."""
    rows = [k.to_dict() for k in state(ctx).mart.keys.list(include_revoked=include_revoked)]
    if json_out:
        emit_json(rows)
        return
    emit_table(rows, ["prefix", "name", "scope", "created_at", "last_used_at", "revoked_at"], title="API keys")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="The key's prefix (or the whole key, or its name: every key of that name)."),
) -> None:
    """Revoke a key: it and the tokens exchanged for it stop working."""
    for record in state(ctx).mart.keys.revoke(key):
        err.print(f"revoked {record.prefix} ({record.name}, scope {record.scope})", highlight=False)
