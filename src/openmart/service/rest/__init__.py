"""openmart's own REST API under ``/api/v1``: bindings, subscriptions and their monitors,
records (logging and paging), evaluations and measurements, alerts and their delivery (channels,
deliveries), explanations. Every route calls the Python API (:mod:`openmart.api`), as the CLI
does; docs/service.md describes them."""

from __future__ import annotations

from fastapi import APIRouter

from openmart.service.rest import (
    alerts,
    bindings,
    channels,
    evaluations,
    explanations,
    records,
    subscriptions,
    versions,
)

router = APIRouter(prefix="/api/v1")
for _module in (bindings, subscriptions, versions, records, evaluations, alerts, channels, explanations):
    router.include_router(_module.router)
