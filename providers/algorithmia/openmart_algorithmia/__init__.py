"""openmart's ``algorithmia`` provider: models behind the Algorithmia API shape.

- score: ``POST {base_url}/v1/algo/{owner}/{algo}/{version}?timeout=N`` with
  ``Authorization: Simple <key>``; the answer is ``{"result": ..., "metadata": {...}}`` or
  ``{"error": {"message": ..., "stacktrace": ...}}``;
- versions: ``GET {base_url}/v1/algorithms/{owner}/{algo}/versions``.

Settings: ``base_url`` (required), ``key_env`` (the variable holding the API key) or ``key`` (the key
itself, declared secret: stored encrypted), ``algorithms``
(comma-separated ``owner/algo`` to list), ``input`` (``records`` default, ``pandas_split``,
``pandas_json`` — the classic pattern posting ``DataFrame.to_json()`` —, ``fields_values``),
``prediction``/``probability`` (JSON paths into ``result``; defaults ``$.predictions[*]`` and
``$.probabilities[*]``), ``label_map``, ``timeout`` (s, default 30), ``retries`` (default 3) and
``retry_budget`` (s, default 30; see ``httpkit.RetryPolicy`` for what is retried).
Deployments are named ``owner/algo/version``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pandas as pd

from openmart import secrets
from openmart.errors import NotFound, ProviderHTTPError, ProviderResponseError, ValidationError
from openmart.providers import httpkit
from openmart.providers.base import BASIC_CAPABILITIES, Capability, Deployment, ScoreResult

_DEPLOYMENT = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.+-]+$")
INPUTS = ("records", "pandas_split", "pandas_json", "fields_values")


class AlgorithmiaProvider:
    kind: ClassVar[str] = "algorithmia"
    settings_help: ClassVar[Mapping[str, str]] = {
        "base_url": "the host's base URL (required)",
        "key_env": "environment variable holding the API key (sent as 'Simple <key>')",
        "algorithms": "comma-separated owner/algo whose versions `deployments` lists",
        "input": "records | pandas_split | pandas_json | fields_values (default records)",
        "prediction": "JSON path into result (default $.predictions[*])",
        "probability": "JSON path into result (default $.probabilities[*])",
        "label_map": 'JSON object mapping model outputs to class labels, e.g. {"Churn": 1}',
        "timeout": "seconds (default 30; also sent as ?timeout=)",
        "retries": "retries of failures a retry can mend: refused connection, 5xx, 429 (default 3)",
        "retry_budget": "seconds all tries of one call may take together (default 30)",
        "key": "the API key (stored encrypted; needs a key, see `openmart secrets init`)",
    }
    #: credentials in base_url (userinfo, ?key=) are found by the core without a declaration
    secret_settings: ClassVar[frozenset[str]] = frozenset({"key"})
    #: scores, lists and describes; a plain HTTP endpoint keeps no capture or ground truth to read
    capabilities: ClassVar[frozenset[Capability]] = BASIC_CAPABILITIES

    def __init__(self, settings: Mapping[str, str], transport: httpx.BaseTransport | None = None) -> None:
        self.settings = dict(settings)
        self.base_url = settings["base_url"].rstrip("/")
        self.input = settings.get("input", "records")
        self.outputs = httpkit.OutputPaths.from_settings(settings, "$.predictions[*]", "$.probabilities[*]")
        self.timeout = httpkit.number(settings, "timeout", 30.0)
        self.retry = httpkit.RetryPolicy.from_settings(settings)
        self._client = httpx.Client(timeout=self.timeout + 5, transport=transport)

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> dict[str, str]:
        unknown = sorted(set(settings) - set(cls.settings_help))
        if unknown:
            raise ValidationError(
                f"algorithmia provider: unknown setting(s) {unknown} (known: {sorted(cls.settings_help)})",
                column=unknown[0],
            )
        base = settings.get("base_url")
        if not base or urlsplit(base).scheme not in ("http", "https"):
            raise ValidationError("algorithmia provider: setting base_url=http(s)://... is required", column="base_url")
        if settings.get("input", "records") not in INPUTS:
            raise ValidationError(f"algorithmia provider: input must be one of {list(INPUTS)}", column="input")
        httpkit.label_map(settings)
        httpkit.RetryPolicy.from_settings(settings)
        return dict(settings)

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, str], transport: httpx.BaseTransport | None = None
    ) -> AlgorithmiaProvider:
        if not settings.get("base_url"):
            raise ValidationError("algorithmia provider: setting base_url is required", column="base_url")
        return cls(settings, transport)

    def _headers(self) -> dict[str, str]:
        key = self.settings.get("key") or (
            secrets.from_env(self.settings["key_env"]) if self.settings.get("key_env") else None
        )
        return {"Authorization": f"Simple {key}"} if key else {}

    def _get(self, url: str) -> Any:
        return self.retry.call(
            lambda: httpkit.json_body(httpkit.send(self._client, "GET", url, headers=self._headers()))
        )

    def versions(self, algorithm: str) -> list[dict[str, Any]]:
        data = self._get(f"{self.base_url}/v1/algorithms/{algorithm}/versions")
        return list(data.get("results", []))

    def list_deployments(self) -> list[Deployment]:
        found = []
        for algo in (a.strip() for a in self.settings.get("algorithms", "").split(",") if a.strip()):
            for v in self.versions(algo):
                version = v.get("version_info", {}).get("semantic_version")
                if version:
                    found.append(
                        Deployment(
                            f"{algo}/{version}",
                            f"{algo}/{version}",
                            "algorithm-version",
                            {"created": v.get("created"), "algorithm": algo},
                        )
                    )
        return found

    def describe(self, deployment_id: str) -> Deployment:
        if not _DEPLOYMENT.match(deployment_id):
            raise ValidationError(f"algorithmia deployment {deployment_id!r}: expected owner/algo/version")
        algo, _, version = deployment_id.rpartition("/")
        for v in self.versions(algo):
            if v.get("version_info", {}).get("semantic_version") == version:
                return Deployment(
                    deployment_id,
                    deployment_id,
                    "algorithm-version",
                    {
                        "created": v.get("created"),
                        "algorithm": algo,
                        "url": secrets.redact_url(self.target_url(deployment_id)),
                    },
                )
        raise NotFound(f"algorithm {algo} has no version {version} at {secrets.redact_url(self.base_url)}")

    def target_url(self, deployment_id: str) -> str:
        return f"{self.base_url}/v1/algo/{deployment_id}"

    def close(self) -> None:
        self._client.close()

    def _result(self, document: Any, url: str) -> Any:
        if isinstance(document, dict) and "error" in document:
            err = document["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise ProviderHTTPError(f"POST {url}: the algorithm failed: {message}", status=None, body=json.dumps(err))
        if not isinstance(document, dict) or "result" not in document:
            raise ProviderResponseError(f"POST {url}: the answer has no 'result' field")
        return document["result"]

    def _decode(self, result: Any, n: int) -> tuple[list[Any], list[Any] | None]:
        return self.outputs.decode(result, n)

    def score(self, deployment_id: str, records: pd.DataFrame) -> ScoreResult:
        url = self.target_url(deployment_id)
        started = time.perf_counter()
        (body,) = httpkit.encode(records, self.input)

        def once() -> Any:
            response = httpkit.send(
                self._client, "POST", url, json=body, headers=self._headers(), params={"timeout": int(self.timeout)}
            )
            return httpkit.json_body(response)

        result = self._result(self.retry.call(once), secrets.redact_url(url))
        preds, probs = self._decode(result, len(records))
        return ScoreResult(preds, probs, 1, (time.perf_counter() - started) * 1000)

    def parse_exchange(
        self, request: bytes, response: bytes
    ) -> tuple[list[dict[str, Any]], list[Any], list[Any] | None]:
        rows = httpkit.decode_request(json.loads(request), self.input)
        preds, probs = self._decode(self._result(json.loads(response), "(captured)"), len(rows))
        return rows, preds, probs
