"""Discovers provider adapters through the entry-point group ``openmart.providers``.

A plug-in that fails to import is skipped with a logged reason (as Airflow and OpenTelemetry
do), so one broken adapter never takes the others down.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points

from openmart.errors import ProviderNotInstalled
from openmart.providers.base import Provider, ProviderFactory

GROUP = "openmart.providers"
log = logging.getLogger(__name__)


@cache
def available() -> dict[str, ProviderFactory]:
    """Installed adapters by kind."""
    found: dict[str, ProviderFactory] = {}
    for ep in entry_points(group=GROUP):
        try:
            factory = ep.load()
        except Exception as exc:  # a broken plug-in must not break the others
            log.warning("provider plug-in %r skipped: %s", ep.name, exc)
            continue
        found[ep.name] = factory
    return found


def factory_for(kind: str) -> ProviderFactory:
    kinds = available()
    if kind not in kinds:
        listed = ", ".join(sorted(kinds)) or "none"
        raise ProviderNotInstalled(f"no provider of kind {kind!r} is installed (installed kinds: {listed})")
    return kinds[kind]


def create(kind: str, settings: Mapping[str, str]) -> Provider:
    return factory_for(kind).from_settings(settings)


def secret_settings(kind: str) -> frozenset[str]:
    """The settings a provider declares secret; a plug-in written before the declaration existed
    declares none (the core still encrypts what it recognises by name or in URLs)."""
    return frozenset(getattr(factory_for(kind), "secret_settings", frozenset()))
