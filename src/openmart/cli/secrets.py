"""`openmart secrets`: the key binding secrets are encrypted with.

The key comes from OPENMART_SECRET_KEY, else from a 0600 key file ($OPENMART_SECRET_KEY_FILE, or
secret.key in the data directory). openmart makes a key only when asked (`init`): a key nobody
knows about is a key nobody backs up.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from openmart import secrets
from openmart.cli.common import OpenmartGroup, out, state
from openmart.config import Settings
from openmart.errors import SecretError

app = typer.Typer(
    cls=OpenmartGroup,
    no_args_is_help=True,
    help="""The key binding secrets are encrypted with.

Examples:

  openmart secrets init          # a new key in $OPENMART_DATA_DIR/secret.key (mode 0600)

  openmart secrets rotate        # every stored secret re-encrypted under a new key
""",
)


@app.command()
def init() -> None:
    """Make a new key file (mode 0600); an existing one is never overwritten."""
    path = secrets.create_key_file(Settings.from_env())
    out.print(
        f"new key written to {path} (mode 0600): back it up; without it the stored secrets cannot be decrypted",
        highlight=False,
    )


@app.command()
def rotate(
    ctx: typer.Context,
    out_path: Path | None = typer.Option(
        None,
        "--out",
        help="Where to write the new key when the current one comes from OPENMART_SECRET_KEY "
        "(default: the key file path, which must not exist yet).",
    ),
) -> None:
    """Re-encrypt every stored secret under a new key, in one transaction.

    The old key no longer decrypts anything afterwards. A key file in use is replaced by the new
    key; a key given in OPENMART_SECRET_KEY cannot be changed from here, so the new key is
    written to a new file and you set the variable from it.
    """
    mart = state(ctx).mart
    current = secrets.require_keyring(mart.settings, "rotation re-encrypts the stored secrets")
    target = _target(current, out_path, mart.settings)
    key = secrets.new_key()
    # the new key is on disk before the mart holds anything encrypted with it, so that no crash
    # can leave secrets under a key that exists nowhere
    staged = target.with_name(target.name + ".new")
    if staged.exists():
        raise SecretError(
            f"{staged} exists: an earlier rotation was interrupted and it may hold the key some secrets "
            "are under; check it, keep it somewhere safe, and remove it before rotating again"
        )
    secrets.write_key_file(staged, key)
    try:
        count = mart.bindings.rotate_key(key)
    except BaseException:
        staged.unlink()
        raise
    os.replace(staged, target)
    out.print(f"{count} stored secret value(s) re-encrypted; the new key is in {target} (mode 0600)", highlight=False)
    if current.path is None:
        out.print(
            f"{secrets.KEY_ENV} still holds the old key, which decrypts nothing now: set it to the "
            f"content of {target}, or unset it so that the file is used",
            highlight=False,
        )


def _target(current: secrets.Keyring, out_path: Path | None, settings: Settings) -> Path:
    """Where the new key goes: over the key file in use, or (key from the environment) a new file."""
    if current.path is not None:
        if out_path is not None and out_path.resolve() != current.path.resolve():
            raise SecretError(f"--out is for a key given in {secrets.KEY_ENV}; the key file {current.path} is replaced")
        return current.path
    target = out_path or secrets.key_file_path(settings)
    if target.exists():
        raise SecretError(f"{target} exists already: give --out with a new path for the new key")
    return target
