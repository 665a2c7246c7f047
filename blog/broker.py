"""RabbitMQ transport for domain events: the topology, the outbox relay and the consumer.

Infrastructure like :mod:`blog.events`: it moves envelopes and reads outbox tables, and never
names a domain. Delivery is *at-least-once* end to end, by construction:

- a publisher writes its event into its own outbox in the same transaction as the change;
- :class:`OutboxRelay` publishes outbox rows with publisher confirms and marks a row published
  only after the broker confirmed it, so a crash or a broker outage can only cause a resend;
- :class:`EventConsumer` acks a message only after its handler returned (the handler committed
  its own work), so a crash can only cause a redelivery, and handlers skip event ids they have
  already processed.

A message that can never be handled (not an envelope, or the handler says ``InvalidInput``) is
moved to the queue's dead-letter queue with the reason in its headers, instead of blocking or
silently disappearing.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import AMQPError, ChannelClosedByBroker, UnroutableError
from pika.spec import Basic, BasicProperties
from sqlalchemy import Engine, Table, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from blog.errors import DomainError, InvalidInput
from blog.events import Event, OutboxEventBus
from blog.leader import Leader

log = logging.getLogger(__name__)

ERROR_HEADER = "x-error"
"""On a dead-lettered message: why it could not be handled (the error's message)."""
ERROR_CODE_HEADER = "x-error-code"
"""On a dead-lettered message: a stable code (``invalid_envelope``, ``malformed_event``...)."""
ENVELOPE_KEYS = ("id", "type", "occurred_at", "data")
REASON_MAX = 1000
PERSISTENT = 2


class InvalidEnvelope(InvalidInput):
    """A message body that is not an event envelope: it can never be handled."""

    code = "invalid_envelope"


def dead_letter_exchange(exchange: str) -> str:
    return f"{exchange}.dlx"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


def connection_parameters(url: str) -> pika.URLParameters:
    """Fail fast instead of hanging: callers retry with their own backoff."""
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.stack_timeout = 10
    # A broker under a memory or disk alarm blocks publishers; give up (and retry later) rather
    # than hang a relay thread forever.
    params.blocked_connection_timeout = 30
    return params


def declare_exchange(channel: BlockingChannel, exchange: str) -> None:
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)


def declare_queue(
    channel: BlockingChannel, exchange: str, queue: str, routing_keys: Sequence[str]
) -> None:
    """A durable consumer queue bound to ``routing_keys``, with its own dead-letter queue.

    The dead-letter exchange is a direct exchange keyed by the consumer queue's name, so one
    DLX serves every queue and each DLQ receives only its own queue's rejects (ours, with a
    reason, and the broker's own, e.g. ``basic_reject(requeue=False)``). Redeclaring a queue
    with other arguments fails with PRECONDITION_FAILED: delete the queue to change them.
    """
    declare_exchange(channel, exchange)
    dlx = dead_letter_exchange(exchange)
    channel.exchange_declare(dlx, exchange_type="direct", durable=True)
    channel.queue_declare(dead_letter_queue(queue), durable=True)
    channel.queue_bind(dead_letter_queue(queue), dlx, routing_key=queue)
    channel.queue_declare(
        queue,
        durable=True,
        arguments={"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": queue},
    )
    for key in routing_keys:
        channel.queue_bind(queue, exchange, routing_key=key)


class Backoff:
    """Exponential backoff with jitter, capped.

    The jitter keeps every relay and consumer that lost the broker at the same moment from
    reconnecting in lockstep when it comes back.
    """

    def __init__(self, initial: float = 0.25, cap: float = 10.0) -> None:
        self.initial = initial
        self.cap = cap
        self._failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.initial * 2**self._failures)
        self._failures += 1
        return float(delay / 2 + random.uniform(0, delay / 2))

    def reset(self) -> None:
        self._failures = 0


def parse_envelope(body: bytes) -> Event:
    """The event in ``body``, or ``InvalidEnvelope`` saying what is wrong with it."""
    try:
        raw = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidEnvelope(f"body is not JSON: {exc}") from None
    except RecursionError:  # thousands of nested arrays: refused, not a crashed consumer
        raise InvalidEnvelope("body is JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise InvalidEnvelope(f"body is a JSON {type(raw).__name__}, not an object")
    missing = [key for key in ENVELOPE_KEYS if key not in raw]
    if missing:
        raise InvalidEnvelope(f"envelope lacks {', '.join(missing)}")
    if not isinstance(raw["id"], str) or not raw["id"] or not isinstance(raw["type"], str):
        raise InvalidEnvelope("envelope id and type must be non-empty strings")
    if not isinstance(raw["data"], dict):
        raise InvalidEnvelope("envelope data must be an object")
    return Event.from_dict(raw)


def _close_quietly(connection: BlockingConnection | None) -> None:
    if connection is None or not connection.is_open:
        return
    try:
        connection.close()
    except (AMQPError, OSError) as exc:
        log.debug("closing a broken broker connection: %s", exc)


# --------------------------------------------------------------------------- the relay


class OutboxRelay:
    """Publishes an outbox's unpublished rows to the topic exchange, oldest first.

    A row is marked ``published_at`` only once the broker confirmed it (publisher confirms, and
    ``mandatory`` so that a message no queue would take is an error rather than a silent drop).
    The request path only ever writes the outbox: a broker outage delays events, it never fails
    a request. A crash between the confirm and the update resends a row; consumers are
    idempotent by event id. Run one relay per outbox: two would not lose anything, but would
    publish every row twice.

    An event no queue is bound for is refused (``mandatory``) and blocks its outbox, in order,
    until a consumer has declared its queue: nothing is dropped before its subscriber's first
    start. ``queues`` (queue name → routing keys) lets the publishing side declare the known
    consumers' queues itself, so that their events wait in the broker instead.
    """

    def __init__(
        self,
        engine: Engine,
        outbox_table: Table,
        rabbitmq_url: str,
        exchange: str,
        bus: OutboxEventBus | None = None,
        *,
        queues: Mapping[str, Sequence[str]] | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        backoff: Backoff | None = None,
    ) -> None:
        self.engine = engine
        self.table = outbox_table
        self.exchange = exchange
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._params = connection_parameters(rabbitmq_url)
        self._bus = bus
        self._queues = dict(queues or {})
        self._backoff = backoff or Backoff()
        self._lock = threading.Lock()  # a pika connection belongs to one thread at a time
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ one pass

    def run_once(self) -> int:
        """Publish every pending row; returns how many the broker confirmed.

        Raises ``AMQPError`` when the broker is unreachable or refuses a message (after marking
        what it did confirm); the rows left wait in the outbox.
        """
        total = 0
        with self._lock:
            if self._connection is not None:
                try:
                    # Serves heartbeats while idle, and finds a dead connection before publishing.
                    self._connection.process_data_events(time_limit=0)
                except AMQPError as exc:
                    log.info("relay %s: connection lost (%r); reconnecting", self.table.name, exc)
                    self._disconnect_locked()
            while True:
                confirmed, fetched = self._publish_batch()
                total += confirmed
                if fetched < self.batch_size or self._stopping.is_set():
                    return total

    def pending(self) -> int:
        """How many rows wait to be published (for health checks and tests)."""
        query = select(func.count()).select_from(self.table)
        with self.engine.connect() as connection:
            return connection.execute(query.where(self.table.c.published_at.is_(None))).scalar_one()

    def _publish_batch(self) -> tuple[int, int]:
        table = self.table
        query = (
            select(table.c.id, table.c.event_id, table.c.type, table.c.payload, table.c.created_at)
            .where(table.c.published_at.is_(None))
            .order_by(table.c.id)
            .limit(self.batch_size)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        if not rows:
            return 0, 0
        channel = self._ensure_channel()
        confirmed: list[int] = []
        try:
            for row in rows:
                # Blocks until the broker's ack: raises NackError / UnroutableError otherwise.
                channel.basic_publish(
                    self.exchange,
                    row.type,
                    row.payload.encode(),
                    _properties(row),
                    mandatory=True,
                )
                confirmed.append(row.id)
        finally:
            # Mark what was confirmed even when the batch broke off, so it is not resent.
            if confirmed:
                self._mark_published(confirmed)
        log.debug("relay %s: published %d event(s)", table.name, len(confirmed))
        return len(confirmed), len(rows)

    def _mark_published(self, ids: list[int]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(self.table)
                .where(self.table.c.id.in_(ids))
                .values(published_at=datetime.now(UTC))
            )

    def _ensure_channel(self) -> BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._disconnect_locked()
        connection = pika.BlockingConnection(self._params)
        try:
            channel = connection.channel()
            declare_exchange(channel, self.exchange)
            for queue, routing_keys in self._queues.items():
                declare_queue(channel, self.exchange, queue, routing_keys)
            channel.confirm_delivery()
        except BaseException:
            _close_quietly(connection)
            raise
        self._connection, self._channel = connection, channel
        log.info("relay %s: connected to the broker", self.table.name)
        return channel

    def _disconnect_locked(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        _close_quietly(connection)

    # ------------------------------------------------------------------ background thread

    def start(self) -> None:
        """Relay in a background thread until ``stop()``; survives broker restarts."""
        if any(thread.is_alive() for thread in self._threads):
            return
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._run, name=f"relay-{self.table.name}", daemon=True)
        ]
        if self._bus is not None:
            self._threads.append(
                threading.Thread(
                    target=self._watch_commits, name=f"relay-{self.table.name}-wake", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._bus is not None:
            self._bus.wake_waiters()  # the commit watcher returns at once instead of timing out
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        with self._lock:
            self._disconnect_locked()

    def _watch_commits(self) -> None:
        """Turns the bus's commit notifications into wake-ups of the relay thread.

        A separate thread so that a commit made while the relay is busy publishing is not
        missed: ``_wake`` stays set until the relay's next pass.
        """
        assert self._bus is not None
        while not self._stopping.is_set():
            self._bus.wait_for_commit(self.poll_interval)
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.run_once()
            except UnroutableError as exc:
                keys = sorted({message.method.routing_key for message in exc.messages})
                delay = self._backoff.next()
                log.warning(
                    "relay %s: no queue is bound for %s; the events wait in the outbox "
                    "(retrying in %.1fs)",
                    self.table.name,
                    ", ".join(keys),
                    delay,
                )
            except (AMQPError, OSError) as exc:
                delay = self._backoff.next()
                log.warning(
                    "relay %s: broker unavailable (%r); the events wait in the outbox "
                    "(retrying in %.1fs)",
                    self.table.name,
                    exc,
                    delay,
                )
                with self._lock:
                    self._disconnect_locked()
            except SQLAlchemyError as exc:
                delay = self._backoff.next()
                log.warning(
                    "relay %s: outbox unreadable (%s); retrying in %.1fs",
                    self.table.name,
                    exc,
                    delay,
                )
            except Exception:  # a bug must not silently end the only thread emptying the outbox
                delay = self._backoff.next()
                log.exception(
                    "relay %s: unexpected error; retrying in %.1fs", self.table.name, delay
                )
                with self._lock:
                    self._disconnect_locked()
            else:
                self._backoff.reset()
                self._wake.wait(self.poll_interval)
                continue
            self._stopping.wait(delay)


def _properties(row: Any) -> BasicProperties:
    created: datetime = row.created_at
    if created.tzinfo is None:  # SQLite hands datetimes back naive; they were stored as UTC
        created = created.replace(tzinfo=UTC)
    return BasicProperties(
        content_type="application/json",
        delivery_mode=PERSISTENT,
        message_id=row.event_id,
        type=row.type,
        timestamp=int(created.timestamp()),
    )


# --------------------------------------------------------------------------- the consumer


class EventConsumer:
    """Consumes one durable queue and acks each message only after its handler returned.

    - not an envelope, or the handler raises ``InvalidInput``: permanent; the message goes to
      ``<queue>.dlq`` with the reason in ``x-error`` and the original is acked;
    - any other exception (a locked database, SMTP down) and the ``retry_errors`` (e.g. an
      event that arrived before the one it depends on): requeued after a growing pause, and
      dead-lettered after ``max_attempts`` attempts in this process, so one bad message cannot
      spin forever.

    ``run()`` blocks and reconnects with backoff when the broker goes away; ``stop()`` may be
    called from any thread (or a handler) and lets the message being handled finish; messages
    prefetched but not handled go back to the queue when the connection closes.
    """

    def __init__(
        self,
        rabbitmq_url: str,
        exchange: str,
        queue: str,
        routing_keys: Sequence[str],
        handler: Callable[[Event], object],
        prefetch: int = 50,
        *,
        max_attempts: int = 8,
        retry_delay: float = 0.25,
        max_retry_delay: float = 5.0,
        retry_errors: tuple[type[Exception], ...] = (),
        backoff: Backoff | None = None,
    ) -> None:
        self.exchange = exchange
        self.queue = queue
        self.routing_keys = tuple(routing_keys)
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._handler = handler
        self._retry_errors = retry_errors
        self._params = connection_parameters(rabbitmq_url)
        self._backoff = backoff or Backoff()
        self._attempts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._connection: BlockingConnection | None = None
        self._stopping = threading.Event()
        self._consuming = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Consume until ``stop()``, reconnecting with backoff whenever the broker goes away."""
        while not self._stopping.is_set():
            try:
                self._consume()
            except ChannelClosedByBroker as exc:
                delay = self._backoff.next()
                log.error(
                    "consumer %s: the broker refused the topology or a message (%s); "
                    "retrying in %.1fs",
                    self.queue,
                    exc,
                    delay,
                )
            except (AMQPError, OSError) as exc:
                delay = self._backoff.next()
                log.warning(
                    "consumer %s: broker unavailable (%r); reconnecting in %.1fs",
                    self.queue,
                    exc,
                    delay,
                )
            else:
                continue
            self._stopping.wait(delay)
        log.info("consumer %s: stopped", self.queue)

    def start(self) -> None:
        self.start_in_thread()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_in_thread(self, name: str | None = None) -> threading.Thread:
        """Run in a daemon thread (in-process consumers); ``stop()`` then ``join()`` it."""
        self._stopping.clear()
        thread = threading.Thread(
            target=self.run, name=name or f"consumer-{self.queue}", daemon=True
        )
        thread.start()
        self._thread = thread
        return thread

    def wait_until_consuming(self, timeout: float) -> bool:
        """True once the queue is declared and bound and messages flow to this consumer."""
        return self._consuming.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask ``run()`` to return once the current message is done. Thread-safe.

        A consumer started with ``start_in_thread`` is also waited for (unless ``stop`` is called
        from that very thread): once ``stop`` returns it will not reconnect, and so cannot
        re-declare a queue its owner is about to delete.
        """
        self._stopping.set()
        with self._lock:
            connection = self._connection
        if connection is not None:
            try:
                # Wakes the consuming thread at once instead of at its next poll.
                connection.add_callback_threadsafe(lambda: None)
            except (AMQPError, OSError) as exc:  # already closing: it will see the flag anyway
                log.debug("consumer %s: wake-up not delivered: %s", self.queue, exc)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _consume(self) -> None:
        connection = pika.BlockingConnection(self._params)
        try:
            channel = connection.channel()
            declare_queue(channel, self.exchange, self.queue, self.routing_keys)
            channel.confirm_delivery()  # dead-letters are published, and must be confirmed
            channel.basic_qos(prefetch_count=self.prefetch)
            channel.basic_consume(self.queue, self._on_message)
            with self._lock:
                self._connection = connection
            self._backoff.reset()
            self._consuming.set()
            log.info(
                "consumer %s: consuming %s from %s",
                self.queue,
                ", ".join(self.routing_keys),
                self.exchange,
            )
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=1)
        finally:
            self._consuming.clear()
            with self._lock:
                self._connection = None
            # Unacked deliveries (prefetched, not handled) return to the queue on close.
            _close_quietly(connection)

    def _on_message(
        self,
        channel: BlockingChannel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        if self._stopping.is_set():
            return  # left unacked: the broker requeues it when the connection closes
        try:
            event = parse_envelope(body)
        except InvalidEnvelope as exc:
            self._dead_letter(channel, method, properties, body, exc)
            return
        key = properties.message_id or event.id
        try:
            result = self._handler(event)
        except self._retry_errors as exc:
            self._retry(channel, method, properties, body, event, key, exc)
        except InvalidInput as exc:
            self._attempts.pop(key, None)
            self._dead_letter(channel, method, properties, body, exc)
        except Exception as exc:  # transient by default: the handler's own work rolled back
            self._retry(channel, method, properties, body, event, key, exc)
        else:
            self._attempts.pop(key, None)
            channel.basic_ack(method.delivery_tag)
            log.debug(
                "consumer %s: event %s (%s) handled%s",
                self.queue,
                event.id,
                event.type,
                " (already processed)" if result is False else "",
            )

    def _retry(
        self,
        channel: BlockingChannel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
        event: Event,
        key: str,
        exc: Exception,
    ) -> None:
        attempts = self._attempts.pop(key, 0) + 1
        if attempts >= self.max_attempts:
            self._dead_letter(
                channel,
                method,
                properties,
                body,
                exc,
                reason=f"gave up after {attempts} attempts: {exc}",
            )
            return
        self._attempts[key] = attempts
        while len(self._attempts) > 10_000:  # bounded: forget the oldest failures
            self._attempts.popitem(last=False)
        delay = min(self.retry_delay * 2 ** (attempts - 1), self.max_retry_delay)
        log.warning(
            "consumer %s: event %s (%s) failed, attempt %d of %d (%s: %s); requeued in %.2fs",
            self.queue,
            event.id,
            event.type,
            attempts,
            self.max_attempts,
            type(exc).__name__,
            exc,
            delay,
            exc_info=not isinstance(exc, DomainError),
        )
        self._stopping.wait(delay)  # a pause, so a failing dependency is not hammered
        channel.basic_nack(method.delivery_tag, requeue=True)

    def _dead_letter(
        self,
        channel: BlockingChannel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
        exc: Exception,
        reason: str | None = None,
    ) -> None:
        reason = (reason or str(exc))[:REASON_MAX]
        code = exc.code if isinstance(exc, DomainError) else type(exc).__name__
        headers = {
            **(properties.headers or {}),
            ERROR_HEADER: reason,
            ERROR_CODE_HEADER: code,
            "x-original-exchange": method.exchange,
            "x-original-routing-key": method.routing_key,
            "x-failed-at": datetime.now(UTC).isoformat(),
        }
        dead = BasicProperties(
            content_type=properties.content_type,
            delivery_mode=PERSISTENT,
            message_id=properties.message_id,
            type=properties.type,
            timestamp=properties.timestamp,
            headers=headers,
        )
        # Confirmed before the original is acked: a crash in between duplicates, never loses.
        channel.basic_publish(
            dead_letter_exchange(self.exchange), self.queue, body, dead, mandatory=True
        )
        channel.basic_ack(method.delivery_tag)
        log.error(
            "consumer %s: message %s dead-lettered to %s: %s (%s)",
            self.queue,
            properties.message_id or "<no id>",
            dead_letter_queue(self.queue),
            reason,
            code,
        )


class SingleRelay(Leader):
    """``relay`` run by exactly one process per outbox (see ``blog.leader``)."""

    def __init__(self, relay: OutboxRelay, retry_seconds: float = 1.0) -> None:
        self.relay = relay
        url = relay.engine.url.render_as_string(hide_password=True)
        super().__init__(f"relay {url} {relay.table.name}", relay.start, relay.stop, retry_seconds)
