"""No secret given to a binding is ever seen again in clear: not in any CLI output, error or log
line, not in any column of the mart. Real local HTTP servers check the credentials, so the
secrets are also shown to work after encryption, redaction and key rotation."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

import openmart
from openmart import secrets
from tests.http_fixtures import Script, ScriptedServer, Seen

# every secret is distinct, long enough to be masked, and free of characters JSON would escape
URL_USER, URL_PASSWORD = "alice", "pw-Url-7f3a9c11"
QUERY_API_KEY = "qk-4b8e2d1f55"
BEARER_TOKEN = "tok-9c2e6a7b33"
HEADER_KEY = "hk-1d5f8e3a77"
ALGO_KEY = "ak-6e4c2b9d08"
PRE_ENCRYPTED_TOKEN = "pre-3a7f1c5e92"
SECRETS = (URL_PASSWORD, QUERY_API_KEY, BEARER_TOKEN, HEADER_KEY, ALGO_KEY, PRE_ENCRYPTED_TOKEN)
BASIC = "Basic " + base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode()
FEATURES = ["age", "income"]


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # the developer's own key must not make a "no key" case pass or fail
    monkeypatch.delenv(secrets.KEY_ENV, raising=False)
    monkeypatch.delenv(secrets.KEY_FILE_ENV, raising=False)


# -- servers that check credentials ----------------------------------------------------------------


def _authorised(seen: Seen) -> bool:
    """Whether the request carries the credential its path expects (what a real host checks)."""
    headers = {k.lower(): v for k, v in seen.headers.items()}
    path = seen.path
    if path.startswith("/web/"):
        return headers.get("authorization") == BASIC and f"api_key={QUERY_API_KEY}" in path
    if path.startswith("/tok/"):
        return headers.get("authorization") == f"Bearer {BEARER_TOKEN}"
    if path.startswith("/hdr/"):
        return headers.get("x-api-key") == HEADER_KEY
    if path.startswith("/pre/"):
        return headers.get("authorization") == f"Bearer {PRE_ENCRYPTED_TOKEN}"
    if path.startswith("/v1/"):
        return headers.get("authorization") == f"Simple {ALGO_KEY}"
    return False


def _echo_denial(seen: Seen) -> tuple[int, Any]:
    """A hostile host: refuses, quoting back every credential it was sent."""
    headers = {k.lower(): v for k, v in seen.headers.items()}
    quoted = f"{seen.path} authorization={headers.get('authorization')} x-api-key={headers.get('x-api-key')}"
    return 401, {"error": {"message": f"denied: {quoted}"}}


def _answer(seen: Seen) -> tuple[int, Any]:
    if not _authorised(seen):
        return _echo_denial(seen)
    if seen.path.endswith("/versions"):
        return 200, {"results": [{"version_info": {"semantic_version": "1.0.0"}, "created": "2026-01-01"}]}
    if seen.path.startswith("/v1/algo/"):
        n = len(seen.body)
        return 200, {"result": {"predictions": [1] * n, "probabilities": [0.8] * n}}
    return 200, {"prediction": 1, "probability": 0.8}


@pytest.fixture
def good() -> Iterator[ScriptedServer]:
    server = ScriptedServer(Script(_answer))
    yield server
    server.close()


@pytest.fixture
def hostile() -> Iterator[ScriptedServer]:
    server = ScriptedServer(Script(_echo_denial))
    yield server
    server.close()


def _with_credentials(base: str, path: str) -> str:
    host = base.removeprefix("http://")
    return f"http://{URL_USER}:{URL_PASSWORD}@{host}{path}?api_key={QUERY_API_KEY}&mode=fast"


def _closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return _with_credentials(f"http://127.0.0.1:{port}", "/web/predict")


# -- what the CLI said, and what the mart holds ----------------------------------------------------


@dataclass
class Transcript:
    """Every CLI call's stdout and stderr, kept for the final grep."""

    texts: list[str]

    def run(self, cli: Any, *args: str, ok: bool = True) -> Any:
        result = cli(*args, ok=ok)
        # the command line itself is input and holds the secrets: only what openmart said is kept
        self.texts.append(f"$ openmart {args[0]}\n{result.stdout}\n{result.stderr}")
        return result


def mart_text(database_url: str, schema: str) -> dict[str, str]:
    """Every column of every table of the mart's schema, as text, by table.column: the columns are
    enumerated through information_schema, so a table added later is searched too."""
    from openmart.config import Settings
    from openmart.mart.engine import resolve

    engine = sa.create_engine(resolve(database_url, Settings.from_env()).url)
    found: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            columns = conn.execute(
                sa.text(
                    "SELECT c.table_name, c.column_name FROM information_schema.columns c "
                    "JOIN information_schema.tables t USING (table_schema, table_name) "
                    "WHERE c.table_schema = :s AND t.table_type = 'BASE TABLE' ORDER BY 1, 2"
                ),
                {"s": schema},
            ).all()
            for table, column in columns:
                values = conn.execute(
                    sa.text(f'SELECT "{column}"::text FROM "{schema}"."{table}" WHERE "{column}" IS NOT NULL')
                ).scalars()
                found[f"{table}.{column}"] = "\n".join(values)
    finally:
        engine.dispose()
    return found


def hits(texts: dict[str, str], needles: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(where, n) for where, text in texts.items() for n in needles if n in text]


def _score_file(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"age": rng.integers(18, 80, 60), "income": rng.normal(50, 10, 60)})
    ref["label"] = (ref["income"] > 50).astype(int)
    ref_path, new_path = tmp_path / "ref.csv", tmp_path / "new.csv"
    ref.to_csv(ref_path, index=False)
    ref[FEATURES].head(4).to_csv(new_path, index=False)
    return ref_path, new_path


# -- the test --------------------------------------------------------------------------------------


def test_no_secret_is_ever_shown_or_stored_in_clear(
    cli: Any,
    database_url: str,
    schema_name: str,
    tmp_path: Path,
    good: ScriptedServer,
    hostile: ScriptedServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx, openmart and every other logger, at their most talkative
    t = Transcript([])
    init = t.run(cli, "secrets", "init")
    key_file = tmp_path / "data" / "secret.key"
    assert str(key_file) in init.stdout and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pre_encrypted = _keyring_from(key_file).encrypt(PRE_ENCRYPTED_TOKEN)

    bindings = {
        # URL userinfo password and an api_key query parameter
        "web": ["--provider", "custom", "--set", f"url={_with_credentials(good.url, '/web/predict')}"],
        # a declared secret: the bearer token
        "tok": ["--provider", "custom", "--set", f"url={good.url}/tok/predict", "--set", "auth=bearer"]
        + ["--set", f"token={BEARER_TOKEN}"],
        # a header value: the API key sent as X-Api-Key
        "hdr": ["--provider", "custom", "--set", f"url={good.url}/hdr/predict", "--set", "auth=header"]
        + ["--set", "header=X-Api-Key", "--set", f"key={HEADER_KEY}"],
        # a value the user encrypted themselves (enc:...), accepted because it decrypts with the key
        "pre": ["--provider", "custom", "--set", f"url={good.url}/pre/predict", "--set", "auth=bearer"]
        + ["--set", f"token={pre_encrypted}"],
        # algorithmia's declared key
        "algo": ["--provider", "algorithmia", "--set", f"base_url={good.url}", "--set", f"key={ALGO_KEY}"]
        + ["--set", "algorithms=demo/credit"],
        # the same secrets, at a host that refuses and quotes them back, and at a closed port
        "web_bad": ["--provider", "custom", "--set", f"url={_with_credentials(hostile.url, '/web/predict')}"],
        "algo_bad": ["--provider", "algorithmia", "--set", f"base_url={hostile.url}", "--set", f"key={ALGO_KEY}"]
        + ["--set", "algorithms=demo/credit"],
        "web_down": ["--provider", "custom", "--set", f"url={_closed_port_url()}", "--set", "retries=0"],
    }
    for name, args in bindings.items():
        t.run(cli, "bind", "add", name, *args, *(["--json"] if name.startswith("w") else []))
    # refusals that quote what they were given: a bad mode next to a URL password; a taken name
    t.run(cli, "bind", "add", "oops", *bindings["web"], "--set", "mode=nonsense", ok=False)
    t.run(cli, "bind", "add", "web", *bindings["tok"], ok=False)

    t.run(cli, "bind", "list")
    listed = {b["name"]: b["settings"] for b in json.loads(t.run(cli, "bind", "list", "--json").stdout)}
    for name in bindings:
        t.run(cli, "bind", "show", name)
        t.run(cli, "bind", "show", name, "--json")
    assert listed["web"]["url"] == f"http://***@{good.url.removeprefix('http://')}/web/predict?api_key=***&mode=fast"
    assert listed["tok"]["token"] == listed["hdr"]["key"] == listed["algo"]["key"] == "***"

    for name in ("web", "tok", "hdr", "pre", "algo"):
        t.run(cli, "deployments", name)
        shown = json.loads(t.run(cli, "deployments", name, "--json").stdout)
        assert shown, name
    for name in ("web_bad", "web_down"):  # a custom binding lists its URL without calling it
        details = json.loads(t.run(cli, "deployments", name, "--json").stdout)[0]["details"]
        assert details["url"].startswith("http://***@") and "api_key=***" in details["url"]
    for args in (("deployments", "algo_bad"), ("deployments", "algo_bad", "--json")):
        assert "HTTP 401" in t.run(cli, *args, ok=False).stderr

    ref, new = _score_file(tmp_path)
    common = ["--reference", str(ref), "--label", "label", "--problem", "binary"]
    for name, binding, deployment in (
        ("s_web", "web", "/web/predict"),
        ("s_tok", "tok", "/tok/predict"),
        ("s_hdr", "hdr", "/hdr/predict"),
        ("s_pre", "pre", "/pre/predict"),
        ("s_algo", "algo", "demo/credit/1.0.0"),
        ("s_bad", "web_bad", "/web/predict"),
        ("s_down", "web_down", "/web/predict"),
    ):
        t.run(cli, "subscribe", "add", name, *common, "--binding", binding, "--deployment", deployment)
    for name in ("s_web", "s_tok", "s_hdr", "s_pre", "s_algo"):
        scored = json.loads(t.run(cli, "score", name, str(new), "--json").stdout)
        assert len(scored) == 4
    assert "HTTP 401" in t.run(cli, "score", "s_bad", str(new), ok=False).stderr
    assert "cannot connect" in t.run(cli, "score", "s_down", str(new), "--json", ok=False).stderr
    t.run(cli, "subscribe", "show", "s_web", "--json")
    t.run(cli, "db", "status")
    t.run(cli, "db", "status", "--json")

    # the secrets were used: each good host saw its credential, and answered
    assert good.script.seen and all(_authorised(s) for s in good.script.seen)
    assert {s.path.split("/")[1] for s in good.script.seen} == {"web", "tok", "hdr", "pre", "v1"}
    assert len(hostile.script.seen) >= 2  # the hostile host was sent the credentials it quotes

    said = "\n".join(t.texts)
    assert "denied: " in said and "HTTP 401" in said and "cannot connect" in said  # the errors were shown
    outputs = {"cli": said, "logs": caplog.text}
    assert hits(outputs, SECRETS) == []
    assert BASIC.split()[1] not in said + caplog.text
    stored = mart_text(database_url, schema_name)
    assert {"bindings.settings", "subscriptions.schema"} <= set(stored)
    assert any(k.startswith("payload_") for k in stored)  # the scored records are there, and searched
    assert hits(stored, SECRETS) == []


def _keyring_from(path: Path) -> secrets.Keyring:
    return secrets.Keyring((path.read_text().strip(),), "test", path)


def test_the_grep_finds_a_secret_where_there_is_one(mart: openmart.Mart, database_url: str) -> None:
    """The search above can fail: a secret put in any column of any table is found."""
    with mart.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE planted (id int, note text, doc jsonb)")
        conn.exec_driver_sql("INSERT INTO planted VALUES (1, 'x', %s)", (json.dumps({"k": BEARER_TOKEN}),))
    assert hits(mart_text(database_url, mart.location.schema), SECRETS) == [("planted.doc", BEARER_TOKEN)]


# -- keys ------------------------------------------------------------------------------------------


def test_without_a_key_secrets_are_refused_with_how_to_set_one(cli: Any, tmp_path: Path) -> None:
    for setting in (f"url=https://{URL_USER}:{URL_PASSWORD}@example.test/p", "url=https://h.test/p?api_key=abcd1234"):
        r = cli("bind", "add", "web", "--provider", "custom", "--set", setting, ok=False)
        assert r.exit_code != 0 and "Traceback" not in r.stderr
        line = r.stderr.strip()
        assert "\n" not in line and "no key is set" in line and "openmart secrets init" in line, line
        assert "OPENMART_SECRET_KEY" in line and URL_PASSWORD not in line
    args = ["--provider", "custom", "--set", "url=http://h.test/p", "--set", "auth=bearer", "--set", "token_env=TOK"]
    assert cli("bind", "add", "t", *args).exit_code == 0  # a reference is no secret: no key needed
    assert json.loads(cli("bind", "list", "--json").stdout)[0]["name"] == "t"


def test_enc_values_are_refused_unless_they_decrypt_with_the_key(cli: Any, tmp_path: Path) -> None:
    forged = "enc:" + Fernet(Fernet.generate_key()).encrypt(BEARER_TOKEN.encode()).decode()
    args = ["--provider", "custom", "--set", "url=http://h.test/p", "--set", "auth=bearer"]
    # no key at all: a prefix alone must not pass for encryption
    r = cli("bind", "add", "a", *args, "--set", "token=enc:plain-text-here", ok=False)
    assert "'token' is given encrypted" in r.stderr and "no key is set" in r.stderr
    cli("secrets", "init")
    for bogus in ("enc:plain-text-here", forged):
        r = cli("bind", "add", "a", *args, "--set", f"token={bogus}", ok=False)
        assert "cannot be decrypted with the key in key file" in r.stderr, r.stderr
    assert json.loads(cli("bind", "list", "--json").stdout) == []
    valid = _keyring_from(tmp_path / "data" / "secret.key").encrypt(BEARER_TOKEN)
    cli("bind", "add", "a", *args, "--set", f"token={valid}")
    assert json.loads(cli("bind", "show", "a", "--json").stdout)["settings"]["token"] == "***"


def test_a_key_file_others_can_read_is_refused(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, good: ScriptedServer
) -> None:
    key_file = tmp_path / "elsewhere" / "openmart.key"
    monkeypatch.setenv(secrets.KEY_FILE_ENV, str(key_file))
    r = cli("secrets", "init")
    assert str(key_file) in r.stdout and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "exists already" in cli("secrets", "init", ok=False).stderr  # a key is never overwritten
    args = ["--provider", "custom", "--set", f"url={good.url}/tok/predict", "--set", "auth=bearer"]
    cli("bind", "add", "t2", *args, "--set", f"token={BEARER_TOKEN}")
    for mode in (0o640, 0o604, 0o644):
        key_file.chmod(mode)
        for args in (
            ("bind", "add", "t3", "--provider", "custom", "--set", f"url={good.url}/p", "--set", f"token={HEADER_KEY}"),
            ("deployments", "t2"),
        ):
            r = cli(*args, ok=False)
            assert f"key file {key_file} is readable by group or others (mode {mode:04o})" in r.stderr, r.stderr
            assert f"chmod 600 {key_file}" in r.stderr
    key_file.chmod(0o600)
    assert json.loads(cli("deployments", "t2", "--json").stdout)[0]["id"] == "/tok/predict"


# -- rotation --------------------------------------------------------------------------------------


def _stored(mart: openmart.Mart) -> dict[str, dict[str, str]]:
    frame = mart.sql("SELECT name, settings FROM bindings ORDER BY name")
    return dict(zip(frame["name"], frame["settings"], strict=True))


def _tokens(stored: dict[str, dict[str, str]]) -> list[str]:
    return [v.removeprefix("enc:") for s in stored.values() for v in s.values() if v.startswith("enc:")]


def test_rotation_reencrypts_everything_and_the_adapter_still_authenticates(
    cli: Any, mart: openmart.Mart, tmp_path: Path, good: ScriptedServer
) -> None:
    cli("secrets", "init")
    key_file = tmp_path / "data" / "secret.key"
    old_key = key_file.read_text().strip()
    cli("bind", "add", "web", "--provider", "custom", "--set", f"url={_with_credentials(good.url, '/web/predict')}")
    cli("bind", "add", "algo", "--provider", "algorithmia", "--set", f"base_url={good.url}")
    cli("bind", "add", "plain", "--provider", "custom", "--set", f"url={good.url}/open")
    before = _stored(mart)
    assert len(_tokens(before)) == 1 and before["web"]["sealed:url"].startswith("enc:")
    with mart.engine.begin() as conn:  # a secret an older openmart kept in clear: rotation seals it
        conn.execute(
            sa.text(
                "UPDATE bindings SET settings = settings || jsonb_build_object('key', CAST(:k AS text)) "
                "WHERE name = 'algo'"
            ),  # fmt: skip
            {"k": ALGO_KEY},
        )

    r = cli("secrets", "rotate")
    assert f"2 stored secret value(s) re-encrypted; the new key is in {key_file}" in r.stdout, r.stdout
    new_key = key_file.read_text().strip()
    assert new_key != old_key and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not key_file.with_name("secret.key.new").exists()
    after = _stored(mart)
    assert after["plain"] == before["plain"] and after["web"]["url"] == before["web"]["url"]
    tokens = _tokens(after)
    assert len(tokens) == 2 and ALGO_KEY not in json.dumps(after)
    for token in tokens:
        with pytest.raises(InvalidToken):
            Fernet(old_key.encode()).decrypt(token.encode())
        Fernet(new_key.encode()).decrypt(token.encode())

    seen = len(good.script.seen)
    assert json.loads(cli("deployments", "web", "--json").stdout)[0]["details"]["url"].startswith("http://***@")
    adapter = mart.bindings.get("algo").connect()  # its key decrypted under the new key
    try:
        assert adapter.describe("demo/credit/1.0.0").id == "demo/credit/1.0.0"  # a call the host checks
    finally:
        adapter.close()
    assert len(good.script.seen) > seen and all(_authorised(s) for s in good.script.seen)
    # the old key, back in place, opens nothing
    key_file.write_text(old_key + "\n")
    r = cli("deployments", "web", ok=False)
    assert "binding 'web': setting 'url' cannot be decrypted with the key in key file" in r.stderr


def test_rotation_with_the_key_in_the_environment_writes_the_new_key_to_a_file(
    cli: Any, mart: openmart.Mart, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, good: ScriptedServer
) -> None:
    old_key = Fernet.generate_key().decode()
    monkeypatch.setenv(secrets.KEY_ENV, old_key)
    args = ["--provider", "custom", "--set", f"url={good.url}/tok/predict", "--set", "auth=bearer"]
    cli("bind", "add", "tok", *args, "--set", f"token={BEARER_TOKEN}")
    out_file = tmp_path / "new.key"
    r = cli("secrets", "rotate", "--out", str(out_file))
    assert f"the new key is in {out_file}" in r.stdout and "OPENMART_SECRET_KEY still holds the old key" in r.stdout
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    assert "cannot be decrypted" in cli("deployments", "tok", ok=False).stderr
    monkeypatch.setenv(secrets.KEY_ENV, out_file.read_text().strip())
    assert json.loads(cli("deployments", "tok", "--json").stdout)[0]["id"] == "/tok/predict"
    adapter = openmart.connect(mart.location.url, schema=mart.location.schema).bindings.get("tok").connect()
    try:
        adapter.score("/tok/predict", pd.DataFrame({"x": [1.0]}))
    finally:
        adapter.close()
    assert _authorised(good.script.seen[-1])


def test_rotation_is_all_or_nothing(cli: Any, mart: openmart.Mart, tmp_path: Path) -> None:
    cli("secrets", "init")
    key_file = tmp_path / "data" / "secret.key"
    old_key = key_file.read_text().strip()
    args = ["--provider", "custom", "--set", "url=http://h.test/p", "--set", "auth=bearer"]
    cli("bind", "add", "a", *args, "--set", f"token={BEARER_TOKEN}")
    cli("bind", "add", "b", *args, "--set", f"token={HEADER_KEY}")
    foreign = "enc:" + Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    with mart.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE bindings SET settings = jsonb_set(settings, '{token}', to_jsonb(CAST(:t AS text))) "
                "WHERE name = 'b'"
            ),  # fmt: skip
            {"t": foreign},
        )
    before = _stored(mart)
    r = cli("secrets", "rotate", ok=False)
    assert "binding 'b': setting 'token' cannot be decrypted" in r.stderr, r.stderr
    assert _stored(mart) == before  # binding 'a' was not rotated either
    assert key_file.read_text().strip() == old_key and not key_file.with_name("secret.key.new").exists()


# -- redaction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p4ss@h.test/x", "https://***@h.test/x"),
        ("https://T0KEN@h.test/x", "https://***@h.test/x"),
        ("https://h.test/x?api_key=abc&n=1", "https://h.test/x?api_key=***&n=1"),
        ("https://h.test/x?n=1&Access_Token=abc#sig=zz", "https://h.test/x?n=1&Access_Token=***#sig=***"),
        ("https://h.test/x?X-Amz-Signature=ab&X-Amz-Credential=cd", "https://h.test/x?X-Amz-Signature=***&X-Amz-Credential=***"),
        ("https://h.test/x?timeout=3&keyword=a", None),
        ("http://127.0.0.1:8000/predict", None),
        ("not a url at all", None),
    ],
)  # fmt: skip
def test_urls_are_redacted(url: str, shown: str | None) -> None:
    assert secrets.redact_url(url) == (shown or url)
    assert (secrets.find_url_secrets(url) is None) == (shown is None)


def test_logs_and_messages_mask_revealed_secrets(caplog: pytest.LogCaptureFixture) -> None:
    secret = "masked-" + os.urandom(6).hex()
    secrets.remember([secret])
    log = logging.getLogger("somebody.else")
    with caplog.at_level(logging.INFO):
        log.info("calling with %s", secret)
        try:
            raise RuntimeError(f"server said {secret}")
        except RuntimeError:
            log.exception("failed")
    assert secret not in caplog.text and caplog.text.count("***") == 2
    assert secrets.scrub(f"GET http://h/x?token={secret}&a=1 and {secret}") == "GET http://h/x?token=***&a=1 and ***"
