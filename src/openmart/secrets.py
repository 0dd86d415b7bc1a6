"""Secrets in binding settings: declared by providers, recognised in URLs, encrypted at rest,
masked everywhere else.

What is a secret
    - every setting a provider declares in its ``secret_settings`` (``token``, ``key``...);
    - every setting whose *name* says so (``password``, ``api_key``, ``*_token``...), whatever the
      provider; references (``token_env``, ``role_arn``, ``*_file``, ``*_profile``) are not;
    - credentials inside any URL-valued setting: the userinfo (``https://user:pw@host``) and query
      or fragment parameters with secret-like names (``?api_key=``, ``&sig=``, ``#access_token=``);
    - any value the user gave as ``enc:<token>`` (it must decrypt with the key, or it is refused).

How it is stored (the ``bindings.settings`` JSONB)
    A secret setting is stored as ``enc:<Fernet token>``. A URL carrying credentials is stored
    redacted (``https://***@host/p?api_key=***``) so that every reader of the mart sees where it
    points, and the whole URL is stored encrypted beside it under ``sealed:<setting>``. The clear
    values exist only in memory, when :func:`reveal` builds the adapter's settings.

The key
    ``OPENMART_SECRET_KEY`` (one Fernet key, or several comma-separated: the first encrypts, all
    decrypt), else the key file ``$OPENMART_SECRET_KEY_FILE`` or ``$OPENMART_DATA_DIR/secret.key``,
    which must be mode 0600. openmart never makes a key on its own: a key made silently is a key
    nobody backs up, and a second machine sharing the same PostgreSQL would make a different one
    and be unable to read the first one's secrets. ``openmart secrets init`` makes the file.

Masking
    Every clear value :func:`reveal` hands out is remembered for the life of the process;
    :func:`scrub` replaces those values (and URL credentials by pattern) with ``***``. It is applied
    to provider error messages, the CLI's error line and JSON/table output, and every log record
    (a log-record factory installed on the first reveal).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from openmart.errors import OpenmartError, SecretError, ValidationError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

    from openmart.config import Settings

ENCRYPTED_PREFIX = "enc:"
#: ``sealed:url`` holds (encrypted) the clear form of the setting ``url``, stored redacted
SEALED_PREFIX = "sealed:"
MASK = "***"
KEY_ENV = "OPENMART_SECRET_KEY"
KEY_FILE_ENV = "OPENMART_SECRET_KEY_FILE"
KEY_FILE_NAME = "secret.key"
#: shorter values are encrypted and redacted in structured output, but not masked in free text:
#: masking "abc" everywhere would mangle unrelated words
MIN_MASKED_LENGTH = 4

_SECRET_KEY = re.compile(
    r"(^|_)(token|password|passwd|secret|api_key|apikey|key|access_key|"
    r"secret_access_key|session_token|credentials?)$",
    re.IGNORECASE,
)
_REFERENCE_SUFFIXES = ("_env", "_arn", "_profile", "_file")
# query parameter names that carry credentials: api_key, key, token, access_token, password,
# secret, client_secret, signature, sig (Azure SAS), X-Amz-Signature, X-Amz-Credential, auth...
_SECRET_PARAM = re.compile(
    r"(^|[_.-])(key|apikey|token|password|passwd|pwd|secret|signature|sig|credentials?|auth|authorization)$",
    re.IGNORECASE,
)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#\"'<>]+@")
_URL_PARAM = re.compile(r"([?&;#])([^=&;#\s\"'<>]+)=([^&;#\s\"'<>]*)")
_HOW_TO_KEY = "run `openmart secrets init` (makes a 0600 key file) or set OPENMART_SECRET_KEY"


# -- recognising secrets ---------------------------------------------------------------------------


def is_secret_key(key: str) -> bool:
    """A setting whose name says it holds a secret (references such as ``token_env`` do not)."""
    return bool(_SECRET_KEY.search(key)) and not key.endswith(_REFERENCE_SUFFIXES)


def is_secret_param(name: str) -> bool:
    return bool(_SECRET_PARAM.search(unquote(name)))


@dataclass(frozen=True)
class UrlSecrets:
    """A URL with its credentials: the form that may be shown, and the secret parts."""

    redacted: str
    parts: tuple[str, ...]


def find_url_secrets(value: str) -> UrlSecrets | None:
    """The credentials in a URL-valued setting, or None when there are none (or it is no URL)."""
    if "://" not in value:
        return None
    try:
        split = urlsplit(value)
    except ValueError:
        return None
    if not split.scheme or not split.netloc:
        return None
    parts: list[str] = []
    netloc = split.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and userinfo:
        parts += _userinfo_parts(userinfo)
        netloc = f"{MASK}@{host}"
    query, query_parts = _redact_params(split.query)
    fragment, fragment_parts = _redact_params(split.fragment)
    parts += query_parts + fragment_parts
    if not parts:
        return None
    redacted = f"{split.scheme}://{netloc}{split.path}"
    redacted += f"?{query}" if query or "?" in value else ""
    redacted += f"#{fragment}" if split.fragment else ""
    return UrlSecrets(redacted, tuple(dict.fromkeys(parts)))


def _userinfo_parts(userinfo: str) -> list[str]:
    # the whole userinfo is secret: a token is often given as the user name (https://TOKEN@host)
    user, _, password = userinfo.partition(":")
    parts = [userinfo, unquote(userinfo)]
    parts += [p for p in (password, unquote(password)) if p]
    # what httpx sends for it: Authorization: Basic base64(user:password)
    parts.append(base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode())
    return parts


def _redact_params(text: str) -> tuple[str, list[str]]:
    """``a=1&api_key=s`` -> ``a=1&api_key=***`` and the secret values (order and encoding kept)."""
    if not text:
        return text, []
    found: list[str] = []
    pairs = []
    for pair in text.split("&"):
        name, eq, value = pair.partition("=")
        if eq and value and is_secret_param(name):
            found += [value, unquote(value)]
            pair = f"{name}={MASK}"
        pairs.append(pair)
    return "&".join(pairs), found


def redact_url(value: str) -> str:
    """A URL as it may be shown: userinfo and secret parameters replaced with ``***``."""
    found = find_url_secrets(value)
    return found.redacted if found else value


# -- masking in free text --------------------------------------------------------------------------

_masks: set[str] = set()
_masks_lock = threading.Lock()
_log_masking_installed = False


def remember(values: Iterable[str]) -> None:
    """Mask these values in everything :func:`scrub` sees from now on (this process only)."""
    new = set()
    for value in values:
        for form in (value, quote(value, safe="")):
            if len(form) >= MIN_MASKED_LENGTH:
                new.add(form)
    if new:
        with _masks_lock:
            _masks.update(new)
        _install_log_masking()


def scrub_known(text: str) -> str:
    """``text`` with every remembered secret replaced by ``***`` (data output: patterns are left
    alone there, a payload may hold URLs of its own; costs nothing until a secret is revealed)."""
    if not text or not _masks:
        return text
    with _masks_lock:
        # longest first: a userinfo containing a remembered password is masked whole
        masks = sorted(_masks, key=len, reverse=True)
    for mask in masks:
        if mask in text:
            text = text.replace(mask, MASK)
    return text


def scrub(text: str) -> str:
    """``text`` with every remembered secret and every URL credential replaced by ``***``."""
    if not text:
        return text
    text = scrub_known(text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _URL_PARAM.sub(_scrub_param, text)


def _scrub_param(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    return f"{sep}{name}={MASK}" if value and is_secret_param(name) else match.group(0)


def scrub_exception(exc: BaseException) -> BaseException:
    """The exception with its text arguments scrubbed in place (type and attributes kept)."""
    exc.args = tuple(scrub(a) if isinstance(a, str) else a for a in exc.args)
    body = getattr(exc, "body", None)
    if isinstance(body, str):
        exc.body = scrub(body)  # type: ignore[attr-defined]
    return exc


@contextmanager
def scrubbed_errors() -> Iterator[None]:
    """openmart errors leaving the block carry no remembered secret."""
    try:
        yield
    except OpenmartError as exc:
        scrub_exception(exc)
        raise


def _install_log_masking() -> None:
    """Mask secrets in every log record of the process, whoever handles it: a filter on the
    ``openmart`` logger would miss records of child loggers (filters do not propagate), and the
    handlers belong to the application."""
    global _log_masking_installed
    with _masks_lock:
        if _log_masking_installed:
            return
        _log_masking_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's business to report, not ours
            return record
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # formatters reuse exc_text when set: the traceback is rendered once, scrubbed
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


# -- keys ------------------------------------------------------------------------------------------


def key_file_path(settings: Settings) -> Path:
    explicit = os.environ.get(KEY_FILE_ENV)
    return Path(explicit).expanduser() if explicit else settings.data_dir / KEY_FILE_NAME


@dataclass(frozen=True)
class Keyring:
    """The keys secrets are encrypted with: the first encrypts, every one decrypts."""

    keys: tuple[str, ...]
    #: where the keys came from, for messages: "OPENMART_SECRET_KEY" or "key file /path"
    source: str
    #: the key file, when the keys came from one (rotation replaces it)
    path: Path | None = None

    def _fernets(self) -> list[Fernet]:
        from cryptography.fernet import Fernet

        try:
            return [Fernet(k.encode()) for k in self.keys]
        except ValueError:
            raise SecretError(
                f"the key in {self.source} is not a Fernet key (32 url-safe base64 bytes); "
                "`openmart secrets init` makes one"
            ) from None

    def _fernet(self) -> MultiFernet:
        from cryptography.fernet import MultiFernet

        return MultiFernet(self._fernets())

    def encrypt(self, text: str) -> str:
        return ENCRYPTED_PREFIX + self._fernet().encrypt(text.encode()).decode()

    def decrypt(self, value: str, what: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet().decrypt(value.removeprefix(ENCRYPTED_PREFIX).encode()).decode()
        except (InvalidToken, ValueError):
            raise SecretError(f"{what} cannot be decrypted with the key in {self.source}") from None

    def rotate(self, value: str, new_key: str, what: str) -> str:
        """``value`` re-encrypted under ``new_key`` alone (MultiFernet.rotate: decrypt with any of
        the old keys, encrypt with the new one, keeping the token's timestamp)."""
        from cryptography.fernet import Fernet, InvalidToken, MultiFernet

        rotating = MultiFernet([Fernet(new_key.encode()), *self._fernets()])
        try:
            return ENCRYPTED_PREFIX + rotating.rotate(value.removeprefix(ENCRYPTED_PREFIX).encode()).decode()
        except (InvalidToken, ValueError):
            raise SecretError(f"{what} cannot be decrypted with the key in {self.source}") from None


def new_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def load_keyring(settings: Settings) -> Keyring | None:
    """The key from the environment, else the key file; None when neither is there."""
    if settings.secret_key:
        keys = tuple(k.strip() for k in settings.secret_key.split(",") if k.strip())
        return Keyring(keys, KEY_ENV)
    path = key_file_path(settings)
    if not path.exists():
        return None
    check_key_file_mode(path)
    keys = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not keys:
        raise SecretError(f"key file {path} is empty; remove it and run `openmart secrets init`")
    return Keyring(keys, f"key file {path}", path)


def require_keyring(settings: Settings, why: str, column: str | None = None) -> Keyring:
    """The keyring, or one line saying why it is needed and how to make one (a ValidationError
    naming the setting when it is the user's input that needs it)."""
    keyring = load_keyring(settings)
    if keyring is None:
        message = f"{why}, and no key is set: {_HOW_TO_KEY} (key file: {key_file_path(settings)})"
        raise SecretError(message) if column is None else ValidationError(message, column=column)
    return keyring


def check_key_file_mode(path: Path) -> None:
    """Refuse a key file others may read, as ssh refuses such a private key."""
    if os.name == "nt":  # no POSIX modes; the ACL is the user's profile's
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SecretError(
            f"key file {path} is readable by group or others (mode {mode:04o}); openmart refuses it: "
            f"run `chmod 600 {path}`"
        )


def write_key_file(path: Path, key: str) -> None:
    """Write a new key file, mode 0600 from its creation (never a moment readable by others);
    an existing file is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def create_key_file(settings: Settings) -> Path:
    """``openmart secrets init``: a new key in the key file."""
    if settings.secret_key:
        raise SecretError(f"{KEY_ENV} is set and is used before any key file: unset it to use a key file")
    path = key_file_path(settings)
    if path.exists():
        raise SecretError(f"key file {path} exists already; openmart never overwrites a key (rotate it instead)")
    write_key_file(path, new_key())
    return path


# -- settings --------------------------------------------------------------------------------------


def open_given(settings: Mapping[str, str], config: Settings) -> tuple[dict[str, str], set[str]]:
    """Settings as the user gave them, with ``enc:`` values decrypted: such a value must decrypt
    with the key, or it is refused (a prefix alone must never pass for encryption). Returns the
    clear settings and the names given encrypted (secrets, whatever their name)."""
    clear: dict[str, str] = {}
    encrypted: set[str] = set()
    keyring: Keyring | None = None
    for key, value in settings.items():
        if key.startswith(SEALED_PREFIX):
            raise ValidationError(f"setting {key!r}: names starting with {SEALED_PREFIX!r} are openmart's", column=key)
        if value.startswith(ENCRYPTED_PREFIX):
            keyring = keyring or require_keyring(config, f"setting {key!r} is given encrypted (enc:...)", key)
            try:
                value = keyring.decrypt(value, f"setting {key!r} (given as enc:...)")
            except SecretError as exc:  # the user's input is what is wrong: name the setting
                raise ValidationError(str(exc), column=key) from None
            encrypted.add(key)
        clear[key] = value
    return clear, encrypted


def remember_settings(settings: Mapping[str, str], secret_names: Iterable[str]) -> None:
    """Mask the secret values of clear settings from now on."""
    names = set(secret_names)
    values: list[str] = []
    for key, value in settings.items():
        if key in names or is_secret_key(key):
            values.append(value)
        found = find_url_secrets(value)
        if found:
            values += [value, *found.parts]
    remember(v for v in values if v)


def seal(settings: Mapping[str, str], secret_names: Iterable[str], config: Settings) -> dict[str, str]:
    """Settings as they may be stored: secrets encrypted, URL credentials moved into a sealed
    twin and the URL kept redacted; refused (one line) when a secret is there and no key is."""
    names = set(secret_names)
    keyring: Keyring | None = None
    stored: dict[str, str] = {}
    for key, value in settings.items():
        found = find_url_secrets(value)
        if value and (key in names or is_secret_key(key)):
            keyring = keyring or require_keyring(config, f"setting {key!r} looks like a secret to encrypt", key)
            stored[key] = keyring.encrypt(value)
        elif found:
            keyring = keyring or require_keyring(config, f"setting {key!r} has credentials in its URL to encrypt", key)
            stored[key] = found.redacted
            stored[SEALED_PREFIX + key] = keyring.encrypt(value)
        else:
            stored[key] = value
    return stored


def reveal(stored: Mapping[str, str], config: Settings, binding: str = "") -> dict[str, str]:
    """Settings as the adapter needs them (in memory only): secrets decrypted, sealed URLs put
    back. Every clear secret is remembered, so that no message or log line shows it."""
    label = f"binding {binding!r}: " if binding else ""
    needs_key = any(str(v).startswith(ENCRYPTED_PREFIX) for v in stored.values())
    keyring = require_keyring(config, f"{label}its secrets are encrypted") if needs_key else None
    clear = {k: str(v) for k, v in stored.items() if not k.startswith(SEALED_PREFIX)}
    secret_names: set[str] = set()
    for key, value in stored.items():
        if not str(value).startswith(ENCRYPTED_PREFIX):
            continue
        assert keyring is not None
        name = key.removeprefix(SEALED_PREFIX)
        clear[name] = keyring.decrypt(str(value), f"{label}setting {name!r}")
        secret_names.add(name)
    remember_settings(clear, secret_names)
    return clear


def redact(stored: Mapping[str, str]) -> dict[str, str]:
    """Settings as they may be shown: sealed twins hidden, encrypted values as ``***``; a secret
    stored in clear by an older openmart is shown masked too (``openmart secrets rotate`` seals it)."""
    shown: dict[str, str] = {}
    for key, value in stored.items():
        value = str(value)
        if key.startswith(SEALED_PREFIX):
            continue
        if value.startswith(ENCRYPTED_PREFIX) or (value and is_secret_key(key)):
            shown[key] = MASK
        else:
            shown[key] = redact_url(value)
    return shown


def reencrypt(
    stored: Mapping[str, str], old: Keyring, new_key: str, secret_names: Iterable[str], binding: str
) -> tuple[dict[str, str], int]:
    """A binding's settings with every secret under ``new_key`` alone, and how many values were
    (re)encrypted; secrets an older openmart kept in clear are sealed on the way."""
    names = set(secret_names)
    rotated: dict[str, str] = {}
    count = 0
    new = Keyring((new_key,), "the new key")
    for key, value in stored.items():
        value = str(value)
        found = None if key.startswith(SEALED_PREFIX) else find_url_secrets(value)
        if value.startswith(ENCRYPTED_PREFIX):
            rotated[key] = old.rotate(value, new_key, f"binding {binding!r}: setting {key!r}")
        elif value and (key in names or is_secret_key(key)):
            rotated[key] = new.encrypt(value)
        elif found and SEALED_PREFIX + key not in stored:
            rotated[key] = found.redacted
            rotated[SEALED_PREFIX + key] = new.encrypt(value)
        else:
            rotated[key] = value
            continue
        count += 1
    return rotated, count


def from_env(variable: str) -> str:
    """Resolve an ``*_env`` reference; the error names the variable, never a value."""
    value = os.environ.get(variable)
    if not value:
        raise SecretError(f"environment variable {variable!r} (named by the binding) is not set")
    remember([value])
    return value
