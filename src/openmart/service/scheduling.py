"""The service's scheduler thread: runs the monitors that are due."""

from __future__ import annotations

from collections.abc import Callable

from openmart.api import Mart


def start(mart: Mart, *, interval: float = 30.0) -> Callable[[], None]:
    """Start the scheduler in the background; returns a function that stops it."""
    return lambda: None
