"""Discovers provider adapters through the entry-point group ``openmart.providers``.

A plug-in that fails to import is skipped with a logged reason (as Airflow and OpenTelemetry
do), so one broken adapter never takes the others down; the reason is kept, and asking for that
kind later (``openmart bind add``) says it, with the extra to install when the plug-in lacks a
dependency (``pip install 'openmart[sagemaker]'``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from openmart.errors import CapabilityMissing, ProviderNotInstalled
from openmart.providers.base import BASIC_CAPABILITIES, Capability, Provider, ProviderFactory

GROUP = "openmart.providers"
log = logging.getLogger(__name__)


def _why(ep: EntryPoint, exc: Exception) -> str:
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ImportError) and ep.extras and "pip install" not in reason:
        dist = ep.dist.name if ep.dist is not None else "openmart"
        reason += f" (install it with: pip install '{dist}[{','.join(ep.extras)}]')"
    return reason


@cache
def _discover() -> tuple[dict[str, ProviderFactory], dict[str, str]]:
    found: dict[str, ProviderFactory] = {}
    skipped: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        try:
            factory = ep.load()
        except Exception as exc:  # a broken plug-in must not break the others
            skipped[ep.name] = _why(ep, exc)
            log.warning("provider plug-in %r skipped: %s", ep.name, skipped[ep.name])
            continue
        found[ep.name] = factory
    return found, skipped


def available() -> dict[str, ProviderFactory]:
    """Installed adapters by kind."""
    return _discover()[0]


def skipped() -> dict[str, str]:
    """Plug-ins registered but not loadable here, by kind, with the reason."""
    return _discover()[1]


def factory_for(kind: str) -> ProviderFactory:
    kinds, broken = _discover()
    if kind in broken:
        raise ProviderNotInstalled(f"the {kind!r} provider plug-in cannot be loaded here: {broken[kind]}")
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


def capabilities(kind: str) -> frozenset[Capability]:
    """What a provider kind can do (read from its class: nothing is connected); a plug-in that
    declares nothing offers the protocol's basics."""
    declared = getattr(factory_for(kind), "capabilities", None)
    if declared is None:
        return BASIC_CAPABILITIES
    return frozenset(Capability(c) for c in declared) | BASIC_CAPABILITIES


def require(kind: str, capability: Capability, binding: str | None = None) -> None:
    """Raise :class:`CapabilityMissing`, in one line naming the provider and what it supports,
    unless ``kind`` offers ``capability``."""
    offered = capabilities(kind)
    if capability in offered:
        return
    which = f"binding {binding!r} uses provider {kind!r}" if binding else f"provider {kind!r}"
    supports = ", ".join(c.label for c in Capability if c in offered)
    raise CapabilityMissing(f"{which}, which cannot {capability.label}; it supports: {supports}")
