"""The in-process email service: the only code that touches ``blog.email.models``.

It reacts to other domains' events and never calls them: addresses come from its own copy of the
recipients, fed by ``user.registered``/``user.renamed``. That is what lets email become a plain
queue consumer later without any other domain noticing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from email.utils import getaddresses, parseaddr
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from blog.db import isoformat, ping, transaction, utcnow
from blog.email import EmailMessage, MalformedEvent, UnknownRecipient
from blog.email.models import (
    EMAIL_MAX,
    EVENT_ID_MAX,
    EmailMessageRecord,
    EmailRecipient,
    NameVersion,
    ProcessedEvent,
)
from blog.email.transports import EmailTransport
from blog.errors import invalid, storable_id, unstorable_text
from blog.events import PAYMENT_COMPLETED, POST_CREATED, USER_REGISTERED, USER_RENAMED, Event

log = logging.getLogger(__name__)

PRODUCT_NAME = "Strangler Blog"
INBOX_LIMIT_MAX = 200
SUBJECT_MAX = 200
SIGNATURE = f"\n\nThe {PRODUCT_NAME} team\n"
RECORD_ATTEMPTS = 10
"""How often recording a handled event starts over after losing a race that is not about the
event itself (two renames of one user inserting its first name version at once, a deadlock)."""

# Currencies whose minor unit is not a hundredth (the ISO 4217 exponents Stripe uses).
_ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
_CURRENCY = re.compile(r"[A-Za-z]{3}")
# Deliberately loose: auth validated the address; this only keeps header injection out.
_ADDRESS = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")


def format_amount(amount: int, currency: str) -> str:
    """Minor units to a receipt amount: ``(1999, "usd")`` → ``"19.99 USD"``, ``(5000, "jpy")``
    → ``"5000 JPY"``."""
    code = currency.lower()
    digits = 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2
    return f"{Decimal(amount).scaleb(-digits):.{digits}f} {code.upper()}"


@dataclass(frozen=True)
class _Draft:
    to: str
    subject: str
    body: str


@dataclass(frozen=True)
class _RecipientChange:
    """``email=None`` renames a recipient (one we do not know yet gets the name when it
    registers); ``version`` orders the changes of one user's name (registration: 0)."""

    user_id: int
    name: str
    email: str | None = None
    version: int = 0


@dataclass(frozen=True)
class _Outcome:
    draft: _Draft | None = None
    recipient: _RecipientChange | None = None


class InProcessEmailService:
    """Turns each event into at most one recorded message, once per event id.

    Order of work: validate → check the processed record → send → record (message row, processed
    event id and recipient change in ONE transaction). Delivery is therefore *at-least-once*: an
    SMTP server cannot join our transaction, so a crash or failed commit after the send and before
    the commit leaves the event unrecorded and its redelivery mails it again. Recording first would
    turn that window into a lost email instead; a rare duplicate is the lesser harm. Two consumers
    racing on one event id fall into the same window: the loser's commit hits the processed-event
    primary key and reports the event as already handled.

    Events that cannot be handled yet (``UnknownRecipient``) or ever (``MalformedEvent``) raise and
    are not recorded, so a broker can redeliver or dead-letter them.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        transport: EmailTransport,
        from_address: str,
    ) -> None:
        self._session_factory = session_factory
        self._transport = transport
        self._from_address = from_address
        self._handlers: dict[str, Callable[[Mapping[str, Any]], _Outcome]] = {
            USER_REGISTERED: self._on_user_registered,
            USER_RENAMED: self._on_user_renamed,
            POST_CREATED: self._on_post_created,
            PAYMENT_COMPLETED: self._on_payment_completed,
        }

    # ------------------------------------------------------------------ interface

    def handle_event(self, event: Event) -> bool:
        handler = self._handlers.get(event.type)
        if handler is None:
            raise MalformedEvent(f"unknown event type {event.type!r}", details={"type": event.type})
        if not isinstance(event.id, str) or not 0 < len(event.id) <= EVENT_ID_MAX:
            raise MalformedEvent(f"event id must be a string of 1..{EVENT_ID_MAX} characters")
        if not isinstance(event.data, Mapping):
            raise MalformedEvent("event data must be a mapping")
        if self._is_processed(event.id):
            log.info("email: event %s (%s) was already handled; skipped", event.id, event.type)
            return False

        outcome = handler(event.data)
        draft = outcome.draft
        if draft is not None:
            draft = _Draft(draft.to, _one_line(draft.subject), draft.body)
            self._transport.send(self._from_address, draft.to, draft.subject, draft.body)
        for attempt in range(RECORD_ATTEMPTS):
            try:
                self._record(event, outcome.recipient, draft)
                break
            except (IntegrityError, OperationalError):
                if self._is_processed(event.id):
                    log.warning(
                        "email: event %s (%s) was handled concurrently; its email may have gone "
                        "out twice",
                        event.id,
                        event.type,
                    )
                    return False
                if attempt == RECORD_ATTEMPTS - 1:
                    raise  # let the broker retry
        # Ids only: an address is personal data, and INFO logs are kept and shipped widely.
        mailed = ", mailed" if draft else ""
        log.info("email: handled event %s (%s)%s", event.id, event.type, mailed)
        return True

    def list_inbox(self, limit: int = 50) -> list[EmailMessage]:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise invalid("limit", "must be a positive integer")
        limit = max(1, min(limit, INBOX_LIMIT_MAX))  # a friendly clamp, not a refusal
        query = (
            select(EmailMessageRecord)
            .order_by(EmailMessageRecord.created_at.desc(), EmailMessageRecord.id.desc())
            .limit(limit)
        )
        with self._session_factory() as session:
            return [_to_message(row) for row in session.scalars(query)]

    def health(self) -> dict[str, object]:
        with self._session_factory() as session:
            database = ping(session.get_bind())
        return {
            "status": "ok" if database else "down",
            "database": database,
            "transport": self._transport.name,
        }

    # ------------------------------------------------------------------ persistence

    def _is_processed(self, event_id: str) -> bool:
        with self._session_factory() as session:
            return session.get(ProcessedEvent, event_id) is not None

    def _recipient(self, user_id: int) -> EmailRecipient:
        with self._session_factory() as session:
            row = session.get(EmailRecipient, user_id)
        if row is None:
            raise UnknownRecipient(
                f"no address known for user {user_id}", details={"user_id": user_id}
            )
        return row

    def _record(self, event: Event, change: _RecipientChange | None, draft: _Draft | None) -> None:
        now = utcnow()
        with transaction(self._session_factory) as session:
            session.add(ProcessedEvent(event_id=event.id, event_type=event.type, processed_at=now))
            if change is not None:
                _apply(session, change)
            if draft is not None:
                session.add(
                    EmailMessageRecord(
                        event_id=event.id,
                        to=draft.to,
                        subject=draft.subject,
                        body=draft.body,
                        transport=self._transport.name,
                        created_at=now,
                    )
                )

    # ------------------------------------------------------------------ one handler per event

    def _on_user_registered(self, data: Mapping[str, Any]) -> _Outcome:
        user_id, email, name = _user(data, "user_id"), _address(data, "email"), _str(data, "name")
        name = self._newest_name(user_id, name)
        body = (
            f"{_greeting(name)}\n\nwelcome to {PRODUCT_NAME}! Your account is ready: sign in "
            f"with {email} to start writing and commenting.{SIGNATURE}"
        )
        return _Outcome(
            _Draft(email, f"Welcome to {PRODUCT_NAME}, {name}!", body),
            _RecipientChange(user_id, name, email),
        )

    def _on_user_renamed(self, data: Mapping[str, Any]) -> _Outcome:
        # old_name is in the payload but unused: a tolerant reader requires only what it needs.
        change = _RecipientChange(
            _user(data, "user_id"), _str(data, "name"), version=_version(data)
        )
        return _Outcome(recipient=change)

    def _newest_name(self, user_id: int, name: str) -> str:
        """The name to welcome a user by: a rename that overtook the registration wins."""
        with self._session_factory() as session:
            held = session.get(NameVersion, user_id)
        return held.name if held is not None and held.version > 0 else name

    def _on_post_created(self, data: Mapping[str, Any]) -> _Outcome:
        post_id, title = _int(data, "post_id"), _str(data, "title")
        # Our own copy of the name, not author_name: it follows user.renamed.
        author = self._recipient(_user(data, "author_id"))
        body = (
            f"{_greeting(author.name)}\n\nyour post '{title}' is published "
            f"(post #{post_id}).{SIGNATURE}"
        )
        return _Outcome(_Draft(author.email, f"Your post '{title}' is published", body))

    def _on_payment_completed(self, data: Mapping[str, Any]) -> _Outcome:
        payment_id, amount = _int(data, "payment_id"), _int(data, "amount")
        currency = _str(data, "currency")
        reference = data.get("provider_ref")
        if amount < 0:
            raise MalformedEvent("data.amount must not be negative", details={"field": "amount"})
        if not _CURRENCY.fullmatch(currency):
            raise MalformedEvent(
                "data.currency must be a 3-letter ISO 4217 code", details={"field": "currency"}
            )
        if reference is not None and not isinstance(reference, str):
            raise _malformed(data, "provider_ref", "a string or null")
        payer = self._recipient(_user(data, "user_id"))
        total = format_amount(amount, currency)
        lines = [f"Payment:   #{payment_id}", f"Amount:    {total}"]
        if reference:
            lines.append(f"Reference: {reference}")
        body = (
            f"{_greeting(payer.name)}\n\nthank you for your payment. Your receipt:\n\n"
            + "\n".join(lines)
            + SIGNATURE
        )
        return _Outcome(
            _Draft(payer.email, f"Your receipt for payment #{payment_id}: {total}", body)
        )


# ---------------------------------------------------------------------- helpers


def _apply(session: Session, change: _RecipientChange) -> None:
    """Apply a registration or a rename, unless a later version of the user's name is held.

    The version is compared and written by one conditional UPDATE (a compare-and-set), which
    holds the user's version row until this transaction commits (a row lock; SQLite's single
    writer): a concurrent change of the same user waits, then sees this one's version. Renames
    delivered out of order therefore leave the last *committed* name, not the last delivered.
    A first change racing another inserts the same key: the loser's IntegrityError makes
    ``handle_event`` record the event again.
    """
    newer: ColumnElement[bool] = (
        NameVersion.version < change.version if change.version > 0 else NameVersion.version == 0
    )
    claimed = cast(
        CursorResult[Any],
        session.execute(
            update(NameVersion)
            .where(NameVersion.user_id == change.user_id, newer)
            .values(version=change.version, name=change.name)
            .execution_options(synchronize_session=False)
        ),
    )
    name = change.name
    if claimed.rowcount != 1:
        held = session.scalar(select(NameVersion).where(NameVersion.user_id == change.user_id))
        if held is None:
            session.add(
                NameVersion(user_id=change.user_id, version=change.version, name=change.name)
            )
            session.flush()
        elif change.email is None:
            log.info(
                "email: rename of user %s to version %s ignored: version %s is held",
                change.user_id,
                change.version,
                held.version,
            )
            return
        else:  # a registration delivered after a rename: the renamed name stays
            name = held.name
    row = session.get(EmailRecipient, change.user_id)
    if row is not None:
        row.name = name
        if change.email is not None:
            row.email = change.email
    elif change.email is not None:
        session.add(EmailRecipient(user_id=change.user_id, email=change.email, name=name))
    else:
        log.info("email: rename of unknown user %s kept for its registration", change.user_id)


def _malformed(data: Mapping[str, Any], key: str, expected: str) -> MalformedEvent:
    # The type, never the value: payloads carry addresses and names.
    got = "missing" if key not in data else f"got {type(data[key]).__name__}"
    return MalformedEvent(f"data.{key} must be {expected} ({got})", details={"field": key})


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _malformed(data, key, "an integer")
    return value


def _user(data: Mapping[str, Any], key: str) -> int:
    """A user id: one no row can have is malformed (and must reach no query)."""
    value = _int(data, key)
    if value < 1 or not storable_id(value):
        raise MalformedEvent(f"data.{key} must be a user id", details={"field": key})
    return value


def _version(data: Mapping[str, Any]) -> int:
    """A rename's name version; an event from before versions carries none: 0."""
    value = data.get("version", 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise _malformed(data, "version", "a non-negative integer")
    return value


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _malformed(data, key, "a string")
    problem = unstorable_text(value)
    if problem is not None:
        raise MalformedEvent(f"data.{key} {problem}", details={"field": key})
    return value


def _address(data: Mapping[str, Any], key: str) -> str:
    """Auth sends only plain addresses; this makes sure no event can make us mail another
    recipient, or several: the address must be one a mail parser reads as itself."""
    value = _str(data, key)
    if (
        len(value) > EMAIL_MAX
        or not _ADDRESS.fullmatch(value)
        or parseaddr(value) != ("", value)
        or getaddresses([value]) != [("", value)]
    ):
        raise MalformedEvent(f"data.{key} must be an email address", details={"field": key})
    return value


def _one_line(text: str) -> str:
    """A header-safe subject: no line breaks (header injection), bounded length."""
    text = " ".join(text.split())
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3] + "..."


def _greeting(name: str) -> str:
    name = " ".join(name.split())
    return f"Hi {name}," if name else "Hi,"


def _to_message(row: EmailMessageRecord) -> EmailMessage:
    return EmailMessage(
        id=row.id,
        event_id=row.event_id,
        to=row.to,
        subject=row.subject,
        body=row.body,
        transport=row.transport,
        created_at=isoformat(row.created_at),
    )
