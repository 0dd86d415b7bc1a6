"""An email channel: SMTP with STARTTLS by default (see :mod:`openmart.alerting.channels`).

The connection is encrypted before anything of value is sent: with ``tls=starttls`` a server
that does not offer STARTTLS gets no mail and no credentials (a permanent failure naming the
setting), and the server's certificate and host name are verified (``ca_file`` adds a private
CA). The mail's ``Message-ID`` and ``X-Openmart-Delivery`` header carry the delivery's id, the
same on every attempt, so a repeat after a sender died can be recognised."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate

from openmart.alerting.channels import DeliveryError
from openmart.alerting.messages import Message

IDEMPOTENCY_HEADER = "X-Openmart-Delivery"


def compose(settings: Mapping[str, str], message: Message) -> EmailMessage:
    mail = EmailMessage()
    prefix = settings.get("subject_prefix", "").strip()
    mail["Subject"] = f"{prefix} {message.title}".strip()
    mail["From"] = settings["from"]
    mail["To"] = ", ".join(a for a in settings["to"].split(",") if a)
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    domain = settings["from"].rpartition("@")[2] or "openmart.invalid"
    if message.delivery_id is not None:
        mail["Message-ID"] = f"<openmart-delivery-{message.delivery_id}@{domain}>"
        mail[IDEMPOTENCY_HEADER] = str(message.delivery_id)
    mail.set_content(message.text)
    return mail


def _context(settings: Mapping[str, str]) -> ssl.SSLContext:
    # verification on (CERT_REQUIRED, host name checked); a private CA is added, never a bypass
    try:
        return ssl.create_default_context(cafile=settings.get("ca_file") or None)
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"setting 'ca_file' {settings.get('ca_file')!r}: {exc}", permanent=True) from None


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """One login attempt: AUTH PLAIN when offered (the connection is encrypted by now), else
    smtplib's choice. smtplib's ``login`` tries every mechanism in turn after a refusal, which
    multiplies failed logins (lockout policies count them) and, against some servers, hangs."""
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    if "PLAIN" not in offered:
        smtp.login(username, password)
        return
    smtp.user, smtp.password = username, password
    smtp.auth("PLAIN", smtp.auth_plain)


def send(settings: Mapping[str, str], message: Message) -> None:
    """Send the mail; raises :class:`DeliveryError` (scrubbed; ``permanent`` when retrying will
    not help: refused recipients or login, no STARTTLS, a certificate that does not verify)."""
    host, port, tls = settings["host"], int(settings["port"]), settings.get("tls", "starttls")
    timeout = float(settings.get("timeout", "30"))
    where = f"SMTP server {host}:{port}"
    mail = compose(settings, message)
    context = _context(settings) if tls != "none" else None
    try:
        if tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if tls == "starttls":
                if not smtp.has_extn("starttls"):
                    what = "no mail and no credentials" if settings.get("username") else "no mail"
                    raise DeliveryError(
                        f"{where} does not offer STARTTLS: openmart sends {what} over a connection that is not "
                        "encrypted (setting 'tls': use ssl for a TLS port, or a server that offers STARTTLS)",
                        permanent=True,
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.get("username"):
                if tls == "none":  # refused when the channel is added too; never send a password in clear
                    raise DeliveryError(f"{where}: credentials over tls=none refused", permanent=True)
                _login(smtp, settings["username"], settings["password"])
            smtp.send_message(mail)
    except DeliveryError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(
            f"{where}: its certificate did not verify ({exc.verify_message}); for a private CA set 'ca_file'",
            permanent=True,
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        refused = ", ".join(f"{a} ({c} {m.decode(errors='replace')})" for a, (c, m) in exc.recipients.items())
        permanent = all(c >= 500 for c in codes)
        raise DeliveryError(f"{where} refused every recipient: {refused}", permanent=permanent) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(f"{where}: {exc}", permanent=True) from None
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        what = "login refused" if isinstance(exc, smtplib.SMTPAuthenticationError) else "refused"
        raise DeliveryError(f"{where}: {what}: {exc.smtp_code} {text}", permanent=exc.smtp_code >= 500) from None
    except TimeoutError:
        raise DeliveryError(f"{where}: no answer within {timeout:g} s") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from None
