"""Alert delivery: a subscription's alert channels, and the deliveries (messages about alerts)
with their status and a retry. Secrets are sealed as ``sub.channels.add`` seals them and are
answered only as ``***`` (a webhook URL as ``scheme://host/***``).

Adding and removing a channel needs an admin key (channels hold secrets, as bindings do);
enabling, disabling, testing a channel and retrying a delivery need a write key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from openmart.api import AlertChannel, Mart
from openmart.service.auth import ADMIN, MART, READ, WRITE, Principal
from openmart.service.rest.common import ERRORS, TAG_ALERTS, frame_records, subscription

router = APIRouter(tags=[TAG_ALERTS], responses=ERRORS)


class ChannelIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "name": "slack",
                "kind": "webhook",
                "settings": {"url": "https://hooks.slack.com/services/T000/B000/XXXX"},
            }
        },
    )

    name: str = Field(description="the channel's name, unique within the subscription")
    kind: str = Field(description="webhook (a Slack-compatible JSON body) or email (SMTP with STARTTLS)")
    settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="the kind's settings (docs/alerts.md); secrets stored encrypted, never echoed"
    )


class ChannelOut(BaseModel):
    subscription: str
    name: str
    kind: str
    settings: dict[str, str] = Field(description="as they may be shown: the password as ***, a webhook as host/***")
    enabled: bool
    created_at: str


def _out(channel: AlertChannel) -> ChannelOut:
    return ChannelOut(**channel.to_dict())


@router.get(
    "/subscriptions/{name}/channels", response_model=list[ChannelOut], summary="A subscription's alert channels"
)
def list_channels(name: str, principal: Principal = READ, mart: Mart = MART) -> list[ChannelOut]:
    return [_out(c) for c in subscription(mart, name).channels.list()]


@router.post(
    "/subscriptions/{name}/channels",
    status_code=201,
    response_model=ChannelOut,
    summary="Add an alert channel; its secrets are stored encrypted (refused when the service has no secret key)",
)
def add_channel(
    name: str, body: ChannelIn, response: Response, principal: Principal = ADMIN, mart: Mart = MART
) -> ChannelOut:
    settings = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in body.settings.items()}
    channel = subscription(mart, name).channels.add(body.name, body.kind, settings)
    response.headers["Location"] = f"/api/v1/subscriptions/{name}/channels/{channel.name}"
    return _out(channel)


@router.get(
    "/subscriptions/{name}/channels/{channel}", response_model=ChannelOut, summary="One alert channel (secrets masked)"
)
def get_channel(name: str, channel: str, principal: Principal = READ, mart: Mart = MART) -> ChannelOut:
    return _out(subscription(mart, name).channels.get(channel))


@router.delete(
    "/subscriptions/{name}/channels/{channel}", status_code=204, summary="Remove an alert channel and its deliveries"
)
def remove_channel(name: str, channel: str, principal: Principal = ADMIN, mart: Mart = MART) -> Response:
    subscription(mart, name).channels.remove(channel)
    return Response(status_code=204)


@router.post(
    "/subscriptions/{name}/channels/{channel}/enable", response_model=ChannelOut, summary="Enable an alert channel"
)
def enable_channel(name: str, channel: str, principal: Principal = WRITE, mart: Mart = MART) -> ChannelOut:
    return _out(subscription(mart, name).channels.enable(channel))


@router.post(
    "/subscriptions/{name}/channels/{channel}/disable",
    response_model=ChannelOut,
    summary="Disable an alert channel (nothing new is queued to it; queued messages wait)",
)
def disable_channel(name: str, channel: str, principal: Principal = WRITE, mart: Mart = MART) -> ChannelOut:
    return _out(subscription(mart, name).channels.disable(channel))


@router.post(
    "/subscriptions/{name}/channels/{channel}/test",
    summary="Send a test message through the channel now (502 with the reason when it is not taken)",
)
def test_channel(name: str, channel: str, principal: Principal = WRITE, mart: Mart = MART) -> dict[str, Any]:
    return subscription(mart, name).channels.test(channel).to_dict()


@router.get("/alert-deliveries", summary="Messages about alerts, oldest first, with status, attempts and last error")
def list_deliveries(
    status: str = Query("all", description="pending, sending, sent, failed or all"),
    subscription: str | None = Query(None, description="only this subscription's"),
    limit: int | None = Query(None, ge=1, description="only the newest N"),
    principal: Principal = READ,
    mart: Mart = MART,
) -> list[dict[str, Any]]:
    return frame_records(mart.deliveries(status=status, subscription=subscription, limit=limit))


@router.post(
    "/alert-deliveries/{delivery_id}/retry",
    summary="Send a failed delivery again at the next pass, with a fresh count of attempts",
)
def retry_delivery(delivery_id: int, principal: Principal = WRITE, mart: Mart = MART) -> dict[str, Any]:
    return mart.retry_delivery(delivery_id).to_dict()
