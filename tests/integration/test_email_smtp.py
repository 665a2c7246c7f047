"""SmtpTransport (and the service on top of it) against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from blog.db import create_tables, make_engine, make_session_factory
from blog.email import EmailTransportError
from blog.email.models import metadata
from blog.email.service import InProcessEmailService
from blog.email.transports import SmtpTransport
from blog.events import USER_REGISTERED, Event

FROM = "Strangler Blog <no-reply@strangler-blog.local>"
USERNAME, PASSWORD = "mailer", "s3cret password!"


class Collector:
    """An aiosmtpd handler that keeps every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        self.tls.append(session.ssl is not None)
        return "250 Message accepted for delivery"

    def only_message(self) -> tuple[Envelope, EmailMessage]:
        [envelope] = self.envelopes
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return envelope, parsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[Collector, int]]]:
    """Starts aiosmtpd servers with the given SMTP options; every one is stopped afterwards."""
    controllers: list[Controller] = []

    def start(**smtp_options: Any) -> tuple[Collector, int]:
        collector, port = Collector(), free_port()
        controller = Controller(collector, hostname="127.0.0.1", port=port, **smtp_options)
        controller.start()
        controllers.append(controller)
        return collector, port

    yield start
    for controller in controllers:
        controller.stop()


def authenticator(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        mechanism == "LOGIN"
        and isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, written as PEM files (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


# ---------------------------------------------------------------------------- plain delivery


def test_message_arrives_with_headers_and_utf8_body(smtp_server: Any) -> None:
    collector, port = smtp_server()
    transport = SmtpTransport("127.0.0.1", port, timeout=5)

    transport.send(FROM, "zoe@example.com", "Grüße, Zoë ✓", "Hallo Zoë,\n\nça marche — 🎉\n")

    envelope, message = collector.only_message()
    assert envelope.mail_from == "no-reply@strangler-blog.local"
    assert envelope.rcpt_tos == ["zoe@example.com"]
    assert message["From"] == FROM
    assert message["To"] == "zoe@example.com"
    assert message["Subject"] == "Grüße, Zoë ✓"
    assert message["Message-ID"].endswith("@strangler-blog.local>")
    assert message["Date"]
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    # SMTP carries CRLF line ends; the text itself arrives intact.
    assert message.get_content().replace("\r\n", "\n") == "Hallo Zoë,\n\nça marche — 🎉\n"
    assert envelope.content.isascii()  # 7-bit clean on the wire: no 8BITMIME needed


def test_service_sends_through_smtp(smtp_server: Any, tmp_path: Path) -> None:
    collector, port = smtp_server()
    engine = make_engine(f"sqlite:///{tmp_path / 'email.db'}")
    try:
        create_tables(engine, metadata)
        service = InProcessEmailService(
            make_session_factory(engine), SmtpTransport("127.0.0.1", port, timeout=5), FROM
        )
        event = Event(USER_REGISTERED, {"user_id": 1, "email": "zoe@example.com", "name": "Zoë"})

        assert service.handle_event(event) is True
        assert service.handle_event(event) is False  # the duplicate never reaches the server

        envelope, message = collector.only_message()
        assert envelope.rcpt_tos == ["zoe@example.com"]
        assert message["Subject"] == "Welcome to Strangler Blog, Zoë!"
        assert "Hi Zoë," in message.get_content()
        [recorded] = service.list_inbox()
        assert recorded.transport == "smtp"
        assert service.health()["transport"] == "smtp"
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------- auth and TLS


# aiosmtpd warns (rightly) about AUTH without TLS; here it is plain-text on loopback on purpose.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_auth_login_with_username_and_password(smtp_server: Any) -> None:
    collector, port = smtp_server(
        authenticator=authenticator,
        auth_require_tls=False,
        auth_required=True,
        auth_exclude_mechanism=["PLAIN"],  # so smtplib has to use AUTH LOGIN
    )

    SmtpTransport("127.0.0.1", port, username=USERNAME, password=PASSWORD, timeout=5).send(
        FROM, "ada@example.com", "hi", "body"
    )
    assert len(collector.envelopes) == 1

    with pytest.raises(EmailTransportError) as caught:
        SmtpTransport("127.0.0.1", port, username=USERNAME, password="wrong", timeout=5).send(
            FROM, "ada@example.com", "hi", "body"
        )
    assert isinstance(caught.value.__cause__, smtplib.SMTPAuthenticationError)
    assert len(collector.envelopes) == 1


def test_non_ascii_credentials_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        SmtpTransport("127.0.0.1", 25, username=USERNAME, password="pässword")


def test_starttls_with_a_trusted_self_signed_certificate(
    smtp_server: Any, certificate: tuple[Path, Path]
) -> None:
    cert_path, key_path = certificate
    collector, port = smtp_server(
        tls_context=server_tls(cert_path, key_path), require_starttls=True
    )
    client_context = ssl.create_default_context(cafile=str(cert_path))

    SmtpTransport("127.0.0.1", port, starttls=True, timeout=5, ssl_context=client_context).send(
        FROM, "ada@example.com", "over TLS", "secret body"
    )

    _, message = collector.only_message()
    assert collector.tls == [True]
    assert message["Subject"] == "over TLS"


def test_starttls_refuses_an_untrusted_certificate(
    smtp_server: Any, certificate: tuple[Path, Path]
) -> None:
    collector, port = smtp_server(tls_context=server_tls(*certificate), require_starttls=True)
    # The default context trusts the system CAs only, so the self-signed certificate fails.
    with pytest.raises(EmailTransportError) as caught:
        SmtpTransport("127.0.0.1", port, starttls=True, timeout=5).send(
            FROM, "ada@example.com", "hi", "body"
        )
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert collector.envelopes == []


def test_refused_connection_fails_fast() -> None:
    port = free_port()  # bound and released: nothing listens there now
    started = time.monotonic()
    with pytest.raises(EmailTransportError) as caught:
        SmtpTransport("127.0.0.1", port, timeout=5).send(FROM, "ada@example.com", "hi", "body")
    assert time.monotonic() - started < 2
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert caught.value.details == {"host": "127.0.0.1", "port": port}
