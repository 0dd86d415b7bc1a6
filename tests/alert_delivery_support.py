"""Real receivers for the alert delivery tests: an HTTP receiver on loopback that counts what it
is sent (and can fail the first N requests, or hold a request until told), and a real SMTP server
(aiosmtpd) with STARTTLS on a certificate made here, AUTH, and a record of every login tried.

Plus a subscription whose quality monitor breaches or passes at will, so alerts open and resolve
through real evaluations."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import openmart

# -- a subscription whose alerts open and resolve on demand ----------------------------------------


def subscription(mart: openmart.Mart, name: str = "credit") -> openmart.api.Subscription:
    """A binary subscription with labelled payload: its ROC AUC is about 0.9."""
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 2))
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    proba = 1 / (1 + np.exp(-2 * x[:, 0]))
    frame = pd.DataFrame(x, columns=["a", "b"])
    sub = mart.subscriptions.add(name, reference=frame.assign(label=y), label="label", problem_type="binary")
    ids = sub.payload.log(frame.assign(prediction=(proba > 0.5).astype(int), probability=proba))
    sub.feedback.log(frame.assign(label=y, scoring_id=list(ids)))
    return sub


def breach(sub: openmart.api.Subscription) -> None:
    """The next evaluation breaches (AUC ~0.9 below a limit of 0.99)."""
    sub.monitors.enable("quality", thresholds=["roc_auc=0.99"], min_records=10)


def passing(sub: openmart.api.Subscription) -> None:
    sub.monitors.enable("quality", thresholds=["roc_auc=0.5"], min_records=10)


# -- an HTTP receiver --------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int

    @property
    def delivery(self) -> str | None:
        return {k.lower(): v for k, v in self.headers.items()}.get("x-openmart-delivery")


@dataclass
class Receiver:
    """``fail_first``: that many requests answered ``fail_status`` (with ``fail_body``);
    ``hold``: while set, a request is kept unanswered until ``release`` is set (``arrived`` says
    one is being held)."""

    fail_first: int = 0
    fail_status: int = 500
    fail_body: str = "try again later"
    always_fail: bool = False
    requests: list[Received] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    @property
    def taken(self) -> list[Received]:
        """Requests answered 2xx: the messages a receiver actually accepted."""
        return [r for r in self.requests if 200 <= r.status < 300]


@contextmanager
def http_receiver(**options: Any) -> Iterator[Receiver]:
    receiver = Receiver(**options)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if receiver.hold.is_set():
                receiver.arrived.set()
                receiver.release.wait(120)
            with lock:
                failing = receiver.always_fail or len(receiver.requests) < receiver.fail_first
                status = receiver.fail_status if failing else 200
                receiver.requests.append(Received(self.path, dict(self.headers), json.loads(raw or b"null"), status))
            data = (receiver.fail_body if failing else "ok").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()


# -- an SMTP server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost that is its own CA: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openmart test SMTP")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class Mailbox:
    host: str
    port: int
    ca_file: Path | None
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    #: (login, password) of every AUTH tried, and whether the connection was encrypted then
    logins: list[tuple[str, str, bool]] = field(default_factory=list)


USERNAME = "alerts@example.org"


@contextmanager
def smtp_server(tmp_path: Path, *, starttls: bool = True, password: str = "") -> Iterator[Mailbox]:
    """A real SMTP server on loopback. ``starttls``: STARTTLS offered and required before MAIL
    and AUTH (aiosmtpd's require_starttls and auth_require_tls), else a plain server that would
    even take AUTH in clear (to prove openmart never tries)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    port = free_port()
    ca_file = None
    tls_context = None
    if starttls:
        cert, key = self_signed(tmp_path)
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(cert, key)
        ca_file = cert
    box = Mailbox("127.0.0.1", port, ca_file)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            box.messages.append(message_from_bytes(envelope.content))
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, secret = auth_data.login.decode(), auth_data.password.decode()
        box.logins.append((login, secret, session.ssl is not None))
        ok = login == USERNAME and secret == password
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=tls_context,
        require_starttls=starttls,
        auth_require_tls=starttls,
        authenticator=authenticator,
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
