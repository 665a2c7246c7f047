"""The email domain: sends what other domains' events call for.

It is never called on a request's path: it only reacts to events (``user.registered``,
``post.created``, ``payment.completed``), which is why it can later become a queue consumer.
It keeps its own copy of each user's address from ``user.registered``/``user.renamed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blog.contract import Route
from blog.errors import BadGateway, InvalidInput, Unavailable
from blog.events import EVENT_TYPES, Event
from blog.manifest import BuildContext, DomainManifest, QueueConsumer


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


class EmailUnavailable(Unavailable):
    code = "email_unavailable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__("email", message)


ERRORS = (UnknownRecipient, MalformedEvent, EmailTransportError)


class EmailService(Protocol):
    def handle_event(self, event: Event) -> bool:
        """Send what the event calls for; False when the event id was already handled."""

    def list_inbox(self, limit: int = 50) -> list[EmailMessage]: ...

    def health(self) -> dict[str, object]: ...


ROUTES = (
    # Email's write side is the queue: it takes events, never commands. Its read side (the dev
    # mailbox) is served so that GET /api/dev/inbox keeps working after the extraction.
    Route("list_inbox", "GET", "/inbox", safe=True, query={"limit": "limit"}),
)


def _build(context: BuildContext) -> EmailService:
    from blog.email.service import InProcessEmailService
    from blog.email.transports import make_transport

    email = context.config.email
    return InProcessEmailService(context.sessions, make_transport(email), email.from_address)


MANIFEST = DomainManifest(
    name="email",
    interface=EmailService,
    build=_build,
    models="blog.email.models",
    errors=ERRORS,
    unavailable=EmailUnavailable,
    extraction=QueueConsumer(port=3005, routes=ROUTES),
    handles=EVENT_TYPES,
    # post.created may overtake its author's user.registered (another publisher, another
    # relay): wait for it a while before giving the event up.
    retry_handling_on=(UnknownRecipient,),
)
