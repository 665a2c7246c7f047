"""The email domain's tables, on its own ``MetaData``.

``email_recipients`` is the domain's own copy of who can be mailed, fed by ``user.*`` events, so
email never reads auth's tables and can move to another database untouched.
``email_processed_events`` is the idempotency record: an event id in it is never acted on again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from blog.db import UtcDateTime, new_metadata

EVENT_ID_MAX = 128
EMAIL_MAX = 320  # RFC 5321: 64 (local part) + 1 + 255 (domain)


class EmailBase(DeclarativeBase):
    metadata = new_metadata()  # this domain's own: no table belongs to two domains


metadata = EmailBase.metadata


class EmailRecipient(EmailBase):
    __tablename__ = "email_recipients"

    # The publisher's user id, not a foreign key: auth's table lives in another domain.
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    name: Mapped[str] = mapped_column(String(200))


class EmailMessageRecord(EmailBase):
    """One sent message; with the inbox transport this row is the only place it goes."""

    __tablename__ = "email_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(EVENT_ID_MAX), index=True)
    to: Mapped[str] = mapped_column(String(EMAIL_MAX))
    subject: Mapped[str] = mapped_column(String(998))  # RFC 5322 line limit
    body: Mapped[str] = mapped_column(Text)
    transport: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ProcessedEvent(EmailBase):
    __tablename__ = "email_processed_events"

    event_id: Mapped[str] = mapped_column(String(EVENT_ID_MAX), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class NameVersion(EmailBase):
    """The latest name version applied for each user (auth's per-user rename counter, carried
    by ``user.renamed``; a registration is version 0), with that name: a rename delivered after
    a newer one changes nothing, and a registration delivered after a rename keeps the renamed
    name. Its own table: existing databases get new tables at start, never new columns.
    """

    __tablename__ = "email_name_versions"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
