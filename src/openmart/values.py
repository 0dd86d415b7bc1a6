"""One rule for turning numpy and pandas scalars into plain Python values (for JSON, for the
database driver, for messages): written once, used wherever values leave the frame."""

from __future__ import annotations

from typing import Any


def plain(value: Any) -> Any:
    """numpy scalars as Python scalars, numpy arrays as lists; anything else as it is."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return value.tolist()  # numpy arrays and scalars alike (a scalar's tolist is its item)
    if hasattr(value, "item") and not isinstance(value, str | bytes | dict):
        return value.item()
    return value
