"""Binding settings never hold a secret in clear.

A credential is given as a *reference* (``token_env=VAR``: an environment variable's name;
``profile=...``/``role_arn=...``: the AWS credential chain; ``secret_arn=...``) or, when the
user supplies ``OPENMART_SECRET_KEY``, encrypted with it (Fernet) and stored as ``enc:<token>``.
Displays show references as they are and encrypted values as ``***``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from openmart.errors import SecretError, ValidationError

_SECRET_KEY = re.compile(
    r"(^|_)(token|password|passwd|secret|api_key|apikey|key|access_key|"
    r"secret_access_key|session_token|credentials?)$",
    re.IGNORECASE,
)
_REFERENCE_SUFFIXES = ("_env", "_arn", "_profile", "_file")
ENCRYPTED_PREFIX = "enc:"


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not key.endswith(_REFERENCE_SUFFIXES)


def _fernet(secret_key: str | None):  # type: ignore[no-untyped-def]
    from cryptography.fernet import Fernet

    if not secret_key:
        raise SecretError("OPENMART_SECRET_KEY is not set")
    try:
        return Fernet(secret_key.encode())
    except ValueError as exc:
        raise SecretError("OPENMART_SECRET_KEY is not a valid key (make one with `openmart secret-key`)") from exc


def protect(settings: Mapping[str, str], secret_key: str | None) -> dict[str, str]:
    """Settings as they may be stored: secrets encrypted, or refused when no key is set."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        if is_secret_key(key) and not str(value).startswith(ENCRYPTED_PREFIX):
            if not secret_key:
                raise ValidationError(
                    f"setting {key!r} looks like a secret and is refused in clear: give a reference "
                    f"instead ({key}_env=VARIABLE_NAME), or set OPENMART_SECRET_KEY to store it encrypted",
                    column=key,
                )
            value = ENCRYPTED_PREFIX + _fernet(secret_key).encrypt(str(value).encode()).decode()
        out[key] = str(value)
    return out


def reveal(settings: Mapping[str, str], secret_key: str | None) -> dict[str, str]:
    """Settings as a provider needs them: encrypted values decrypted (in memory only)."""
    out = dict(settings)
    for key, value in settings.items():
        if str(value).startswith(ENCRYPTED_PREFIX):
            from cryptography.fernet import InvalidToken

            try:
                out[key] = _fernet(secret_key).decrypt(value[len(ENCRYPTED_PREFIX) :].encode()).decode()
            except InvalidToken as exc:
                raise SecretError(f"setting {key!r} cannot be decrypted with this OPENMART_SECRET_KEY") from exc
    return out


def redact(settings: Mapping[str, str]) -> dict[str, str]:
    return {k: ("***" if str(v).startswith(ENCRYPTED_PREFIX) else v) for k, v in settings.items()}


def from_env(variable: str) -> str:
    """Resolve an ``*_env`` reference; the error names the variable, never a value."""
    value = os.environ.get(variable)
    if not value:
        raise SecretError(f"environment variable {variable!r} (named by the binding) is not set")
    return value
