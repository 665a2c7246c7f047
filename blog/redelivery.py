"""Events a consumer refused, kept in the monolith's database and tried again (inline broker).

With ``events.broker: inline`` the monolith hands every event to its consumers itself: events
published in-process right after their commit, and those of extracted publishers as its feed
pullers bring them in. A consumer may refuse one: email does not know a post's author yet (the
author's ``user.registered`` comes through another feed), or the consumer is a remote service that
is down (``user.renamed`` for an extracted posts). Such an event is written to
``event_redeliveries`` (per consumer: the others already have it) and :class:`RedeliveryJob` tries
it again for that consumer alone, with a doubling pause, until it is taken or
``events.redelivery_max_attempts`` tries have failed: then it is logged as given up and kept in
the table, marked, for someone to look at. Being a table, it survives a restart of the monolith;
the RabbitMQ broker keeps its own requeues and dead letters instead.

One job per monolith database (a file lock elects the process, as for the feed pullers): every
worker may set events aside, one tries them again.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from blog.db import UtcDateTime, new_metadata, utcnow
from blog.errors import DomainError
from blog.events import Event, InlineEventBus, UnknownConsumer

log = logging.getLogger(__name__)

ERROR_MAX = 1000
IDLE_CHECK_SECONDS = 5.0
"""An idle job looks for rows set aside by the monolith's other processes this often (rows set
aside in its own process wake it at once)."""

redelivery_metadata = new_metadata()
redeliveries = Table(
    "event_redeliveries",
    redelivery_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("consumer", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("type", String(64), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False, index=True),
    Column("last_error", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("gave_up_at", UtcDateTime, nullable=True),
    UniqueConstraint("consumer", "event_id"),
)


@dataclass(frozen=True)
class RedeliveryPolicy:
    max_attempts: int = 20
    initial_seconds: float = 1.0
    max_seconds: float = 300.0

    def pause_after(self, attempts: int) -> float:
        """The pause before the next try, after ``attempts`` failed ones."""
        return float(min(self.initial_seconds * 2 ** (attempts - 1), self.max_seconds))


def _reason(error: BaseException) -> str:
    message = error.message if isinstance(error, DomainError) else str(error)
    return f"{type(error).__name__}: {message}"[:ERROR_MAX]


def _aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


class Redeliveries:
    """The ``event_redeliveries`` table: what a consumer refused, and when to try it again."""

    def __init__(self, engine: Engine, policy: RedeliveryPolicy | None = None) -> None:
        self.engine = engine
        self.policy = policy or RedeliveryPolicy()
        self._added = threading.Event()

    def set_aside(self, consumer: str, event: Event, error: Exception, *, permanent: bool) -> bool:
        """Keep ``event`` for ``consumer`` (``permanent``: as given up already). An event already
        kept for it (a feed handed it over again after a crash) keeps its schedule. False when the
        database refused the row: the caller still holds the only copy."""
        now = utcnow()
        row = {
            "consumer": consumer,
            "event_id": event.id,
            "type": event.type,
            "envelope": json.dumps(event.to_dict()),
            "attempts": 1,
            "next_attempt_at": now + timedelta(seconds=self.policy.pause_after(1)),
            "last_error": _reason(error),
            "created_at": now,
            "gave_up_at": now if permanent else None,
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(redeliveries).values(row))
        except IntegrityError:
            return True  # kept already
        except SQLAlchemyError as exc:
            log.error(
                "event %s (%s) for %s could not be set aside: %s",
                event.id,
                event.type,
                consumer,
                exc,
            )
            return False
        if permanent:
            log.error(
                "event %s (%s) can never be handled by %s (%s): kept as given up",
                event.id,
                event.type,
                consumer,
                row["last_error"],
            )
        else:
            self._added.set()
        return True

    def due(self, now: datetime, limit: int = 100) -> list[Any]:
        query = (
            select(redeliveries)
            .where(redeliveries.c.gave_up_at.is_(None), redeliveries.c.next_attempt_at <= now)
            .order_by(redeliveries.c.next_attempt_at, redeliveries.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(query).all())

    def next_due(self) -> datetime | None:
        """When the earliest waiting event is due (None: nothing waits)."""
        query = select(func.min(redeliveries.c.next_attempt_at)).where(
            redeliveries.c.gave_up_at.is_(None)
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).scalar()
        return _aware(found) if found is not None else None

    def delivered(self, row_id: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(redeliveries).where(redeliveries.c.id == row_id))

    def failed(self, row: Any, error: Exception, *, permanent: bool) -> bool:
        """Count a failed try; True when the event is given up (its last try, or ``permanent``)."""
        attempts = row.attempts + 1
        now = utcnow()
        given_up = permanent or attempts >= self.policy.max_attempts
        values: dict[str, Any] = {"attempts": attempts, "last_error": _reason(error)}
        if given_up:
            values["gave_up_at"] = now
        else:
            values["next_attempt_at"] = now + timedelta(seconds=self.policy.pause_after(attempts))
        with self.engine.begin() as connection:
            connection.execute(
                update(redeliveries).where(redeliveries.c.id == row.id).values(values)
            )
        return given_up

    def waiting(self) -> int:
        """How many events wait for another try (for tests, the soak and health checks)."""
        return self._count(redeliveries.c.gave_up_at.is_(None))

    def given_up(self) -> int:
        return self._count(redeliveries.c.gave_up_at.is_not(None))

    def _count(self, condition: Any) -> int:
        query = select(func.count()).select_from(redeliveries).where(condition)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def wake(self) -> None:
        """Wake whoever waits in :meth:`wait_for_new` (the job is stopping)."""
        self._added.set()

    def wait_for_new(self, timeout: float) -> None:
        """Block until this process sets an event aside, or ``timeout``."""
        self._added.wait(timeout)
        self._added.clear()


class RedeliveryJob:
    """Tries the events set aside again, each for its consumer, when each is due."""

    def __init__(self, store: Redeliveries, bus: InlineEventBus) -> None:
        self.store = store
        self._bus = bus
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="event-redelivery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.store.wake()  # ends the idle wait at once
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def run_once(self) -> int:
        """Try every event that is due; returns how many were taken."""
        taken = 0
        for row in self.store.due(utcnow()):
            if self._stop.is_set():
                break
            event = Event.from_dict(json.loads(row.envelope))
            try:
                self._bus.deliver_to(row.consumer, event)
            except Exception as exc:
                permanent = isinstance(exc, UnknownConsumer) or self._bus.is_permanent(
                    row.consumer, exc
                )
                if self.store.failed(row, exc, permanent=permanent):
                    log.error(
                        "event %s (%s): gave up delivering it to %s after %d attempts (%s); "
                        "it stays in event_redeliveries, marked given up",
                        event.id,
                        event.type,
                        row.consumer,
                        row.attempts + 1,
                        _reason(exc),
                    )
                else:
                    log.info(
                        "event %s (%s) for %s refused again (attempt %d): %s",
                        event.id,
                        event.type,
                        row.consumer,
                        row.attempts + 1,
                        _reason(exc),
                    )
            else:
                self.store.delivered(row.id)
                taken += 1
                log.info(
                    "event %s (%s) delivered to %s on attempt %d",
                    event.id,
                    event.type,
                    row.consumer,
                    row.attempts + 1,
                )
        return taken

    def _pause(self) -> float:
        due = self.store.next_due()
        if due is None:
            return IDLE_CHECK_SECONDS
        return min(max((due - utcnow()).total_seconds(), 0.05), IDLE_CHECK_SECONDS)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                pause = self._pause()
            except SQLAlchemyError as exc:
                log.warning("event redelivery: database unavailable (%s); retrying", exc)
                pause = IDLE_CHECK_SECONDS
            except Exception:  # a bug must not end the only thread that re-drives events
                log.exception("event redelivery failed; retrying")
                pause = IDLE_CHECK_SECONDS
            if not self._stop.is_set():
                self.store.wait_for_new(pause)
