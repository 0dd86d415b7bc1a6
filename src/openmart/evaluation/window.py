"""The window an evaluation looks at. Kept for compatibility: the window, its relations and the
fast fetches live in the mart gateway, :mod:`openmart.mart.windows` (no SQL outside ``mart/``)."""

from __future__ import annotations

from openmart.mart.windows import Window, fetch_arrow, fetch_frame

__all__ = ["Window", "fetch_arrow", "fetch_frame"]
