"""A channel's settings: what each kind takes, how they are checked, sealed and revealed.

``webhook``
    ``url`` (required, http or https). The whole URL is a secret: Slack's incoming-webhook URL
    *is* its token (``https://hooks.slack.com/services/T…/B…/<token>``). It is stored encrypted
    beside a redacted twin that shows where it points (``https://hooks.slack.com/***``), the way
    :func:`openmart.secrets.seal` keeps a URL with credentials. ``timeout`` (seconds, 10).
``email``
    ``host`` (required), ``port`` (587; 465 with ``tls=ssl``; 25 with ``tls=none``), ``to``
    (comma-separated), ``from``, ``username`` and ``password`` (sealed; both or neither),
    ``tls``: ``starttls`` (the default: the connection must upgrade, or nothing is sent),
    ``ssl`` (TLS from the first byte), or ``none`` (plain: only without credentials, for a
    relay on the same host); ``ca_file``: a PEM bundle to verify a private CA's certificate
    (the server's certificate and name are always verified); ``timeout`` (seconds, 30);
    ``subject_prefix`` (``[openmart]``).
both
    ``public_url``: the base of links to the dashboard (else ``OPENMART_PUBLIC_URL``).

Unknown settings are refused by name: a mistyped ``pasword=`` would otherwise be stored in clear.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from openmart import secrets
from openmart.config import Settings
from openmart.errors import ProviderError, SecretError, ValidationError
from openmart.mart.alert_channels import ChannelKind, parse_kind


# a ProviderError: the service answers 502 (an upstream failed), the CLI exits 1
class DeliveryError(ProviderError):
    """A message could not be delivered. ``permanent``: trying again as it is will not help (a
    refused address, a revoked webhook, a server without STARTTLS); the delivery is failed at
    once instead of retried. The message is scrubbed of secrets."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(secrets.scrub(message))
        self.permanent = permanent


WEBHOOK_SETTINGS = frozenset({"url", "timeout", "public_url"})
EMAIL_SETTINGS = frozenset(
    {"host", "port", "to", "from", "username", "password", "tls", "ca_file", "timeout", "subject_prefix", "public_url"}
)
TLS_MODES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
_ADDRESS = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+$")


def _http_url(value: str, key: str) -> str:
    split = urlsplit(value.strip())
    if split.scheme not in ("http", "https") or not split.netloc:
        raise ValidationError(f"setting {key!r}: expected an http(s) URL", column=key)
    return value.strip()


def _number(value: str, key: str, *, integer: bool = False, low: float = 0.0, high: float | None = None) -> str:
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ValidationError(f"setting {key!r}: expected {kind}, got {value!r}", column=key) from None
    if number <= low or (high is not None and number > high):
        bound = f"in ({low:g}, {high:g}]" if high is not None else f"above {low:g}"
        raise ValidationError(f"setting {key!r}: {value} is not {bound}", column=key)
    return str(number)


def _addresses(value: str, key: str) -> list[str]:
    found = [a.strip() for a in value.split(",") if a.strip()]
    if not found:
        raise ValidationError(f"setting {key!r}: give at least one address", column=key)
    for address in found:
        if not _ADDRESS.match(address):
            raise ValidationError(f"setting {key!r}: {address!r} is not an email address", column=key)
    return found


def validate(kind: ChannelKind | str, settings: Mapping[str, str]) -> dict[str, str]:
    """The settings of a channel of ``kind``, checked and with defaults filled in (clear values:
    the caller seals them); a ValidationError names the setting."""
    kind = parse_kind(str(kind))
    allowed = WEBHOOK_SETTINGS if kind is ChannelKind.WEBHOOK else EMAIL_SETTINGS
    clear = {str(k).strip(): str(v) for k, v in settings.items()}
    for key in clear:
        if key not in allowed:
            raise ValidationError(
                f"setting {key!r} is not one a {kind} channel takes: {', '.join(sorted(allowed))}", column=key
            )
    if clear.get("public_url"):
        clear["public_url"] = _http_url(clear["public_url"], "public_url").rstrip("/")
    if kind is ChannelKind.WEBHOOK:
        if not clear.get("url"):
            raise ValidationError("setting 'url' is required for a webhook channel", column="url")
        clear["url"] = _http_url(clear["url"], "url")
        clear["timeout"] = _number(clear.get("timeout", "10"), "timeout", high=300)
        return clear
    for key in ("host", "to", "from"):
        if not clear.get(key, "").strip():
            raise ValidationError(f"setting {key!r} is required for an email channel", column=key)
    clear["host"] = clear["host"].strip()
    tls = clear.get("tls", "starttls").strip().lower()
    if tls not in TLS_MODES:
        raise ValidationError(f"setting 'tls': choose {', '.join(TLS_MODES)} (got {tls!r})", column="tls")
    clear["tls"] = tls
    clear["port"] = _number(clear.get("port", str(DEFAULT_PORTS[tls])), "port", integer=True, high=65535)
    clear["to"] = ",".join(_addresses(clear["to"], "to"))
    [sender] = _addresses(clear["from"], "from")[:1]
    clear["from"] = sender
    if bool(clear.get("username")) != bool(clear.get("password")):
        missing = "password" if clear.get("username") else "username"
        raise ValidationError(f"setting {missing!r} is required with the other of username/password", column=missing)
    if tls == "none" and clear.get("password"):
        raise ValidationError(
            "setting 'tls': none would send the password in clear; openmart refuses (use starttls or ssl)",
            column="tls",
        )
    clear["timeout"] = _number(clear.get("timeout", "30"), "timeout", high=300)
    clear.setdefault("subject_prefix", "[openmart]")
    return clear


def secret_names(kind: ChannelKind | str) -> frozenset[str]:
    return frozenset({"url"}) if str(kind) == ChannelKind.WEBHOOK else frozenset({"password"})


def shown_url(url: str) -> str:
    """Where a webhook points, without its secret path: ``https://hooks.slack.com/***``."""
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc.rpartition('@')[2]}/{secrets.MASK}"


def seal(
    kind: ChannelKind | str, clear: Mapping[str, str], given_encrypted: set[str], config: Settings
) -> dict[str, str]:
    """Settings as they may be stored: the password (and any value given as ``enc:``) encrypted;
    a webhook's URL encrypted under ``sealed:url`` beside its redacted form."""
    rest = {k: v for k, v in clear.items() if not (k == "url" and str(kind) == ChannelKind.WEBHOOK)}
    stored = secrets.seal(rest, secret_names(kind) | given_encrypted, config)
    if str(kind) == ChannelKind.WEBHOOK:
        keyring = secrets.require_keyring(config, "a webhook's URL is a secret (Slack's carries its token)", "url")
        stored["url"] = shown_url(clear["url"])
        stored[secrets.SEALED_PREFIX + "url"] = keyring.encrypt(clear["url"])
    return stored


def reveal(stored: Mapping[str, str], config: Settings, label: str) -> dict[str, str]:
    """The clear settings, in memory only; every secret (and a webhook URL's path) is masked in
    openmart's messages and logs from now on."""
    try:
        clear = secrets.reveal(stored, config)
    except SecretError as exc:
        raise SecretError(f"alert channel {label}: {exc}") from None
    url = clear.get("url")
    if url and secrets.SEALED_PREFIX + "url" in stored:
        remember_url(url)
    return clear


def remember_url(url: str) -> None:
    """Mask a webhook URL from now on: whole, its path and query, and its long path segments
    (the token is the path, as Slack's, or a long segment of it)."""
    split = urlsplit(url)
    tail = split.path + (f"?{split.query}" if split.query else "")
    secrets.remember([url, tail, *(part for part in split.path.split("/") if len(part) >= 16)])
