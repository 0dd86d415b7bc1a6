"""openmart's ``custom`` provider: any HTTP endpoint that scores records as JSON.

Settings (``openmart bind add NAME --provider custom --set key=value``):

- ``url``: the scoring endpoint (required); the deployment is its path.
- ``mode``: ``single`` (one record per request, as a FastAPI ``/predict`` or Flask ``/prediction``
  route takes it; requests sent concurrently), ``records`` (a JSON list of records, wrapped as
  ``{records_field: [...]}`` when ``records_field`` is set), or ``fields_values`` (OpenScale's
  ``{"fields": [...], "values": [[...]]}``).
- ``prediction`` / ``probability``: JSON paths to them in the answer (defaults by mode:
  ``$.prediction``; ``$.predictions[*]``; the ``prediction`` field of a fields/values answer).
- ``label_map``: JSON object mapping what the model says to class labels, e.g. ``{"Churn": 1}``.
- ``auth``: ``none``, ``bearer`` (``token_env``: the variable holding the token, or ``token``) or
  ``header`` (``header``: its name, ``key_env``: the variable holding the key, or ``key``). ``token``
  and ``key`` are declared secret: openmart stores them encrypted; so are credentials in ``url``
  (``https://user:pw@host/...``, ``?api_key=...``), which is stored and shown redacted.
- ``timeout`` (s, default 10), ``concurrency`` (single mode, default 8).
- ``retries`` (default 3) and ``retry_budget`` (s, default 30): only a refused or reset connection,
  a connect timeout, 5xx, 429 and 408 are tried again (``httpkit.RetryPolicy``).
- ``version_header``: the answer header naming the model version (e.g. ``X-Model-Version``): the
  capture proxy gives its value to every record of that exchange as ``asset_revision``, so an
  endpoint that starts answering with a new version starts a new version in the mart by itself.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pandas as pd

from openmart import secrets
from openmart.errors import NotFound, ValidationError
from openmart.mart.versions import check_version
from openmart.providers import httpkit
from openmart.providers.base import BASIC_CAPABILITIES, Capability, Deployment, ScoreResult

DEFAULT_PATHS = {
    "single": ("$.prediction", "$.probability"),
    "records": ("$.predictions[*]", "$.probabilities[*]"),
    "fields_values": ("prediction", "probability"),
}


class CustomProvider:
    kind: ClassVar[str] = "custom"
    settings_help: ClassVar[Mapping[str, str]] = {
        "url": "scoring endpoint URL (required)",
        "mode": "single | records | fields_values (default single)",
        "prediction": "JSON path to the prediction in the answer",
        "probability": "JSON path to the probability (optional)",
        "label_map": 'JSON object mapping model outputs to class labels, e.g. {"Churn": 1}',
        "auth": "none | bearer | header",
        "token_env": "environment variable holding the bearer token",
        "header": "header name for auth=header (default X-Api-Key)",
        "key_env": "environment variable holding the API key",
        "timeout": "seconds (default 10)",
        "retries": "retries of failures a retry can mend: refused connection, 5xx, 429 (default 3)",
        "retry_budget": "seconds all tries of one request may take together (default 30)",
        "concurrency": "parallel requests in single mode (default 8)",
        "records_field": "records mode: wrap the list as {field: [...]}",
        "token": "the bearer token (stored encrypted; needs a key, see `openmart secrets init`)",
        "key": "the API key for auth=header (stored encrypted; needs a key)",
        "version_header": "answer header naming the model version (e.g. X-Model-Version): captured records carry it",
    }
    secret_settings: ClassVar[frozenset[str]] = frozenset({"token", "key"})
    #: scores, lists and describes; a plain HTTP endpoint keeps no capture or ground truth to read
    capabilities: ClassVar[frozenset[Capability]] = BASIC_CAPABILITIES

    def __init__(self, settings: Mapping[str, str], transport: httpx.BaseTransport | None = None) -> None:
        self.settings = dict(settings)
        self.url = settings["url"]
        self.mode = settings.get("mode", "single")
        default_pred, default_prob = DEFAULT_PATHS[self.mode]
        self.outputs = httpkit.OutputPaths.from_settings(settings, default_pred, default_prob)
        self.records_field = settings.get("records_field") or None
        self.timeout = httpkit.number(settings, "timeout", 10.0)
        self.retry = httpkit.RetryPolicy.from_settings(settings)
        self.concurrency = int(httpkit.number(settings, "concurrency", 8))
        self.version_header = (settings.get("version_header") or "").strip().lower() or None
        self._client = httpx.Client(
            timeout=self.timeout, transport=transport, limits=httpx.Limits(max_connections=max(self.concurrency, 4))
        )

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> dict[str, str]:
        unknown = sorted(set(settings) - set(cls.settings_help))
        if unknown:
            raise ValidationError(
                f"custom provider: unknown setting(s) {unknown} (known: {sorted(cls.settings_help)})", column=unknown[0]
            )
        url = settings.get("url")
        if not url or urlsplit(url).scheme not in ("http", "https"):
            raise ValidationError("custom provider: setting url=http(s)://... is required", column="url")
        if settings.get("mode", "single") not in DEFAULT_PATHS:
            raise ValidationError(f"custom provider: mode must be one of {sorted(DEFAULT_PATHS)}", column="mode")
        for key in ("prediction", "probability"):
            if settings.get(key, "").startswith("$"):
                httpkit.parse_path(settings[key])
        httpkit.label_map(settings)
        if settings.get("auth", "none") not in ("none", "bearer", "header"):
            raise ValidationError("custom provider: auth must be none, bearer or header", column="auth")
        if settings.get("auth") == "bearer" and not (settings.get("token_env") or settings.get("token")):
            raise ValidationError(
                "custom provider: auth=bearer needs token_env=VARIABLE or token=...", column="token_env"
            )
        if settings.get("auth") == "header" and not (settings.get("key_env") or settings.get("key")):
            raise ValidationError("custom provider: auth=header needs key_env=VARIABLE or key=...", column="key_env")
        for key in ("timeout", "retries", "concurrency"):
            httpkit.number(settings, key, 0)
        httpkit.RetryPolicy.from_settings(settings)
        header = settings.get("version_header")
        if header is not None and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", str(header).strip()):
            raise ValidationError(
                f"custom provider: version_header {header!r} is not an HTTP header name", column="version_header"
            )
        return dict(settings)

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], transport: httpx.BaseTransport | None = None) -> CustomProvider:
        if not settings.get("url"):
            raise ValidationError("custom provider: setting url is required", column="url")
        return cls(settings, transport)

    # -- the protocol ---------------------------------------------------------------------------
    @property
    def shown_url(self) -> str:
        """The URL as messages and ``deployments`` may show it (credentials as ***)."""
        return secrets.redact_url(self.url)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    def list_deployments(self) -> list[Deployment]:
        return [self.describe(self.path)]

    def describe(self, deployment_id: str) -> Deployment:
        if deployment_id not in (self.path, self.url, "default"):
            raise NotFound(f"this custom binding serves {self.path!r} ({self.shown_url}), not {deployment_id!r}")
        return Deployment(self.path, self.path, "url", {"url": self.shown_url, "mode": self.mode})

    def target_url(self, deployment_id: str) -> str:
        self.describe(deployment_id)
        return self.url

    def close(self) -> None:
        self._client.close()

    def _post(self, body: Any) -> Any:
        def once() -> Any:
            response = httpkit.send(
                self._client, "POST", self.url, json=body, headers=httpkit.auth_headers(self.settings)
            )
            return httpkit.json_body(response)

        return self.retry.call(once)

    def _decode(self, document: Any, n: int) -> tuple[list[Any], list[Any] | None]:
        return self.outputs.decode(document, n, self.shown_url)

    def score(self, deployment_id: str, records: pd.DataFrame) -> ScoreResult:
        self.describe(deployment_id)
        started = time.perf_counter()
        bodies = httpkit.encode(records, self.mode, self.records_field)
        if self.mode == "single":
            with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(bodies)))) as pool:
                answers = list(pool.map(self._post, bodies))
            decoded = [self._decode(a, 1) for a in answers]
            preds = [p[0] for p, _ in decoded]
            probs = [q[0] for _, q in decoded] if all(q is not None for _, q in decoded) else None
            requests = len(bodies)
        else:
            preds, probs = self._decode(self._post(bodies[0]), len(records))
            requests = 1
        return ScoreResult(preds, probs, requests, (time.perf_counter() - started) * 1000)

    @property
    def exchange_headers(self) -> tuple[str, ...]:
        """The answer headers the capture proxy keeps for :meth:`parse_exchange`."""
        return (self.version_header,) if self.version_header else ()

    def parse_exchange(
        self, request: bytes, response: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], list[Any], list[Any] | None]:
        """Records, predictions and probabilities of one captured request/response pair; with
        ``version_header`` set and found in the answer's ``headers`` (names in lower case), each
        record carries its value as ``asset_revision``."""
        rows = httpkit.decode_request(json.loads(request), self.mode, self.records_field)
        preds, probs = self._decode(json.loads(response), len(rows))
        version = (headers or {}).get(self.version_header or "", "").strip()
        if version:
            # a version the mart would refuse sets this exchange aside, never its whole batch
            version = check_version(version, f"{self.version_header} header")
            rows = [{**row, "asset_revision": version} for row in rows]
        return rows, preds, probs
