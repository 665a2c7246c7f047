"""Domain events and the bus that carries them.

A domain publishes an event *inside* the unit of work that made the change (``publish(session,
event)``). The inline bus hands it to subscribers only after that transaction commits, so a
subscriber never sees a change that was rolled back; a failing subscriber is logged and never fails
the publisher's request. The RabbitMQ bus (a later step) keeps the same interface and writes the
event into the publisher's outbox table in that same transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

USER_REGISTERED = "user.registered"
USER_RENAMED = "user.renamed"
POST_CREATED = "post.created"
PAYMENT_COMPLETED = "payment.completed"
EVENT_TYPES = (USER_REGISTERED, USER_RENAMED, POST_CREATED, PAYMENT_COMPLETED)


@dataclass(frozen=True)
class Event:
    """The envelope on the wire: ``{id, type, occurred_at, data}``."""

    type: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(id=raw["id"], type=raw["type"], occurred_at=raw["occurred_at"], data=raw["data"])


Handler = Callable[[Event], None]


class EventBus(Protocol):
    def publish(self, session: Session, event: Event) -> None:
        """Publish ``event`` as part of the transaction that ``session`` is running."""

    def subscribe(self, event_type: str, handler: Handler, *, consumer: str) -> None:
        """Call ``handler`` for every committed event of ``event_type``."""


class InlineEventBus:
    """Delivers events in-process, synchronously, right after the publisher's commit."""

    _PENDING = "blog.pending_events"

    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[str, Handler]]] = defaultdict(list)

    def subscribe(self, event_type: str, handler: Handler, *, consumer: str) -> None:
        self._handlers[event_type].append((consumer, handler))

    def publish(self, session: Session, event: Event) -> None:
        pending = session.info.get(self._PENDING)
        if pending is None:
            pending = session.info[self._PENDING] = []
            # Listeners on a session live as long as the session (one unit of work); they stay
            # registered because removing them from inside their own dispatch is not allowed.
            sa_event.listen(session, "after_commit", self._after_commit)
            sa_event.listen(session, "after_rollback", self._after_rollback)
        pending.append(event)

    def _after_rollback(self, session: Session) -> None:
        session.info[self._PENDING] = []

    def _after_commit(self, session: Session) -> None:
        events, session.info[self._PENDING] = session.info.get(self._PENDING, []), []
        for published in events:
            self.deliver(published)

    def deliver(self, published: Event) -> None:
        for consumer, handler in self._handlers.get(published.type, []):
            try:
                handler(published)
            except Exception:
                log.exception(
                    "event handler failed: consumer=%s event=%s id=%s",
                    consumer,
                    published.type,
                    published.id,
                )
