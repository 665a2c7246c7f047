"""The event feed: how events cross the process boundary while ``events.broker`` is ``inline``.

An extracted service writes its events into its own outbox (same transaction as the change) and
serves them at ``GET /events?after=<position>`` (long-polling). The monolith runs one puller per
extracted publisher: it reads the feed, hands each event to its in-process bus (email, posts...)
and records how far it got in its own database, so a restart of either side loses nothing and a
redelivered event is harmless (every consumer is idempotent by event id or by nature).

With ``events.broker: rabbitmq`` the broker takes this role instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode

import falcon
import msgspec
from sqlalchemy import Column, Engine, Executable, Integer, MetaData, String, Table, select
from sqlalchemy.dialects import mysql, postgresql, sqlite

from blog.errors import InvalidInput
from blog.events import Event, OutboxEventBus, read_outbox
from blog.httpkit.falcon import send_json
from blog.transport import Transport, TransportError, WireRequest
from blog.transport.credentials import ServiceCredentials

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 20.0
MAX_BATCH = 500
BELL_INTERVAL_SECONDS = 0.25
"""How often a parked poll looks at the outbox's doorbell for another worker's commit."""
MAX_ATTEMPTS = 20
RETRY_PAUSE_SECONDS = 0.25

cursor_metadata = MetaData()
cursors = Table(
    "event_feed_cursors",
    cursor_metadata,
    Column("source", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
)


# --------------------------------------------------------------------------- service side


class FeedResource:
    """``GET /events?after=<position>&limit=&wait=``: the outbox after a position, long-polled.

    ``other_writers``: whether other processes (the server's other workers) commit to this
    outbox too; if not, a parked poll needs no doorbell to learn of a commit.
    """

    def __init__(self, engine: Engine, bus: OutboxEventBus, other_writers: bool = True) -> None:
        self._engine = engine
        self._bus = bus
        self._bell_interval = BELL_INTERVAL_SECONDS if other_writers else None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            after = int(req.get_param("after") or "0")
            limit = min(max(int(req.get_param("limit") or "100"), 1), MAX_BATCH)
            wait = min(max(float(req.get_param("wait") or "0"), 0.0), MAX_WAIT_SECONDS)
        except ValueError:
            raise InvalidInput("after and limit must be integers, wait a number") from None
        bus, table = self._bus, self._bus.table
        deadline = time.monotonic() + wait
        mark = bus.watermark()
        batch = read_outbox(self._engine, table, after, limit)
        # Parked until a commit, in this worker or another (the outbox's doorbell): the table
        # is read again only when something was written, not on a timer.
        while not batch and bus.wait_for_commit(
            max(deadline - time.monotonic(), 0), bell_interval=self._bell_interval, since=mark
        ):
            mark = bus.watermark()
            batch = read_outbox(self._engine, table, after, limit)
        body = {
            "events": [{"position": pos, "event": ev.to_dict()} for pos, ev in batch],
            "last_position": batch[-1][0] if batch else after,
        }
        send_json(resp, msgspec.json.encode(body))


# --------------------------------------------------------------------------- monolith side


def _upsert(engine: Engine, source: str, position: int) -> None:
    dialect = engine.dialect.name
    values = {"source": source, "position": position}
    stmt: Executable
    if dialect == "postgresql":
        stmt = (
            postgresql.insert(cursors)
            .values(values)
            .on_conflict_do_update(index_elements=["source"], set_={"position": position})
        )
    elif dialect in ("mysql", "mariadb"):
        stmt = mysql.insert(cursors).values(values).on_duplicate_key_update(position=position)
    else:
        stmt = (
            sqlite.insert(cursors)
            .values(values)
            .on_conflict_do_update(index_elements=["source"], set_={"position": position})
        )
    with engine.begin() as connection:
        connection.execute(stmt)


class FeedUnavailable(Exception):
    """The feed did not answer properly (the service is down, restarting, or refused us)."""


class FeedPuller:
    """Pulls one service's event feed into the monolith's bus, in a background thread."""

    def __init__(
        self,
        service: str,
        transport: Transport,
        credentials: ServiceCredentials,
        deliver: Callable[[Event], None],
        engine: Engine,
        *,
        read_timeout: float,
        wait_seconds: float = 5.0,
    ) -> None:
        self.service = service
        self._transport = transport
        self._credentials = credentials
        self._deliver = deliver
        self._engine = engine
        # Short long-polls: an idle feed costs one request per couple of seconds, and a server
        # shutting down gracefully never waits long for a parked request.
        self._wait = wait_seconds
        self._read_timeout = read_timeout
        self._stop = threading.Event()
        self._attempts: dict[str, int] = {}
        self._retrying: dict[str, Event] = {}
        self._thread: threading.Thread | None = None

    @property
    def source(self) -> str:
        return f"{self.service}-service"

    def position(self) -> int:
        with self._engine.connect() as connection:
            found = connection.execute(
                select(cursors.c.position).where(cursors.c.source == self.source)
            ).scalar()
        return found or 0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"feed-puller-{self.service}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop pulling. Not waited for: a long-poll in flight ends by itself within
        ``wait_seconds``, and what it brings back is no longer delivered."""
        self._stop.set()
        self._transport.close()

    def _fetch(self, after: int, wait: float) -> dict[str, object]:
        query = urlencode({"after": after, "limit": 100, "wait": wait})
        request = WireRequest(
            "GET",
            f"/events?{query}",
            f"{self.service}.events",
            safe=True,
            headers={"Authorization": f"Bearer {self._credentials.token_for(self.service)}"},
            read_timeout=wait + self._read_timeout,
        )
        try:
            response = self._transport.send(request)
        except TransportError as exc:
            raise FeedUnavailable(f"the {self.service} service is unavailable: {exc}") from None
        if response.status != 200:
            raise FeedUnavailable(f"the {self.service} feed answered HTTP {response.status}")
        body: dict[str, object] = msgspec.json.decode(response.content)
        return body

    def pull_once(self, wait: float = 0.0) -> int:
        """Deliver what the feed has after our position; returns how many events were taken.

        An event a consumer refuses (say ``post.created`` before its author's
        ``user.registered`` came through auth's feed) is set aside and tried again on every
        pull, up to ``MAX_ATTEMPTS``, without holding up the events behind it. Set-aside events
        live in memory: a restart of the monolith in that window drops them (logged).
        """
        taken = sum(self._try(event) for event in list(self._retrying.values()))
        after = self.position()
        body = self._fetch(after, 0 if self._retrying else wait)
        items = body["events"]
        assert isinstance(items, list)
        if self._stop.is_set():
            return taken
        for item in items:
            taken += self._try(Event.from_dict(item["event"]))
        if items:
            _upsert(self._engine, self.source, int(str(body["last_position"])))
        return taken

    def _try(self, event: Event) -> bool:
        try:
            self._deliver(event)
        except Exception:
            attempts = self._attempts.get(event.id, 0) + 1
            if attempts >= MAX_ATTEMPTS:
                log.error(
                    "event feed of %s: gave up on event %s (%s) after %d attempts",
                    self.service,
                    event.id,
                    event.type,
                    attempts,
                )
                self._forget(event)
            else:
                self._attempts[event.id] = attempts
                self._retrying[event.id] = event
            return False
        self._forget(event)
        return True

    def _forget(self, event: Event) -> None:
        self._attempts.pop(event.id, None)
        self._retrying.pop(event.id, None)

    def _run(self) -> None:
        backoff = 0.25
        while not self._stop.is_set():
            try:
                self.pull_once(wait=self._wait)
                backoff = 0.25
            except FeedUnavailable as exc:
                if self._stop.is_set():
                    return
                log.warning("event feed of %s: %s; retrying in %.1fs", self.service, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:
                log.exception("event feed of %s failed; retrying in %.1fs", self.service, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            if self._retrying:
                self._stop.wait(RETRY_PAUSE_SECONDS)  # set-aside events: try again shortly
