"""The data mart: ``/v1/data_marts/{id}``. openmart serve has one, in the database it was started
on; ``setup`` is accepted and answered with it (the database credentials a client sends are
neither used nor stored), ``delete`` is refused."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from openmart.api import Mart
from openmart.service.auth import ADMIN, MART, READ, Principal
from openmart.service.openscale.common import check_data_mart, data_mart_id

router = APIRouter(tags=["openscale"])


def details(mart: Mart) -> dict[str, Any]:
    dm = data_mart_id(mart)
    return {
        "metadata": {"guid": dm, "url": f"/v1/data_marts/{dm}"},
        "database_configuration": {
            "database_type": "postgresql",
            "name": "openmart",
            "location": {"schema": mart.location.schema},
        },
        "internal_database": False,
        "status": {"state": "active"},
        "entity": {"status": {"state": "active"}},
    }


@router.get("/v1/data_marts", summary="The data marts (this service's one)")
def list_data_marts(principal: Principal = READ, mart: Mart = MART) -> dict[str, Any]:
    return {"data_marts": [details(mart)]}


@router.get("/v1/data_marts/{data_mart_id}", summary="The data mart")
def get_data_mart(data_mart_id: str, principal: Principal = READ, mart: Mart = MART) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    return details(mart)


@router.put("/v1/data_marts/{data_mart_id}", summary="Set up the data mart (it is this service's database)")
def setup_data_mart(data_mart_id: str, principal: Principal = ADMIN, mart: Mart = MART) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    mart.upgrade()  # the tables are there and current; the credentials sent are not read
    return details(mart)


@router.delete("/v1/data_marts/{data_mart_id}", summary="Refused: the data mart is the service's database")
def delete_data_mart(data_mart_id: str, principal: Principal = ADMIN, mart: Mart = MART) -> dict[str, Any]:
    check_data_mart(mart, data_mart_id)
    raise HTTPException(405, "openmart does not delete its data mart over the API (remove subscriptions instead)")
