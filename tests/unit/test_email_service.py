"""The in-process email service on a real SQLite file with the inbox transport."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from blog.config import EmailConfig, SmtpConfig
from blog.db import create_tables, make_engine, make_session_factory, transaction, utcnow
from blog.email import MalformedEvent, UnknownRecipient
from blog.email.models import EmailMessageRecord, EmailRecipient, ProcessedEvent, metadata
from blog.email.service import InProcessEmailService, format_amount
from blog.email.transports import InboxTransport, SmtpTransport, make_transport
from blog.events import PAYMENT_COMPLETED, POST_CREATED, USER_REGISTERED, USER_RENAMED, Event

FROM = "Strangler Blog <no-reply@strangler-blog.local>"


class RecordingTransport(InboxTransport):
    """The inbox transport, remembering what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, str]] = []

    def send(self, from_address: str, to: str, subject: str, body: str) -> None:
        self.sent.append((from_address, to, subject, body))


@pytest.fixture
def engine(tmp_path: Any) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'email.db'}")
    create_tables(engine, metadata)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> Any:
    return make_session_factory(engine)


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def service(factory: Any, transport: RecordingTransport) -> InProcessEmailService:
    return InProcessEmailService(factory, transport, FROM)


def register(
    service: InProcessEmailService,
    user_id: int = 1,
    name: str = "Ada",
    email: str = "ada@example.com",
) -> Event:
    event = Event(USER_REGISTERED, {"user_id": user_id, "email": email, "name": name})
    assert service.handle_event(event) is True
    return event


def post_created(author_id: int = 1, title: str = "Hello", post_id: int = 7) -> Event:
    return Event(
        POST_CREATED,
        {"post_id": post_id, "title": title, "author_id": author_id, "author_name": "stale name"},
    )


def payment(user_id: int = 1, amount: int = 1999, currency: str = "usd") -> Event:
    return Event(
        PAYMENT_COMPLETED,
        {
            "payment_id": 42,
            "user_id": user_id,
            "amount": amount,
            "currency": currency,
            "provider_ref": "ch_123",
        },
    )


def count(factory: Any, model: Any) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model))


# ---------------------------------------------------------------------------- each event type


def test_user_registered_sends_welcome_and_remembers_recipient(
    service: InProcessEmailService, factory: Any, transport: RecordingTransport
) -> None:
    event = register(service, name="Zoë", email="zoe@example.com")

    [message] = service.list_inbox()
    assert message.to == "zoe@example.com"
    assert message.event_id == event.id
    assert message.subject == "Welcome to Strangler Blog, Zoë!"
    assert "Hi Zoë," in message.body
    assert message.transport == "inbox"
    assert message.created_at.endswith("+00:00")
    assert transport.sent == [(FROM, message.to, message.subject, message.body)]
    with factory() as session:
        recipient = session.get(EmailRecipient, 1)
        assert (recipient.email, recipient.name) == ("zoe@example.com", "Zoë")


def test_post_created_confirms_to_the_author(service: InProcessEmailService) -> None:
    register(service)
    assert service.handle_event(post_created(title="Strangling monoliths")) is True

    message = service.list_inbox()[0]
    assert message.to == "ada@example.com"
    assert message.subject == "Your post 'Strangling monoliths' is published"
    assert "Hi Ada," in message.body
    assert "post #7" in message.body


def test_post_title_cannot_inject_headers(service: InProcessEmailService) -> None:
    register(service)
    service.handle_event(post_created(title="Evil\r\nBcc: victim@example.com"))
    subject = service.list_inbox()[0].subject
    assert subject == "Your post 'Evil Bcc: victim@example.com' is published"


def test_payment_completed_sends_a_receipt(service: InProcessEmailService) -> None:
    register(service)
    assert service.handle_event(payment(amount=1999, currency="usd")) is True

    message = service.list_inbox()[0]
    assert message.to == "ada@example.com"
    assert "19.99 USD" in message.subject
    assert "#42" in message.subject
    assert "Amount:    19.99 USD" in message.body
    assert "Reference: ch_123" in message.body


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1999, "usd", "19.99 USD"),
        (5, "eur", "0.05 EUR"),
        (0, "usd", "0.00 USD"),
        (50000, "krw", "50000 KRW"),
        (1234, "JPY", "1234 JPY"),
        (12345, "kwd", "12.345 KWD"),
    ],
)
def test_format_amount_from_minor_units(amount: int, currency: str, expected: str) -> None:
    assert format_amount(amount, currency) == expected


def test_zero_decimal_receipt(service: InProcessEmailService) -> None:
    register(service)
    service.handle_event(payment(amount=50000, currency="krw"))
    assert "Amount:    50000 KRW" in service.list_inbox()[0].body


def test_rename_updates_the_name_used_in_later_mails(
    service: InProcessEmailService, transport: RecordingTransport
) -> None:
    register(service)
    renamed = Event(USER_RENAMED, {"user_id": 1, "name": "Ada Lovelace", "old_name": "Ada"})
    assert service.handle_event(renamed) is True
    assert len(transport.sent) == 1  # the welcome only: a rename sends nothing

    service.handle_event(post_created())
    assert "Hi Ada Lovelace," in service.list_inbox()[0].body


def test_rename_of_unknown_user_is_recorded_as_processed(
    service: InProcessEmailService, factory: Any
) -> None:
    event = Event(USER_RENAMED, {"user_id": 99, "name": "Ghost", "old_name": "Boo"})
    assert service.handle_event(event) is True
    assert service.handle_event(event) is False
    assert count(factory, EmailRecipient) == 0
    assert count(factory, ProcessedEvent) == 1
    assert service.list_inbox() == []


# ---------------------------------------------------------------------------- idempotency


def test_duplicate_event_id_sends_once(
    service: InProcessEmailService, factory: Any, transport: RecordingTransport
) -> None:
    event = register(service)
    assert service.handle_event(event) is False
    assert service.handle_event(Event.from_dict(event.to_dict())) is False
    assert len(transport.sent) == 1
    assert count(factory, EmailMessageRecord) == 1


def test_concurrent_duplicate_is_treated_as_already_handled(factory: Any) -> None:
    """Another consumer commits the same event id between our check and our commit."""

    class RacingTransport(InboxTransport):
        def send(self, from_address: str, to: str, subject: str, body: str) -> None:
            with transaction(factory) as session:
                session.add(
                    ProcessedEvent(event_id=event.id, event_type=event.type, processed_at=utcnow())
                )

    service = InProcessEmailService(factory, RacingTransport(), FROM)
    event = Event(USER_REGISTERED, {"user_id": 1, "email": "ada@example.com", "name": "Ada"})
    assert service.handle_event(event) is False
    assert count(factory, EmailMessageRecord) == 0  # our transaction rolled back as a whole
    assert count(factory, EmailRecipient) == 0


def test_failed_send_records_nothing_so_a_retry_can_send(factory: Any) -> None:
    class BrokenTransport(InboxTransport):
        def send(self, from_address: str, to: str, subject: str, body: str) -> None:
            raise RuntimeError("smtp down")

    event = Event(USER_REGISTERED, {"user_id": 1, "email": "ada@example.com", "name": "Ada"})
    with pytest.raises(RuntimeError):
        InProcessEmailService(factory, BrokenTransport(), FROM).handle_event(event)
    assert count(factory, ProcessedEvent) == 0
    assert InProcessEmailService(factory, InboxTransport(), FROM).handle_event(event) is True


# ---------------------------------------------------------------------------- bad events


@pytest.mark.parametrize("event", [post_created(author_id=5), payment(user_id=5)])
def test_unknown_recipient(
    service: InProcessEmailService, factory: Any, transport: RecordingTransport, event: Event
) -> None:
    with pytest.raises(UnknownRecipient) as caught:
        service.handle_event(event)
    assert caught.value.details == {"user_id": 5}
    assert transport.sent == []
    assert count(factory, ProcessedEvent) == 0  # not recorded: a redelivery may succeed later


def without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


REGISTERED = {"user_id": 1, "email": "ada@example.com", "name": "Ada"}
POST = {"post_id": 7, "title": "Hello", "author_id": 1, "author_name": "Ada"}
PAYMENT = {
    "payment_id": 42,
    "user_id": 1,
    "amount": 1999,
    "currency": "usd",
    "provider_ref": "ch_1",
}


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        (USER_REGISTERED, without(REGISTERED, "email"), "email"),
        (USER_REGISTERED, {**REGISTERED, "user_id": "1"}, "user_id"),
        (USER_REGISTERED, {**REGISTERED, "user_id": True}, "user_id"),
        (USER_REGISTERED, {**REGISTERED, "email": "not-an-address"}, "email"),
        (USER_REGISTERED, {**REGISTERED, "email": "a@b.c\r\nBcc: x@y.z"}, "email"),
        (USER_REGISTERED, {**REGISTERED, "name": None}, "name"),
        (USER_RENAMED, {"user_id": 1}, "name"),
        (POST_CREATED, without(POST, "title"), "title"),
        (POST_CREATED, {**POST, "author_id": 1.0}, "author_id"),
        (PAYMENT_COMPLETED, without(PAYMENT, "amount"), "amount"),
        (PAYMENT_COMPLETED, {**PAYMENT, "amount": "19.99"}, "amount"),
        (PAYMENT_COMPLETED, {**PAYMENT, "amount": -1}, "amount"),
        (PAYMENT_COMPLETED, {**PAYMENT, "currency": "dollars"}, "currency"),
        (PAYMENT_COMPLETED, {**PAYMENT, "provider_ref": 5}, "provider_ref"),
    ],
)
def test_malformed_data_is_rejected(
    service: InProcessEmailService,
    factory: Any,
    transport: RecordingTransport,
    event_type: str,
    data: dict[str, Any],
    field: str,
) -> None:
    register(service)
    transport.sent.clear()
    with pytest.raises(MalformedEvent) as caught:
        service.handle_event(Event(event_type, data))
    assert caught.value.details == {"field": field}
    assert caught.value.code == "malformed_event"
    assert transport.sent == []
    assert count(factory, ProcessedEvent) == 1  # only the registration


def test_unknown_event_type_is_malformed(service: InProcessEmailService) -> None:
    with pytest.raises(MalformedEvent, match="unknown event type"):
        service.handle_event(Event("user.deleted", {"user_id": 1}))


def test_non_mapping_data_and_bad_id_are_malformed(service: InProcessEmailService) -> None:
    with pytest.raises(MalformedEvent, match="data"):
        service.handle_event(Event(USER_REGISTERED, ["not", "a", "mapping"]))  # type: ignore[arg-type]
    with pytest.raises(MalformedEvent, match="event id"):
        service.handle_event(Event(USER_REGISTERED, dict(REGISTERED), id=""))


# ---------------------------------------------------------------------------- inbox + health


def test_list_inbox_is_newest_first_and_limited(service: InProcessEmailService) -> None:
    register(service)
    for n in range(4):
        service.handle_event(post_created(title=f"post {n}", post_id=n))

    subjects = [m.subject for m in service.list_inbox()]
    assert subjects == [
        "Your post 'post 3' is published",
        "Your post 'post 2' is published",
        "Your post 'post 1' is published",
        "Your post 'post 0' is published",
        "Welcome to Strangler Blog, Ada!",
    ]
    assert [m.subject for m in service.list_inbox(limit=2)] == subjects[:2]
    assert len(service.list_inbox(limit=0)) == 1  # clamped up to 1
    assert len(service.list_inbox(limit=10_000)) == 5  # clamped to 200, not rejected


def test_health(service: InProcessEmailService) -> None:
    assert service.health() == {"status": "ok", "database": True, "transport": "inbox"}


def test_make_transport_follows_config() -> None:
    assert isinstance(make_transport(EmailConfig()), InboxTransport)
    smtp = make_transport(
        EmailConfig(
            transport="smtp",
            smtp=SmtpConfig(
                host="mail.example.com",
                port=587,
                starttls=True,
                username="u",
                password="p",
                timeout_seconds=3.0,
            ),
        )
    )
    assert isinstance(smtp, SmtpTransport)
    assert (smtp.name, smtp.host, smtp.port, smtp.starttls, smtp.username, smtp.timeout) == (
        "smtp",
        "mail.example.com",
        587,
        True,
        "u",
        3.0,
    )
