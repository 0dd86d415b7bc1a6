"""The capture proxy: ``openmart proxy SUB --port P``.

A client sends its usual request to the proxy; the proxy forwards it unchanged to the
deployment (same path, query, body and headers, over pooled keep-alive connections), returns the
deployment's answer unchanged plus an ``X-Openmart-Scoring-Id`` header, and hands the raw
exchange to the background :class:`PayloadCapture`. Decoding the exchange into payload records
happens in the writer thread, in batches, never while the client waits.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmart.errors import ProviderError, ValidationError
from openmart.scoring.capture import Exchange, PayloadCapture

if TYPE_CHECKING:
    from openmart.api import Subscription
    from openmart.providers.base import Provider

SCORING_ID_HEADER = "X-Openmart-Scoring-Id"
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "content-encoding",
}


def exchange_parser(sub: Subscription, provider: Provider):  # type: ignore[no-untyped-def]
    """Decode raw request/response pairs with the binding's own encoding into payload records."""
    schema = sub.schema

    def parse(exchanges: Sequence[Exchange]) -> pd.DataFrame:
        frames = []
        for ex in exchanges:
            records, predictions, probabilities = provider.parse_exchange(ex.request, ex.response)
            frame = records.reset_index(drop=True).copy()
            n = len(frame)
            frame["scoring_id"] = [ex.scoring_id] if n == 1 else [f"{ex.scoring_id}-{k}" for k in range(1, n + 1)]
            frame["scoring_timestamp"] = ex.timestamp
            frame["response_time"] = ex.response_time_ms
            frame[schema.prediction] = list(predictions)
            if schema.probability and probabilities is not None:
                frame[schema.probability] = list(probabilities)
            if sub.asset_revision:
                frame["asset_revision"] = sub.asset_revision
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    return parse


def build_app(
    sub: Subscription,
    *,
    capture: PayloadCapture | None = None,
    provider: Provider | None = None,
    max_connections: int = 64,
) -> Starlette:
    if not sub.deployment_id:
        raise ValidationError(f"subscription {sub.name!r} names no deployment to proxy")
    provider = provider or sub.provider()
    if not hasattr(provider, "target_url") or not hasattr(provider, "parse_exchange"):
        raise ProviderError(f"the {getattr(provider, 'kind', '?')} provider cannot be proxied over HTTP")
    target = urlsplit(provider.target_url(sub.deployment_id))
    origin = f"{target.scheme}://{target.netloc}"
    capture_path = target.path or "/"
    capture = capture or PayloadCapture(sub, parser=exchange_parser(sub, provider))
    client = httpx.AsyncClient(
        base_url=origin,
        timeout=httpx.Timeout(60.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )

    async def forward(request: Request) -> Response:
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        started = time.perf_counter()
        try:
            upstream = await client.request(request.method, url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Response(
                b'{"error": "openmart proxy: the deployment timed out"}', 504, media_type="application/json"
            )
        except httpx.TransportError as exc:
            return Response(
                f'{{"error": "openmart proxy: deployment unreachable: {type(exc).__name__}"}}'.encode(),
                502,
                media_type="application/json",
            )
        elapsed_ms = (time.perf_counter() - started) * 1000
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        if request.method == "POST" and request.url.path == capture_path and upstream.is_success:
            scoring_id = str(uuid.uuid4())
            out_headers[SCORING_ID_HEADER] = scoring_id
            capture.submit_exchange(
                Exchange(scoring_id, pd.Timestamp.now(tz="UTC"), elapsed_ms, body, upstream.content)
            )
        return Response(upstream.content, upstream.status_code, headers=out_headers)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()
        capture.close()

    app = Starlette(
        routes=[Route("/{path:path}", forward, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])], lifespan=lifespan
    )
    app.state.capture = capture
    return app
