"""The email domain: sends what other domains' events call for.

It is never called on a request's path: it only reacts to events (``user.registered``,
``post.created``, ``payment.completed``), which is why it can later become a queue consumer.
It keeps its own copy of each user's address from ``user.registered``/``user.renamed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blog.errors import BadGateway, InvalidInput
from blog.events import Event


@dataclass(frozen=True)
class EmailMessage:
    id: int
    event_id: str
    to: str
    subject: str
    body: str
    transport: str
    created_at: str


class UnknownRecipient(InvalidInput):
    """An event names a user the email domain has not heard of (yet)."""

    code = "unknown_recipient"


class MalformedEvent(InvalidInput):
    code = "malformed_event"


class EmailTransportError(BadGateway):
    code = "email_transport_error"


class EmailService(Protocol):
    def handle_event(self, event: Event) -> bool:
        """Send what the event calls for; False when the event id was already handled."""

    def list_inbox(self, limit: int = 50) -> list[EmailMessage]: ...

    def health(self) -> dict[str, object]: ...
