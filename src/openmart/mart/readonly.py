"""What ``Mart.sql`` accepts: exactly one statement that reads.

psycopg2 sends a query string with PostgreSQL's simple query protocol, which runs every statement
in it: ``SELECT 1; COMMIT; DROP TABLE x`` would end the read-only transaction ``Mart.sql`` opens and
drop the table in the next. So the string is split here, the way PostgreSQL's own lexer reads it
(quoted strings, ``E''`` escapes, quoted identifiers, dollar quotes, nested comments), and refused
unless it holds a single statement starting with a reading keyword. The read-only transaction
stays the guard for what that one statement does (``WITH x AS (DELETE ...)``, ``SELECT ... INTO``,
a function that writes). ``Mart.sql`` sets ``standard_conforming_strings`` on for the query, so a
backslash in a plain ``'...'`` string is read here as PostgreSQL reads it.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from openmart.errors import ValidationError

#: statements that read: the first keyword of what Mart.sql runs
READING = ("select", "with", "values", "table", "show", "explain")

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
_IDENTIFIER_START = re.compile(r"[A-Za-z_\u0080-\uffff]")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_$\u0080-\uffff]*")
_KEYWORD = re.compile(r"[A-Za-z_]+")


class _Unterminated(Exception):
    pass


def _skip_quoted(sql: str, pos: int, quote: str, backslash: bool) -> int:
    """Index just past the string or identifier opened at ``pos`` (doubled quotes stay inside)."""
    i = pos + 1
    while i < len(sql):
        ch = sql[i]
        if backslash and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if sql.startswith(quote, i + 1):
                i += 2
                continue
            return i + 1
        i += 1
    raise _Unterminated(quote)


def _skip_block_comment(sql: str, pos: int) -> int:
    depth, i = 0, pos
    while i < len(sql):
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise _Unterminated("/*")


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql`` (empty ones and comments dropped), split at top-level ``;``.
    Raises ValidationError for an unterminated string, identifier or comment."""
    statements: list[str] = []
    current: list[str] = []  # the statement's text, comments replaced by a space
    i = 0
    try:
        while i < len(sql):
            ch = sql[i]
            start = i
            if sql.startswith("--", i):
                end = sql.find("\n", i)
                i = len(sql) if end < 0 else end + 1
                current.append(" ")
                continue
            if sql.startswith("/*", i):
                i = _skip_block_comment(sql, i)
                current.append(" ")
                continue
            if ch == ";":
                statements.append("".join(current))
                current, i = [], i + 1
                continue
            if ch in "eE" and sql.startswith("'", i + 1):
                i = _skip_quoted(sql, i + 1, "'", backslash=True)
            elif ch == "'":
                i = _skip_quoted(sql, i, "'", backslash=False)
            elif ch == '"':
                i = _skip_quoted(sql, i, '"', backslash=False)
            elif ch == "$" and (tag := _DOLLAR_TAG.match(sql, i)):
                end = sql.find(tag.group(), tag.end())
                if end < 0:
                    raise _Unterminated(tag.group())
                i = end + len(tag.group())
            elif _IDENTIFIER_START.match(ch):
                # a word, which may hold "$" (x$1$ is one identifier, not a dollar quote)
                i = _IDENTIFIER.match(sql, i + 1).end()  # type: ignore[union-attr]
            else:
                i += 1
            current.append(sql[start:i])
    except _Unterminated as exc:
        raise ValidationError(
            f"mart.sql: the query has an unterminated {exc.args[0]} (a string, name or comment)"
        ) from None
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def check_read_only(sql: str) -> None:
    """Refuse anything but one statement that reads (see the module's docstring)."""
    statements = split_statements(sql)
    if len(statements) != 1:
        raise ValidationError(
            f"mart.sql is read-only and runs one statement; this query has {len(statements)}. "
            "Write through the API (bindings, subscriptions, payload/feedback log), not mart.sql"
        )
    keyword = _KEYWORD.match(statements[0].lstrip("( \t\r\n"))
    first = keyword.group().lower() if keyword else statements[0][:20]
    if first not in READING:
        raise ValidationError(
            f"mart.sql is read-only: {first.upper()} is refused (it runs {', '.join(k.upper() for k in READING)}). "
            "Write through the API (bindings, subscriptions, payload/feedback log), not mart.sql"
        )


def query_error(exc: Exception) -> Exception:
    """What a failed ``Mart.sql`` query raises: the query's own faults (a write the read-only
    transaction stopped, bad syntax, an unknown table or column, a bad value) as ValidationError
    in the server's words; anything else (the server gone) unchanged."""
    orig: BaseException | None = exc
    while orig is not None and getattr(orig, "pgcode", None) is None:  # pandas -> SQLAlchemy -> psycopg2
        orig = getattr(orig, "orig", None) or orig.__cause__
    if orig is None:
        return exc
    code = str(getattr(orig, "pgcode", ""))
    message = str(orig).strip().splitlines()[0]
    if code == "25006":  # read_only_sql_transaction
        return ValidationError(f"mart.sql is read-only: {message}. Write through the API, not mart.sql")
    if code[:2] in ("42", "22", "0A"):  # syntax/access rule, data exception, feature not supported
        return ValidationError(f"mart.sql: {message}")
    return exc


def run_read_only(engine: Engine, query: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run one reading statement in a read-only transaction that is rolled back afterwards, as a
    DataFrame (``Mart.sql``)."""
    check_read_only(query)  # one statement: a second one (after a COMMIT) would escape the transaction
    with engine.connect() as conn:
        try:
            # the transaction's first statement, so it holds before the query runs
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql("SET LOCAL standard_conforming_strings = on")  # as check_read_only reads quotes
            return pd.read_sql_query(sa.text(query), conn, params=dict(params or {}))
        except (sa.exc.DBAPIError, pd.errors.DatabaseError) as exc:  # pandas wraps the driver's error
            raise query_error(exc) from None
        finally:
            conn.rollback()
