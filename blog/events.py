"""Domain events and the bus that carries them.

A domain publishes an event *inside* the unit of work that made the change (``publish(session,
event)``). The inline bus hands it to subscribers only after that transaction commits, so a
subscriber never sees a change that was rolled back; a failing subscriber is logged and never fails
the publisher's request. The RabbitMQ bus (a later step) keeps the same interface and writes the
event into the publisher's outbox table in that same transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from blog.db import UtcDateTime
from blog.errors import DomainError, InvalidInput

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


class EventPublisher(Protocol):
    """What a domain needs: publish an event inside the unit of work that caused it."""

    def publish(self, session: Session, event: Event) -> None:
        """Publish ``event`` as part of the transaction that ``session`` is running."""


class EventBus(EventPublisher, Protocol):
    def subscribe(self, event_type: str, handler: Handler, *, consumer: str) -> None:
        """Call ``handler`` for every committed event of ``event_type``."""


class SetAside(Protocol):
    """Where the inline bus keeps an event a consumer refused, to be tried again later
    (``blog.redelivery``: a table in the monolith's database, so a restart loses nothing)."""

    def set_aside(self, consumer: str, event: Event, error: Exception, *, permanent: bool) -> bool:
        """Keep ``event`` for ``consumer``; False when it could not be kept (the database is
        down): the caller then still holds the only copy."""


class UnknownConsumer(LookupError):
    """An event set aside for a consumer that no longer takes it in this process."""


class InlineEventBus:
    """Delivers events in-process, synchronously, right after the publisher's commit.

    With ``set_aside`` (the monolith's), an event a consumer refuses is kept and tried again by
    ``blog.redelivery`` for that consumer alone, however long it takes and across restarts;
    an error that says the event can never be handled (``InvalidInput``, unless the consumer
    declared it a "not yet", e.g. an event that overtook the one it depends on) is kept as given
    up at once. Without it (unit tests, tools), a failure is only logged.
    """

    _PENDING = "blog.pending_events"

    def __init__(self, set_aside: SetAside | None = None) -> None:
        self._handlers: dict[str, list[tuple[str, Handler]]] = defaultdict(list)
        self._retry_on: dict[str, tuple[type[Exception], ...]] = {}
        self._set_aside = set_aside

    def subscribe(
        self,
        event_type: str,
        handler: Handler,
        *,
        consumer: str,
        retry_on: tuple[type[Exception], ...] = (),
    ) -> None:
        """``retry_on``: errors of ``handler`` that mean "not yet" even though they say the
        input is wrong (the consumer's ``retry_handling_on``)."""
        self._handlers[event_type].append((consumer, handler))
        self._retry_on[consumer] = retry_on

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

    def deliver(self, published: Event, *, strict: bool = False) -> None:
        """Hand ``published`` to every subscriber. A failure is logged and set aside; when it
        could not be set aside (no store, or the store failed) and ``strict``, it is raised after
        all subscribers had their turn, so that the caller (a feed puller) keeps the event and
        delivers it again: every consumer is idempotent by event id or by nature."""
        failure: Exception | None = None
        for consumer, handler in self._handlers.get(published.type, []):
            try:
                handler(published)
            except Exception as exc:
                kept = self._keep(consumer, published, exc)
                log.log(
                    logging.WARNING if kept else logging.ERROR,
                    "event handler failed: consumer=%s event=%s id=%s (%s): %s: %s",
                    consumer,
                    published.type,
                    published.id,
                    "set aside to try again" if kept else "not kept",
                    type(exc).__name__,
                    exc,
                    exc_info=not isinstance(exc, DomainError),
                )
                if not kept:
                    failure = failure or exc
        if strict and failure is not None:
            raise failure

    def _keep(self, consumer: str, event: Event, error: Exception) -> bool:
        if self._set_aside is None:
            return False
        return self._set_aside.set_aside(
            consumer, event, error, permanent=self.is_permanent(consumer, error)
        )

    def is_permanent(self, consumer: str, error: Exception) -> bool:
        """An error that says the event can never be handled by ``consumer``."""
        return isinstance(error, InvalidInput) and not isinstance(
            error, self._retry_on.get(consumer, ())
        )

    def deliver_to(self, consumer: str, event: Event) -> None:
        """Hand ``event`` to ``consumer``'s handler alone (a redelivery); its error is raised."""
        for name, handler in self._handlers.get(event.type, []):
            if name == consumer:
                handler(event)
                return
        raise UnknownConsumer(f"{consumer} does not take {event.type} events in this process")


# --------------------------------------------------------------------------- the outbox


def outbox_table(metadata: MetaData, domain: str) -> Table:
    """The publishing domain's outbox, on the domain's own MetaData (so it moves with it)."""
    return Table(
        f"{domain}_outbox",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("type", String(64), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("published_at", UtcDateTime, nullable=True, index=True),
    )


class OutboxEventBus:
    """Writes each event into the domain's outbox table, in the caller's own transaction.

    The event exists exactly when the change exists: a rollback removes both, a commit keeps
    both, and a relay (the HTTP feed, or RabbitMQ) delivers it afterwards, however long the
    consumer is away.
    """

    _LISTENING = "blog.outbox_listening"

    def __init__(self, table: Table, bell: Path | None = None) -> None:
        self.table = table
        self.bell = bell
        self._changed = threading.Condition()
        self._version = 0

    def publish(self, session: Session, event: Event) -> None:
        session.execute(
            insert(self.table).values(
                event_id=event.id,
                type=event.type,
                payload=json.dumps(event.to_dict()),
                created_at=datetime.now(UTC),
            )
        )
        if not session.info.get(self._LISTENING):
            session.info[self._LISTENING] = True
            sa_event.listen(session, "after_commit", self._after_commit)

    def _after_commit(self, _session: Session) -> None:
        self.wake_waiters()
        if self.bell is not None:
            ring(self.bell)

    def wake_waiters(self) -> None:
        """Wake everyone in ``wait_for_commit`` (a commit happened, or a relay is stopping)."""
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def watermark(self) -> tuple[int, int]:
        """Where the outbox stands now: take it *before* reading the table, and wait from it,
        so that a commit between the read and the wait is not missed."""
        return self._version, _rung_at(self.bell)

    def wait_for_commit(
        self,
        timeout: float,
        bell_interval: float | None = 0.25,
        since: tuple[int, int] | None = None,
    ) -> bool:
        """Block until something is committed to the outbox, or ``timeout``; True when it was.

        A commit in this process wakes the waiter at once. One in another process (a server's
        other worker) rings the doorbell file, which is looked at every ``bell_interval``
        seconds: a ``stat`` costs microseconds where reading the table again costs a query.
        ``None``: no other process writes this outbox (a one-worker server), so an idle waiter
        sleeps until a commit or its timeout and costs nothing.
        """
        deadline = time.monotonic() + timeout
        seen, rung = since if since is not None else self.watermark()
        with self._changed:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                watching = self.bell is not None and bell_interval is not None
                wait = min(remaining, bell_interval) if bell_interval and watching else remaining
                if self._changed.wait_for(lambda: self._version != seen, timeout=wait):
                    return True
                if watching and _rung_at(self.bell) != rung:
                    return True


def doorbell(engine: Engine, table: Table) -> Path:
    """The file every process that commits to ``table`` (in that database) touches after the
    commit, so a waiter in another process learns of it without querying the table."""
    url = engine.url.render_as_string(hide_password=True)
    digest = hashlib.sha1(f"{url} {table.name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"strangler-blog-outbox-{digest}.bell"


def ring(bell: Path) -> None:
    try:
        os.utime(bell)
    except FileNotFoundError:
        bell.touch()
    except OSError as exc:  # the bell is a hint; the waiters' own timeouts catch up
        log.warning("outbox doorbell %s: %s", bell, exc)


def _rung_at(bell: Path | None) -> int:
    if bell is None:
        return 0
    try:
        return bell.stat().st_mtime_ns
    except OSError:
        return 0


def read_outbox(engine: Engine, table: Table, after: int, limit: int) -> list[tuple[int, Event]]:
    """Outbox rows after position ``after``, oldest first, as (position, event)."""
    query = select(table.c.id, table.c.payload).where(table.c.id > after)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(table.c.id).limit(limit)).all()
    return [(row.id, Event.from_dict(json.loads(row.payload))) for row in rows]
