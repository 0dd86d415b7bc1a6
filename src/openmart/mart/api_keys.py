"""The ``api_keys`` table behind typed functions: keys for ``openmart serve``.

A key reads ``om_<prefix>_<secret>``: the prefix (public, 12 hex characters) finds the row, the
secret (32 random bytes, url-safe base64) is checked against its SHA-256 in constant time. A
fast hash is enough because the secret is random, not a password: nobody can guess it faster by
trying. The clear key is returned once, when made, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openmart.errors import NotFound, ValidationError
from openmart.mart import models

KEY_PREFIX = "om_"


class Scope(IntEnum):
    """What a key may do; each scope includes the ones below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, value: str | Scope) -> Scope:
        if isinstance(value, Scope):
            return value
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ValidationError(
                f"scope {value!r} is not one of read, write, admin", column="scope", value=value
            ) from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class ApiKeyRecord:
    id: int
    name: str
    prefix: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scope": str(self.scope),
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


_T = models.ApiKey
_COLUMNS = (_T.id, _T.name, _T.prefix, _T.scope, _T.created_at, _T.last_used_at, _T.revoked_at)


def _record(row: sa.Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        row.id, row.name, row.prefix, Scope.parse(row.scope), row.created_at, row.last_used_at, row.revoked_at
    )


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split(key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 12 or not secret:
        return None
    return prefix, secret


def create(conn: Connection, name: str, scope: Scope | str) -> tuple[ApiKeyRecord, str]:
    """A new key: its record and the clear key, which is shown once and never kept."""
    scope = Scope.parse(scope)
    if not name or len(name) > 63:
        raise ValidationError("a key's name is 1 to 63 characters", column="name", value=name)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = conn.execute(
        sa.insert(_T)
        .values(name=name, prefix=prefix, secret_hash=_digest(secret), scope=str(scope))
        .returning(*_COLUMNS)
    ).one()
    return _record(row), f"{KEY_PREFIX}{prefix}_{secret}"


def verify(conn: Connection, key: str) -> ApiKeyRecord | None:
    """The active key this is, or None (malformed, unknown, wrong secret, revoked). Marks it used."""
    parts = split(key)
    if parts is None:
        return None
    prefix, secret = parts
    row = conn.execute(sa.select(*_COLUMNS, _T.secret_hash).where(_T.prefix == prefix)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(bytes(row.secret_hash), _digest(secret)):
        return None
    # at most once a minute: a busy key does not turn every read into a write
    conn.execute(
        sa.update(_T)
        .where(
            _T.id == row.id,
            sa.or_(_T.last_used_at.is_(None), _T.last_used_at < sa.func.now() - sa.text("interval '1 minute'")),
        )
        .values(last_used_at=sa.func.now())
    )
    return _record(row)


def get(conn: Connection, prefix: str) -> ApiKeyRecord:
    row = conn.execute(sa.select(*_COLUMNS).where(_T.prefix == prefix)).first()
    if row is None:
        raise NotFound(f"no API key with prefix {prefix!r}")
    return _record(row)


def signing_secret(conn: Connection, key_id: int) -> bytes | None:
    """What tokens exchanged for this key are signed with (``/v1/preauth/validateAuth``): derived
    from the stored hash, so revoking the key invalidates its tokens at once. None when revoked."""
    row = conn.execute(sa.select(_T.secret_hash, _T.revoked_at).where(_T.id == key_id)).first()
    if row is None or row.revoked_at is not None:
        return None
    return hmac.new(bytes(row.secret_hash), b"openmart token signing", hashlib.sha256).digest()


def list_all(conn: Connection, *, include_revoked: bool = False) -> list[ApiKeyRecord]:
    query = sa.select(*_COLUMNS).order_by(_T.id)
    if not include_revoked:
        query = query.where(_T.revoked_at.is_(None))
    return [_record(r) for r in conn.execute(query)]


def revoke(conn: Connection, prefix_or_name: str) -> list[ApiKeyRecord]:
    """Revoke the key with this prefix (or every active key with this name). NotFound if none."""
    key = prefix_or_name.removeprefix(KEY_PREFIX).split("_", 1)[0]
    rows = conn.execute(
        sa.update(_T)
        .where(_T.revoked_at.is_(None), sa.or_(_T.prefix == key, _T.name == prefix_or_name))
        .values(revoked_at=sa.func.now())
        .returning(*_COLUMNS)
    ).all()
    if not rows:
        raise NotFound(f"no active API key with prefix or name {prefix_or_name!r}")
    return [_record(r) for r in rows]
