"""OpenScale's V1 routes, as the ``ibm-ai-openscale`` Python client (2.1.x, 2.2.x) calls them,
mapped onto openmart's core."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
