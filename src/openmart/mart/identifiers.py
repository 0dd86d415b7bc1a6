"""Names that reach SQL: object names are validated, column names are quoted.

Object names (bindings, subscriptions) are plain, portable slugs. Feature and column names
come from users' data and may hold anything (spaces, quotes, ``x"; drop table bindings; --``):
they are kept as given and always quoted, never formatted into SQL bare.
"""

from __future__ import annotations

import re

from openmart.errors import IdentifierError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PG_MAX_IDENT_BYTES = 63  # PostgreSQL truncates longer identifiers silently: refuse instead


def validate_name(name: str, what: str) -> str:
    """A binding or subscription name: letters, digits, ``_ . -``; up to 63 characters."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise IdentifierError(
            f"invalid {what} name {name!r}: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit",
            value=name,
        )
    return name


def validate_schema(name: str) -> str:
    if not _SCHEMA.match(name):
        raise IdentifierError(f"invalid PostgreSQL schema name {name!r}: use [a-z_][a-z0-9_]*", value=name)
    return name


def validate_column(name: object, what: str = "column") -> str:
    """A column name from user data: any text PostgreSQL can hold as a quoted identifier."""
    if not isinstance(name, str) or not name:
        raise IdentifierError(f"invalid {what} name {name!r}: must be non-empty text", column=str(name), value=name)
    if "\x00" in name:
        raise IdentifierError(f"invalid {what} name {name!r}: NUL characters are not allowed", column=name, value=name)
    if "%" in name:
        # psycopg2 reads % in a statement with parameters as a placeholder: the mart's own queries
        # would break on such a column, so it is refused where it enters (subscribe)
        raise IdentifierError(
            f"invalid {what} name {name!r}: '%' cannot be used in a column name (the PostgreSQL driver reads it "
            "as a parameter marker); rename the column",
            column=name,
            value=name,
        )
    try:
        name.encode()
    except UnicodeEncodeError:
        raise IdentifierError(
            f"invalid {what} name {name!r}: not valid Unicode text (a lone surrogate)", column=name, value=name
        ) from None
    if len(name.encode()) > _PG_MAX_IDENT_BYTES:
        raise IdentifierError(
            f"{what} name {name!r} is {len(name.encode())} bytes, longer than PostgreSQL's 63-byte identifier limit "
            "(it would be cut short); rename the column",
            column=name,
            value=name,
        )
    return name


def quote(name: str) -> str:
    """Quote an identifier for PostgreSQL (doubling embedded quotes), after validating it."""
    validate_column(name)
    return '"' + name.replace('"', '""') + '"'
