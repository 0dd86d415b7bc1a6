"""OpenScale's V1 routes, as the ``ibm-ai-openscale`` Python client (2.1.x, 2.2.x) calls them,
mapped onto openmart's core (docs/openscale.md): token exchange (:mod:`.tokens`), the data mart
(:mod:`.datamart`), service bindings and discovery (:mod:`.bindings`), subscriptions
(:mod:`.subscriptions`), configurations (:mod:`.configurations`), payload and feedback records
(:mod:`.records`), evaluations and metrics (:mod:`.metrics`)."""

from __future__ import annotations

from fastapi import APIRouter

from openmart.service.openscale import bindings, configurations, datamart, metrics, records, subscriptions, tokens

router = APIRouter()
for _part in (tokens, datamart, bindings, subscriptions, configurations, records, metrics):
    router.include_router(_part.router)
