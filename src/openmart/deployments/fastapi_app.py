"""A FastAPI service with a single-record scoring route, as many teams deploy models:

    OPENMART_MODEL_PATH=model.joblib uvicorn --factory openmart.deployments.fastapi_app:from_env --port 8000

``POST /predict`` (alias ``/prediction``) takes one record as a JSON object and answers
``{"prediction": ..., "probability": ...}`` (the positive class's probability for two classes,
one per class otherwise); ``GET /health`` answers ``{"status": "ok"}``.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import Body, FastAPI, HTTPException

from openmart.deployments.model import ServedModel


def create_app(model: ServedModel) -> FastAPI:
    app = FastAPI(title="openmart reference deployment")
    app.state.calls = 0

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "calls": app.state.calls}

    def predict(record: dict[str, Any] = Body(...)) -> dict[str, Any]:
        try:
            result = model.predict([record])
        except (ValueError, KeyError, TypeError) as exc:
            raise HTTPException(status_code=422, detail=f"{type(exc).__name__}: {exc}") from exc
        app.state.calls += 1
        out = {"prediction": result["predictions"][0]}
        if "probabilities" in result:
            out["probability"] = result["probabilities"][0]
        return out

    app.post("/predict")(predict)
    app.post("/prediction")(predict)
    return app


def from_env() -> FastAPI:
    return create_app(ServedModel.load(os.environ["OPENMART_MODEL_PATH"]))
