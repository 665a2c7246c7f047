"""Where a rendered email goes: nowhere (the dev inbox) or an SMTP server.

The service renders and records messages; a transport only delivers them. Keeping delivery behind
this small interface lets development and tests run with no mail server while production uses
SMTP, chosen by ``email.transport`` in the config and nothing else.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Protocol

from blog.config import EmailConfig
from blog.email import EmailTransportError

log = logging.getLogger(__name__)


class EmailTransport(Protocol):
    name: str

    def send(self, from_address: str, to: str, subject: str, body: str) -> None:
        """Deliver one plain-text message or raise ``EmailTransportError``."""


class InboxTransport:
    """Delivers nowhere: the message row the service records is the development mailbox."""

    name = "inbox"

    def send(self, from_address: str, to: str, subject: str, body: str) -> None:
        log.debug("inbox transport: message kept in the inbox only")


class SmtpTransport:
    """Sends each message over its own SMTP connection (optionally STARTTLS + AUTH).

    A connection per message keeps the transport stateless and thread-safe; email is sent off the
    request path, so the handshake cost does not reach a user.
    """

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        starttls: bool = False,
        username: str | None = None,
        password: str = "",
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not (username or "").isascii() or not password.isascii():
            # smtplib encodes AUTH exchanges as ASCII; fail at start-up, not on every send.
            raise ValueError("SMTP username and password must be ASCII")
        self.host = host
        self.port = port
        self.starttls = starttls
        self.username = username
        self._password = password  # kept private so it never shows up in a repr or a log line
        self.timeout = timeout
        # Verifies the server certificate and host name; tests pass a context trusting their CA.
        self._ssl_context = ssl_context or (ssl.create_default_context() if starttls else None)

    def send(self, from_address: str, to: str, subject: str, body: str) -> None:
        message = build_message(from_address, to, subject, body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=self._ssl_context)
                if self.username:
                    smtp.login(self.username, self._password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            # Its text names the recipient: an address is personal data, and this message is
            # logged and travels as the error's message.
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise EmailTransportError(
                f"SMTP delivery via {self.host}:{self.port} failed: the server refused the "
                f"recipient ({', '.join(str(code) for code in codes)})",
                details={"host": self.host, "port": self.port},
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
            raise EmailTransportError(
                f"SMTP delivery via {self.host}:{self.port} failed: {exc}",
                details={"host": self.host, "port": self.port},
            ) from exc
        # Not the recipient: an address is personal data, and INFO logs travel far.
        log.info("smtp transport: sent %s via %s:%s", message["Message-ID"], self.host, self.port)


def build_message(from_address: str, to: str, subject: str, body: str) -> EmailMessage:
    """A standards-conforming plain-text message: UTF-8, with its own Date and Message-ID."""
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    # The sender's domain, not socket.getfqdn(): that can block on DNS for seconds.
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    # Quoted-printable keeps the body 7-bit clean for servers that do not offer 8BITMIME.
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    return message


def make_transport(config: EmailConfig) -> EmailTransport:
    if config.transport == "inbox":
        return InboxTransport()
    if config.transport == "smtp":
        smtp = config.smtp
        return SmtpTransport(
            smtp.host,
            smtp.port,
            starttls=smtp.starttls,
            username=smtp.username,
            password=smtp.password,
            timeout=smtp.timeout_seconds,
        )
    raise ValueError(f"unknown email transport {config.transport!r}")
