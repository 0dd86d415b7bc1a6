"""Bindings: connections to serving platforms. Secrets are sealed as ``mart.bindings.add`` seals
them and are never answered in clear."""

from __future__ import annotations

from fastapi import APIRouter, Response

from openmart.api import Binding, Mart
from openmart.service.auth import ADMIN, MART, READ, Principal
from openmart.service.rest.common import ERRORS, TAG_BINDINGS
from openmart.service.rest.models import BindingIn, BindingOut

router = APIRouter(tags=[TAG_BINDINGS], responses=ERRORS)


def _out(binding: Binding) -> BindingOut:
    return BindingOut(**binding.to_dict())


@router.get("/bindings", response_model=list[BindingOut], summary="Every binding (secrets masked)")
def list_bindings(principal: Principal = READ, mart: Mart = MART) -> list[BindingOut]:
    return [_out(b) for b in mart.bindings.list()]


@router.get("/bindings/{name}", response_model=BindingOut, summary="One binding (secrets masked)")
def get_binding(name: str, principal: Principal = READ, mart: Mart = MART) -> BindingOut:
    return _out(mart.bindings.get(name))


@router.post(
    "/bindings",
    status_code=201,
    response_model=BindingOut,
    summary="Add a binding; its secrets are stored encrypted (refused when the service has no secret key)",
)
def add_binding(body: BindingIn, response: Response, principal: Principal = ADMIN, mart: Mart = MART) -> BindingOut:
    binding = mart.bindings.add(body.name, body.provider, {k: str(v) for k, v in body.settings.items()})
    response.headers["Location"] = f"/api/v1/bindings/{binding.name}"
    return _out(binding)


@router.delete("/bindings/{name}", status_code=204, summary="Remove a binding")
def remove_binding(name: str, principal: Principal = ADMIN, mart: Mart = MART) -> Response:
    mart.bindings.remove(name)
    return Response(status_code=204)
