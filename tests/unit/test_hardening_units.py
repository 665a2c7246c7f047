"""Issue 12, unit by unit: the plain-address rule, renames applied in version order by email and
auth's versions under concurrency, and the log lines that must not carry an address."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from blog.auth.addresses import NotPlainAddress, canonical_address
from blog.auth.models import metadata as auth_metadata
from blog.auth.service import InProcessAuthService
from blog.config import AuthConfig
from blog.db import create_tables, make_engine, make_session_factory
from blog.email import EmailTransportError, MalformedEvent
from blog.email.models import metadata as email_metadata
from blog.email.service import InProcessEmailService
from blog.email.transports import InboxTransport, SmtpTransport
from blog.errors import MAX_STORED_ID, storable_text, unstorable_text
from blog.events import POST_CREATED, USER_REGISTERED, USER_RENAMED, Event, InlineEventBus

FROM = "Strangler Blog <no-reply@strangler-blog.local>"

# --------------------------------------------------------------------------- plain addresses

ATEXT = "#$&'*+-/=?^_`{|}~"


@pytest.mark.parametrize("char", list(ATEXT))
def test_every_accepted_local_character_reads_as_itself(char: str) -> None:
    address = canonical_address(f"a{char}b@example.com")
    assert parseaddr(address) == ("", address)
    assert getaddresses([address]) == [("", address)]


@pytest.mark.parametrize(
    "text",
    [
        'a"b@example.com',
        "a b@example.com",
        "a(b)@example.com",
        "a<b@example.com",
        "a>b@example.com",
        "a[b]@example.com",
        "a,b@example.com",
        "a;b@example.com",
        "a:b@example.com",
        "a\\b@example.com",
        "a%b@example.com",
        "a!b@example.com",
        "a\u202eb@example.com",
        "a\u200bb@example.com",
        "ab@exam_ple.com",
        "ab@example.123",
        "ab@[::1]",
        "ab@xn--.com",
        "ab@xn--abc-.com",
        "ab@" + "a" * 64 + ".com",
        "a" * 250 + "@ex.com",
        "@example.com",
        "ab@",
        "ab",
        "a@b@example.com",
    ],
)
def test_anything_else_is_not_a_plain_address(text: str) -> None:
    with pytest.raises(NotPlainAddress):
        canonical_address(text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("  Ada.Lovelace+blog@Example.COM ", "ada.lovelace+blog@example.com"),
        ("Jose\u0301@example.com", "jos\u00e9@example.com"),
        ("ada@XN--BCHER-KVA.DE", "ada@b\u00fccher.de"),
        ("ada@bu\u0308cher.de", "ada@b\u00fccher.de"),
        ("\u674e\u96f7@\u4f8b\u5b50.\u6d4b\u8bd5", "\u674e\u96f7@\u4f8b\u5b50.\u6d4b\u8bd5"),
        ("o'brien@sub.example.co.uk", "o'brien@sub.example.co.uk"),
    ],
)
def test_one_canonical_spelling(text: str, canonical: str) -> None:
    assert canonical_address(text) == canonical
    assert canonical_address(canonical) == canonical  # idempotent


def test_storable_text_names_the_field() -> None:
    assert unstorable_text("ok é 😀") is None
    assert storable_text("ok", "title") == "ok"
    for bad in ("a\x00", "\ud800"):
        with pytest.raises(Exception) as excinfo:
            storable_text(bad, "title")
        assert getattr(excinfo.value, "details", None) == {"field": "title"}


# --------------------------------------------------------------------------- email


@pytest.fixture
def email_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'email.db'}")
    create_tables(engine, email_metadata)
    yield engine
    engine.dispose()


@pytest.fixture
def email(email_engine: Engine) -> InProcessEmailService:
    return InProcessEmailService(make_session_factory(email_engine), InboxTransport(), FROM)


def _registered(user_id: int = 1, name: str = "Ada") -> Event:
    return Event(USER_REGISTERED, {"user_id": user_id, "email": "ada@example.com", "name": name})


def _renamed(name: str, version: int | None, user_id: int = 1) -> Event:
    data: dict[str, Any] = {"user_id": user_id, "name": name, "old_name": "x"}
    if version is not None:
        data["version"] = version
    return Event(USER_RENAMED, data)


def _greeting(email: InProcessEmailService, title: str) -> str:
    email.handle_event(
        Event(POST_CREATED, {"post_id": 1, "title": title, "author_id": 1, "author_name": "x"})
    )
    return next(m.body for m in email.list_inbox() if title in m.subject).splitlines()[0]


def test_email_ignores_a_rename_older_than_the_one_it_holds(email: InProcessEmailService) -> None:
    email.handle_event(_registered())
    assert email.handle_event(_renamed("Third", 3)) is True
    assert email.handle_event(_renamed("First", 1)) is True  # handled: recorded, not applied
    assert email.handle_event(_renamed("Legacy", None)) is True
    assert _greeting(email, "One") == "Hi Third,"
    email.handle_event(_renamed("Fourth", 4))
    assert _greeting(email, "Two") == "Hi Fourth,"


def test_email_unversioned_renames_still_apply_in_delivery_order(
    email: InProcessEmailService,
) -> None:
    email.handle_event(_registered())
    email.handle_event(_renamed("Old one", None))
    email.handle_event(_renamed("Old two", None))
    assert _greeting(email, "Legacy") == "Hi Old two,"


def test_email_a_rename_that_overtakes_the_registration_wins(email: InProcessEmailService) -> None:
    assert email.handle_event(_renamed("Renamed", 1)) is True  # user not known yet
    email.handle_event(_registered(name="Registered"))
    welcome = email.list_inbox()[0]
    assert welcome.body.startswith("Hi Renamed,")
    assert _greeting(email, "Later") == "Hi Renamed,"


def test_email_concurrent_renames_in_any_order_end_at_the_newest(
    email: InProcessEmailService,
) -> None:
    email.handle_event(_registered())
    events = [_renamed(f"V{v}", v) for v in (5, 2, 9, 1, 7, 3, 8, 4, 6, 10)]
    barrier = threading.Barrier(len(events))

    def deliver(event: Event) -> bool:
        barrier.wait()
        return email.handle_event(event)

    with ThreadPoolExecutor(len(events)) as pool:
        assert all(pool.map(deliver, events))
    assert _greeting(email, "Raced") == "Hi V10,"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_id", MAX_STORED_ID + 1),
        ("name", "A\x00"),
        ("email", "Ada <ada@example.com>"),
        ("email", "a,b@example.com"),
        ("email", "ada(x)@example.com"),
        ("version", -1),
    ],
)
def test_email_refuses_events_it_cannot_store_or_would_misaddress(
    email: InProcessEmailService, field: str, value: Any
) -> None:
    event = _registered()
    data = event.data | {field: value}
    with pytest.raises(MalformedEvent):
        email.handle_event(Event(USER_REGISTERED if field != "version" else USER_RENAMED, data))


def test_no_address_in_the_email_domain_s_logs(
    email: InProcessEmailService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="blog")
    logging.getLogger("blog").propagate = True
    try:
        email.handle_event(_registered())
        email.handle_event(_renamed("Ada L", 1))
        _greeting(email, "Logged")
    finally:
        logging.getLogger("blog").propagate = False
    assert caplog.records
    assert [r.getMessage() for r in caplog.records if "ada@example.com" in r.getMessage()] == []


def test_the_smtp_transport_does_not_log_the_recipient(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[Any] = []

    class FakeSmtp:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> FakeSmtp:
            return self

        def __exit__(self, *args: Any) -> None:
            pass

        def send_message(self, message: Any) -> None:
            sent.append(message)

    caplog.set_level(logging.INFO, logger="blog")
    logging.getLogger("blog").propagate = True
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("blog.email.transports.smtplib.SMTP", FakeSmtp)
            SmtpTransport("127.0.0.1", 25).send(FROM, "ada@example.com", "s", "b")
    finally:
        logging.getLogger("blog").propagate = False
    assert sent and caplog.records
    assert "ada@example.com" not in caplog.text


# --------------------------------------------------------------------------- auth


@pytest.fixture
def auth(tmp_path: Path) -> Iterator[tuple[InProcessAuthService, list[Event]]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'auth.db'}")
    create_tables(engine, auth_metadata)
    events: list[Event] = []
    bus = InlineEventBus()
    bus.subscribe(USER_RENAMED, events.append, consumer="test")
    config = AuthConfig(bcrypt_rounds=4, jwt_secret="unit-" + "0123456789abcdef" * 4)
    yield InProcessAuthService(make_session_factory(engine), bus, config), events
    engine.dispose()


def test_auth_numbers_concurrent_renames_in_commit_order(
    auth: tuple[InProcessAuthService, list[Event]],
) -> None:
    service, events = auth
    user = service.register("ada@example.com", "Ada", "correct horse battery")
    names = [f"Name {i}" for i in range(16)]
    barrier = threading.Barrier(len(names))

    def rename(name: str) -> None:
        barrier.wait()
        service.rename(user.id, name)

    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(rename, names))
    assert sorted(e.data["version"] for e in events) == list(range(1, len(names) + 1))
    newest = max(events, key=lambda e: e.data["version"])
    assert newest.data["name"] == service.get_user(user.id).name


def test_auth_logins_find_accounts_under_either_spelling(
    auth: tuple[InProcessAuthService, list[Event]],
) -> None:
    service, _ = auth
    user = service.register("Jose\u0301@XN--BCHER-KVA.de", "José", "correct horse battery")
    assert user.email == "jos\u00e9@b\u00fccher.de"
    for spelling in ("JOS\u00c9@bücher.DE", "jose\u0301@xn--bcher-kva.de", user.email):
        assert service.login(spelling, "correct horse battery").user == user


def test_a_refused_recipient_is_not_named_in_the_error() -> None:
    """The error's message is logged (and travels): it says what failed, not to whom."""

    class RefusingSmtp:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> RefusingSmtp:
            return self

        def __exit__(self, *args: Any) -> None:
            pass

        def send_message(self, message: Any) -> None:
            import smtplib

            raise smtplib.SMTPRecipientsRefused({"ada@example.com": (550, b"no such user")})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("blog.email.transports.smtplib.SMTP", RefusingSmtp)
        with pytest.raises(EmailTransportError) as excinfo:
            SmtpTransport("127.0.0.1", 25).send(FROM, "ada@example.com", "s", "b")
    assert "ada@example.com" not in str(excinfo.value)
    assert "550" in excinfo.value.message
