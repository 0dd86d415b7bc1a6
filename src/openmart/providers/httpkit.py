"""What the HTTP adapters share: wire encodings, a small JSONPath, label maps, auth from
references, retries with backoff, and mapping of transport errors into openmart's tree.

JSONPath subset: ``$`` (the document), ``.key`` or ``['key']``, ``[n]``, ``[*]`` (every item of a
list, or every value of an object in key order — e.g. a pandas JSON frame keyed by row id).
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pandas as pd

from openmart import secrets
from openmart.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderThrottled,
    ProviderTimeout,
    ValidationError,
)
from openmart.providers.base import records_to_rows

T = TypeVar("T")
_TOKEN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\['([^']*)'\]|\[(\d+)\]|\[\*\]|\.\*")


# -- JSONPath -------------------------------------------------------------------------------------


def parse_path(path: str) -> list[str | int | None]:
    """Tokens of a path: a key, an index, or None for a wildcard."""
    if not path.startswith("$"):
        path = "$." + path
    tokens: list[str | int | None] = []
    pos = 1
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ValidationError(
                f"JSON path {path!r}: cannot read {path[pos:]!r} (supported: $, .key, ['key'], [n], [*])"
            )
        key, quoted, index = m.groups()
        tokens.append(
            key if key is not None else quoted if quoted is not None else int(index) if index is not None else None
        )
        pos = m.end()
    return tokens


def extract(document: Any, path: str) -> Any:
    """The value at ``path`` (a list when the path has a wildcard). A missing step raises
    ProviderResponseError naming the path and where it broke."""
    values, wild = [document], False
    walked = "$"
    for token in parse_path(path):
        nxt = []
        for v in values:
            if token is None:
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v[k] for k in _ordered_keys(v))
                else:
                    raise ProviderResponseError(f"response has no list at {walked} (path {path})")
            elif isinstance(token, int):
                if not isinstance(v, list) or token >= len(v):
                    raise ProviderResponseError(f"response has no item {walked}[{token}] (path {path})")
                nxt.append(v[token])
            else:
                if not isinstance(v, dict) or token not in v:
                    raise ProviderResponseError(f"response has no field {walked}.{token} (path {path})")
                nxt.append(v[token])
        wild = wild or token is None
        walked += "[*]" if token is None else f"[{token}]" if isinstance(token, int) else f".{token}"
        values = nxt
    return values if wild else values[0]


def _ordered_keys(obj: dict[str, Any]) -> list[str]:
    keys = list(obj)
    return sorted(keys, key=int) if all(k.lstrip("-").isdigit() for k in keys) else keys


# -- encodings ------------------------------------------------------------------------------------

MODES = ("single", "records", "fields_values", "pandas_split", "pandas_json")


def encode(records: pd.DataFrame, mode: str, records_key: str | None = None) -> list[Any]:
    """Request bodies for a batch: one per record for ``single``, else one for the batch."""
    rows = records_to_rows(records)
    if mode == "single":
        return rows
    if mode == "records":
        return [{records_key: rows} if records_key else rows]
    if mode == "fields_values":
        fields = list(records.columns)
        return [{"fields": fields, "values": [[r[f] for f in fields] for r in rows]}]
    if mode == "pandas_split":
        return [json.loads(records.to_json(orient="split", index=False))]
    if mode == "pandas_json":
        return [json.loads(records.reset_index(drop=True).to_json())]
    raise ValidationError(f"unknown encoding mode {mode!r} (choose from {', '.join(MODES)})", column="mode")


def decode_request(body: Any, mode: str, records_key: str | None = None) -> list[dict[str, Any]]:
    """The records a captured request carried, as plain dicts (cheap: the capture proxy decodes
    every exchange, and builds one DataFrame per batch of them)."""
    if mode == "single":
        return [body]
    if mode == "records":
        return list(body[records_key] if records_key else body)
    if mode == "fields_values":
        return [dict(zip(body["fields"], row, strict=True)) for row in body["values"]]
    if mode == "pandas_split":
        return [dict(zip(body["columns"], row, strict=True)) for row in body["data"]]
    if mode == "pandas_json":
        columns = list(body)
        keys = _ordered_keys(body[columns[0]]) if columns else []
        return [{c: body[c][k] for c in columns} for k in keys]
    raise ValidationError(f"unknown encoding mode {mode!r}", column="mode")


def fields_values_column(document: Mapping[str, Any], field: str) -> list[Any]:
    """A column of an OpenScale-shaped response ``{"fields": [...], "values": [[...]]}``."""
    fields = document.get("fields")
    if not isinstance(fields, list) or field not in fields:
        raise ProviderResponseError(f"response has no field {field!r} in its 'fields' {fields}")
    i = fields.index(field)
    return [row[i] for row in document.get("values", [])]


def outputs(document: Any, path: str) -> list[Any]:
    """Predictions (or probabilities) for a batch: a path, or a field name of fields/values."""
    if isinstance(document, dict) and "fields" in document and "values" in document and not path.startswith("$"):
        return fields_values_column(document, path)
    value = extract(document, path)
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class OutputPaths:
    """Where predictions and probabilities sit in a model's answer, and how to read them: the
    probability path the user gave must be there; a default one may be absent."""

    prediction: str
    probability: str
    probability_required: bool
    label_map: Mapping[str, Any] | None

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], prediction: str, probability: str) -> OutputPaths:
        return cls(
            settings.get("prediction", prediction),
            settings.get("probability", probability),
            "probability" in settings,
            label_map(settings),
        )

    def decode(self, document: Any, n: int, where: str = "") -> tuple[list[Any], list[Any] | None]:
        """``n`` predictions (label map applied) and probabilities (or None) from a document."""
        preds = outputs(document, self.prediction)
        probs = None
        if self.probability:
            try:
                probs = outputs(document, self.probability)
            except ProviderResponseError:
                if self.probability_required:
                    raise
        prefix = f"{where}: " if where else ""
        if len(preds) != n:
            raise ProviderResponseError(f"{prefix}{len(preds)} predictions at {self.prediction} for {n} records")
        if probs is not None and len(probs) != n:
            raise ProviderResponseError(f"{prefix}{len(probs)} probabilities at {self.probability} for {n} records")
        return apply_label_map(preds, self.label_map), probs


# -- settings helpers -------------------------------------------------------------------------------


def label_map(settings: Mapping[str, str]) -> dict[str, Any] | None:
    raw = settings.get("label_map")
    if not raw:
        return None
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"setting label_map is not a JSON object: {exc}", column="label_map") from None
    if not isinstance(mapping, dict):
        raise ValidationError('setting label_map must be a JSON object such as {"Churn": 1}', column="label_map")
    return {str(k): v for k, v in mapping.items()}


def apply_label_map(values: Sequence[Any], mapping: Mapping[str, Any] | None) -> list[Any]:
    if not mapping:
        return list(values)
    return [mapping.get(str(v), v) for v in values]


def number(settings: Mapping[str, str], key: str, default: float) -> float:
    raw = settings.get(key)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValidationError(f"setting {key}={raw!r} is not a number", column=key) from None


def auth_headers(settings: Mapping[str, str]) -> dict[str, str]:
    """Headers for the binding's auth; the secret is read from the environment at call time
    (or is the value openmart keeps encrypted, decrypted in memory when the adapter is built)."""
    auth = settings.get("auth", "none")
    if auth == "none":
        return {}
    if auth == "bearer":
        token = settings.get("token") or secrets.from_env(_required(settings, "token_env"))
        return {"Authorization": f"Bearer {token}"}
    if auth == "header":
        key = settings.get("key") or secrets.from_env(_required(settings, "key_env"))
        return {settings.get("header", "X-Api-Key"): key}
    raise ValidationError(f"setting auth={auth!r}: choose none, bearer or header", column="auth")


def _required(settings: Mapping[str, str], key: str) -> str:
    if not settings.get(key):
        raise ValidationError(f"setting {key} is required", column=key)
    return settings[key]


# -- transport --------------------------------------------------------------------------------------


DEFAULT_RETRIES = 3  # retries after the first try
DEFAULT_RETRY_BUDGET = 30.0  # seconds for all tries and waits of one call
MAX_RETRIES = 10
MAX_RETRY_BUDGET = 600.0

# transport failures a new try can get past: a refused or reset connection, a connect timeout.
# Not a read timeout (the deployment has the request and is slow: asking again adds load and
# multiplies the wait), nor a malformed URL or protocol misuse (the same next time).
_RETRYABLE_TRANSPORT = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries only where a retry can help: connection refused or reset, connect timeouts,
    5xx (not 501/505), 429, 408 and throttling. Anything else (other 4xx, an answer that is not
    JSON or has the wrong shape, a model's own error) fails at once. Waits grow exponentially
    with jitter, a server's Retry-After is honoured, and all tries of one call share a total
    time budget: a try is not started when its wait would end past the budget."""

    retries: int = DEFAULT_RETRIES
    budget: float = DEFAULT_RETRY_BUDGET  # seconds
    backoff: float = 0.2  # seconds before the first retry; doubled each time
    max_backoff: float = 5.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> RetryPolicy:
        """From a binding's ``retries`` and ``retry_budget`` settings (validated here)."""
        retries = float(number(settings, "retries", DEFAULT_RETRIES))
        if not (retries.is_integer() and 0 <= retries <= MAX_RETRIES):
            raise ValidationError(
                f"setting retries={settings.get('retries')!r}: give a whole number from 0 to {MAX_RETRIES}",
                column="retries",
            )
        budget = number(settings, "retry_budget", DEFAULT_RETRY_BUDGET)
        if not 0 <= budget <= MAX_RETRY_BUDGET:
            raise ValidationError(
                f"setting retry_budget={settings.get('retry_budget')!r}: give seconds from 0 to {MAX_RETRY_BUDGET:.0f}",
                column="retry_budget",
            )
        return cls(retries=int(retries), budget=budget)

    def call(self, fn: Callable[[], T]) -> T:
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                return fn()
            except ProviderError as exc:
                if not retryable(exc):
                    raise
                wait = self.wait(exc, attempt)
                elapsed = time.monotonic() - started
                if attempt > self.retries or elapsed + wait > self.budget:
                    _say_tries(exc, attempt, elapsed, wait, self.budget)
                    raise
            time.sleep(wait)
            attempt += 1

    def wait(self, exc: ProviderError, attempt: int) -> float:
        """Seconds before try ``attempt + 1``: the server's Retry-After when it gave one, else
        exponential backoff with jitter (so many clients failing together do not return together)."""
        if isinstance(exc, ProviderHTTPError) and exc.retry_after is not None:
            return exc.retry_after
        ceiling = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def retryable(exc: ProviderError) -> bool:
    """Whether another try may succeed (see ``RetryPolicy``)."""
    if isinstance(exc, ProviderThrottled):
        return True
    if isinstance(exc, ProviderHTTPError):
        return exc.transient
    if isinstance(exc, ProviderConnectionError | ProviderTimeout):
        # send() keeps the transport error as the cause; without one, a connection error is retried
        cause = exc.__cause__
        if cause is None:
            return isinstance(exc, ProviderConnectionError)
        return isinstance(cause, _RETRYABLE_TRANSPORT)
    return False


def _say_tries(exc: ProviderError, attempt: int, elapsed: float, wait: float, budget: float) -> None:
    """Add to the last error's message how many tries were made and why they stopped."""
    tries = f"{attempt} {'try' if attempt == 1 else 'tries'} in {elapsed:.1f} s"
    why = f"; the next would start after the {budget:g} s retry budget" if elapsed + wait > budget else ""
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]} ({tries}{why})", *exc.args[1:])


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After of a 429 or 503 answer in seconds (it may be a number or an HTTP date)."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def server_message(response: httpx.Response) -> str:
    """The server's own words: Algorithmia's error.message, FastAPI's detail, or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if isinstance(err, str):
            return err
        if "detail" in body:
            return str(body["detail"])
        if "message" in body:
            return str(body["message"])
    return json.dumps(body)[:500]


def send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; transport failures and error statuses mapped into openmart's tree. Messages
    are scrubbed here, at the boundary: httpx's errors carry the URL (with its userinfo and
    query), and a server may echo the credential it was sent."""
    scrub = secrets.scrub
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(scrub(f"{method} {url}: no answer in time ({type(exc).__name__})")) from exc
    except httpx.ConnectError as exc:
        raise ProviderConnectionError(scrub(f"{method} {url}: cannot connect ({exc})")) from exc
    except httpx.TransportError as exc:
        raise ProviderConnectionError(scrub(f"{method} {url}: {type(exc).__name__}: {exc}")) from exc
    if response.status_code >= 400:
        message = server_message(response)
        raise ProviderHTTPError(
            scrub(f"{method} {url}: HTTP {response.status_code}: {message}"),
            status=response.status_code,
            body=scrub(response.text[:2000]),
            retry_after=retry_after(response),
        )
    return response


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderResponseError(
            secrets.scrub(f"{response.request.url}: the answer is not JSON: {response.text[:200]!r}")
        ) from exc
