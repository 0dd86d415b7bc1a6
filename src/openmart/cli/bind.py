"""`openmart bind`: connections to serving platforms."""

from __future__ import annotations

import typer

from openmart.cli.common import OpenmartGroup, emit_json, emit_table, out, parse_settings, state

app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="""Bindings: connections to serving platforms.

Examples:

  openmart bind add web --provider custom --set url=http://127.0.0.1:8000/predict --set mode=single \\
      --set prediction='$.prediction' --set probability='$.probability'

  openmart bind add host --provider algorithmia --set base_url=http://127.0.0.1:9000 --set key_env=ALGO_KEY

  openmart bind add api --provider custom --set url='https://user:pw@host/predict?api_key=...'  # stored redacted

  openmart bind add aws --provider sagemaker --set region=us-east-1
""",
)


@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for the binding."),
    provider: str = typer.Option(..., "--provider", "-p", help="Provider kind: custom, algorithmia, sagemaker."),
    settings: list[str] = typer.Option(
        [],
        "--set",
        help="A setting as key=value (repeat). Secrets (token=, key=, URL credentials) are stored encrypted "
        "(needs a key: `openmart secrets init`) and shown as ***; or give a reference, e.g. token_env=VAR.",
    ),
    json_: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Add a binding."""
    binding = state(ctx).mart.bindings.add(name, provider, parse_settings(settings))
    if json_:
        emit_json(binding.to_dict())
    else:
        out.print(f"binding {binding.name!r} ({binding.provider}) added")


@app.command("list")
def list_(ctx: typer.Context, json_: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List bindings."""
    rows = [b.to_dict() for b in state(ctx).mart.bindings.list()]
    if json_:
        emit_json(rows)
    else:
        emit_table(rows, ["name", "provider", "settings", "created_at"])


@app.command()
def show(
    ctx: typer.Context, name: str, json_: bool = typer.Option(False, "--json", help="Machine-readable output.")
) -> None:
    """Show one binding (secrets as ***, URL credentials redacted)."""
    data = state(ctx).mart.bindings.get(name).to_dict()
    if json_:
        emit_json(data)
    else:
        out.print(f"name      : {data['name']}\nprovider  : {data['provider']}\ncreated_at: {data['created_at']}")
        for k, v in data["settings"].items():
            out.print(f"  {k} = {v}", highlight=False)


@app.command()
def remove(ctx: typer.Context, name: str) -> None:
    """Remove a binding (refused while subscriptions use it)."""
    state(ctx).mart.bindings.remove(name)
    out.print(f"binding {name!r} removed")
