"""The REST API's request bodies and some of its answers, as pydantic models (documented in the
OpenAPI schema at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RecordsJson = list[dict[str, Any]] | dict[str, Any]


class BindingIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"name": "web", "provider": "custom", "settings": {"url": "http://127.0.0.1:9000/predict"}}
        },
    )

    name: str = Field(description="the binding's name")
    provider: str = Field(description="the provider kind: custom, sagemaker, algorithmia, ...")
    settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="the provider's settings; secrets are stored encrypted, never echoed"
    )


class BindingOut(BaseModel):
    name: str
    provider: str
    settings: dict[str, str] = Field(description="as they may be shown: secrets as ***, URL credentials redacted")
    created_at: str


class SubscriptionIn(BaseModel):
    """Subscribe a deployment: either ``schema`` (a stored subscription's schema), or
    ``reference`` records with ``label`` and ``problem_type`` to infer it from."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    reference: RecordsJson | None = Field(
        None, description='reference records: a list of objects, or {"fields": [...], "values": [[...]]}'
    )
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="an explicit schema (as GET shows it)")
    label: str | None = None
    problem_type: Literal["binary", "multiclass", "regression"] | None = None
    binding: str | None = None
    deployment: str | None = None
    asset_revision: str | None = None
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    features: list[str] | None = None
    meta: list[str] = Field(default_factory=list)
    prediction: str = "prediction"
    probability: str | None = "probability"
    class_labels: list[Any] | None = None


class MonitorIn(BaseModel):
    """Enable or reconfigure a monitor: its options as ``Monitors.enable`` takes them."""

    model_config = ConfigDict(extra="forbid")

    options: dict[str, Any] = Field(default_factory=dict, description="the monitor's declared options")
    thresholds: list[str | dict[str, Any]] | None = Field(
        None, description='e.g. ["accuracy=0.8", "roc_auc:lower=0.7"] or [{"metric", "value", "type"}]'
    )
    min_records: int | None = Field(None, ge=1)


class EvaluationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str | None = Field(None, description="window start (ISO 8601)")
    until: str | None = Field(None, description="window end, exclusive (ISO 8601)")
    last: int | None = Field(None, ge=1, description="only the newest N payload records")
    kinds: list[str] | None = Field(None, description="only these monitors")
    wait: bool = Field(
        True,
        description="while another evaluation of the subscription runs: wait for it (the answer comes when this "
        "one has started) or, false, answer 409 at once",
    )


class EvaluationStarted(BaseModel):
    id: int
    subscription: str
    status: str
    location: str


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(None, description="who; the API key's name when left out")
    note: str | None = None


class ExplainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scoring_id: str
    method: Literal["shap", "lime"] = "shap"
    refresh: bool = Field(False, description="compute again even when an explanation is stored")


class Logged(BaseModel):
    subscription: str
    kind: str
    records: int = Field(description="how many records were stored (all of the body's, in one transaction)")
    scoring_ids: list[str] | None = Field(
        None, description="the stored records' scoring ids (given or generated), left out above 10,000 records"
    )
    scoring_ids_omitted: bool = False


class RecordsPage(BaseModel):
    subscription: str
    kind: str
    total: int = Field(description="how many records the table holds")
    limit: int
    offset: int
    records: list[dict[str, Any]]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last")


class VersionIn(BaseModel):
    """Start a model version: records written from now on without a version of their own belong to it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"version": "2", "note": "retrained"}})

    version: str = Field(description="the version's name (e.g. the model's asset revision)")
    note: str | None = Field(None, description="what changed in this version")
