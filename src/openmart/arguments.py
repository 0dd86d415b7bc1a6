"""Checks for the arguments users give (CLI options, API keyword arguments), at the boundary.

Each check returns the value in its canonical type or raises :class:`ValidationError` whose
one-line message names the argument, what was given and what is valid, e.g.
``limit must be a whole number from 0 up (got -1)``. The CLI passes option spellings as names
(``--limit``), the API its keyword names (``limit``). Nothing here touches the database.
"""

from __future__ import annotations

import codecs
import math
import numbers
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from openmart.errors import ValidationError


def _bad(name: str, value: Any, valid: str) -> ValidationError:
    return ValidationError(f"{name} must be {valid} (got {value!r})", value=value)


def _range_text(minimum: float | None, maximum: float | None, *, exclusive_minimum: bool = False) -> str:
    if minimum is not None and maximum is not None:
        if exclusive_minimum:
            return f"above {minimum:g} and at most {maximum:g}"
        return f"from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"above {minimum:g}" if exclusive_minimum else f"from {minimum:g} up"
    if maximum is not None:
        return f"at most {maximum:g}"
    return "of any size"


def integer(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A whole number within [minimum, maximum]; bools and fractions are refused."""
    valid = f"a whole number {_range_text(minimum, maximum)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            if float(value).is_integer():
                value = int(value)
            else:
                raise _bad(name, value, valid)
        else:
            raise _bad(name, value, valid)
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _bad(name, value, valid)
    return value


def optional_integer(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
    return None if value is None else integer(value, name, minimum=minimum, maximum=maximum)


def number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float:
    """A finite number within the range (NaN and infinities are refused)."""
    valid = f"a finite number {_range_text(minimum, maximum, exclusive_minimum=exclusive_minimum)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _bad(name, value, valid)
    f = float(value)
    if not math.isfinite(f):
        raise _bad(name, value, valid)
    if minimum is not None and (f < minimum or (exclusive_minimum and f == minimum)):
        raise _bad(name, value, valid)
    if maximum is not None and f > maximum:
        raise _bad(name, value, valid)
    return f


def choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """One of ``choices`` (exact spelling); the message lists them all."""
    options = list(choices)
    if not isinstance(value, str) or value not in options:
        raise _bad(name, value, "one of " + ", ".join(options))
    return value


def timestamp(value: Any, name: str) -> datetime | None:
    """A point in time: a datetime, or ISO 8601 text (``2026-11-22``, ``2026-11-22T10:00:00+01:00``);
    None stays None. Text without a zone is read as UTC by the mart."""
    if value is None:
        return None
    import numpy as np
    import pandas as pd

    valid = "a datetime or ISO 8601 time text, e.g. 2026-11-22 or 2026-11-22T10:00:00Z"
    if isinstance(value, datetime):
        if value is pd.NaT:
            raise _bad(name, value, valid)
        return value
    if isinstance(value, date | np.datetime64):
        value = str(pd.Timestamp(value).isoformat()) if not pd.isna(value) else ""
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, value, valid)
    try:
        parsed = pd.Timestamp(value.strip())
    except (ValueError, TypeError, OverflowError):
        raise _bad(name, value, valid) from None
    if parsed is pd.NaT or pd.isna(parsed):
        raise _bad(name, value, valid)
    return parsed.to_pydatetime()


def time_window(
    since: Any, until: Any, *, since_name: str = "since", until_name: str = "until"
) -> tuple[datetime | None, datetime | None]:
    """Both ends parsed; ``since`` must come before ``until`` (an empty window is a mistake)."""
    start, end = timestamp(since, since_name), timestamp(until, until_name)
    if start is not None and end is not None:
        import pandas as pd

        a, b = pd.Timestamp(start), pd.Timestamp(end)
        if (a.tzinfo is None) != (b.tzinfo is None):  # compare as the mart does: naive means UTC
            a = a.tz_localize("UTC") if a.tzinfo is None else a
            b = b.tz_localize("UTC") if b.tzinfo is None else b
        if a >= b:
            raise ValidationError(
                f"{since_name} ({start.isoformat()}) must come before {until_name} ({end.isoformat()})",
                value=(since, until),
            )
    return start, end


def port(value: Any, name: str = "port") -> int:
    """A TCP port a server can listen on."""
    return integer(value, name, minimum=1, maximum=65535)


def encoding(value: Any, name: str = "encoding") -> str:
    """A text encoding Python knows (``latin-1``, ``cp1252``, ``utf-16``, ...), as its canonical name."""
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, value, "a text encoding such as utf-8, latin-1, cp1252 or utf-16")
    try:
        info = codecs.lookup(value.strip())
    except LookupError:
        raise _bad(name, value, "a text encoding such as utf-8, latin-1, cp1252 or utf-16") from None
    if not getattr(info, "_is_text_encoding", True):  # hex, base64, zlib, rot13: not text encodings
        raise _bad(name, value, "a text encoding such as utf-8, latin-1, cp1252 or utf-16")
    return info.name


def names(value: Any, name: str) -> list[str] | None:
    """A list of column names (None: all)."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _bad(name, value, "a list of column names")
    out = list(value)
    bad = [v for v in out if not isinstance(v, str) or not v]
    if bad or not out:
        raise _bad(name, value, "a non-empty list of column names (text)")
    return out
