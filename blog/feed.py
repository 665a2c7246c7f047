"""The event feed: how events cross the process boundary while ``events.broker`` is ``inline``.

An extracted service writes its events into its own outbox (same transaction as the change) and
serves them at ``GET /events?after=<position>&reader=<name>`` (long-polling). The monolith runs
one puller per extracted publisher: it reads the feed, hands each event to its in-process bus
(email, posts...) and records how far it got in its own database, so a restart of either side
loses nothing and a redelivered event is harmless (every consumer is idempotent by event id or by
nature). An event a consumer refuses is set aside by the bus in the monolith's database
(``blog.redelivery``), and the puller moves on.

Each pull tells the service where its reader stands (``after``): the service records it
(``event_feed_readers``), so that its outbox retention (``blog.retention``) deletes only rows
every reader has passed.

With ``events.broker: rabbitmq`` the broker takes this role instead.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import falcon
import msgspec
from sqlalchemy import Column, Engine, Executable, Integer, MetaData, String, Table, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from blog.db import UtcDateTime, new_metadata, utcnow
from blog.errors import MAX_STORED_ID, InvalidInput
from blog.events import Event, OutboxEventBus, read_outbox
from blog.httpkit.falcon import send_json
from blog.transport import Transport, TransportError, WireRequest
from blog.transport.credentials import ServiceCredentials

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 20.0
MAX_BATCH = 500
BELL_INTERVAL_SECONDS = 0.25
"""How often a parked poll looks at the outbox's doorbell for another worker's commit."""
READER_REFRESH_SECONDS = 30.0
"""A reader's row is rewritten when its position moves, and at least this often while it pulls
(so that ``seen_at`` says it is alive), not on every long-poll."""
_READER_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

cursor_metadata = MetaData()
cursors = Table(
    "event_feed_cursors",
    cursor_metadata,
    Column("source", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
)

feed_reader_metadata = new_metadata()
feed_readers = Table(
    "event_feed_readers",
    feed_reader_metadata,
    Column("feed", String(64), primary_key=True),
    Column("reader", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
)
"""On the service's side: where each puller of a feed stands, as it said with its last pull."""


def _upsert(
    engine: Engine, table: Table, keys: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    """Insert the row of ``keys``, or update its ``values`` if it exists, in one statement."""
    dialect = engine.dialect.name
    row = {**keys, **values}
    stmt: Executable
    if dialect == "postgresql":
        stmt = (
            postgresql.insert(table)
            .values(row)
            .on_conflict_do_update(index_elements=list(keys), set_=dict(values))
        )
    elif dialect in ("mysql", "mariadb"):
        stmt = mysql.insert(table).values(row).on_duplicate_key_update(**values)
    else:
        stmt = (
            sqlite.insert(table)
            .values(row)
            .on_conflict_do_update(index_elements=list(keys), set_=dict(values))
        )
    with engine.begin() as connection:
        connection.execute(stmt)


class FeedReaders:
    """Where each reader of one feed stands: the position it last pulled after (everything up to
    it is delivered, or set aside, on its side) and when it last pulled."""

    def __init__(
        self, engine: Engine, feed: str, refresh_seconds: float = READER_REFRESH_SECONDS
    ) -> None:
        self.engine = engine
        self.feed = feed
        self._refresh = refresh_seconds
        self._written: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def saw(self, reader: str, position: int) -> None:
        """``reader`` pulled after ``position``. Never fails the pull: a reader row missed now is
        written at its next pull, and until then only keeps rows a little longer."""
        now = time.monotonic()
        with self._lock:
            last = self._written.get(reader)
            if last is not None and last[0] == position and now - last[1] < self._refresh:
                return
            self._written[reader] = (position, now)
        try:
            _upsert(
                self.engine,
                feed_readers,
                {"feed": self.feed, "reader": reader},
                {"position": position, "seen_at": utcnow()},
            )
        except SQLAlchemyError as exc:
            with self._lock:
                self._written.pop(reader, None)
            log.warning("feed %s: reader %s not recorded: %s", self.feed, reader, exc)

    def horizon(self, seen_since: datetime) -> int | None:
        """The lowest position of the readers seen since ``seen_since``: every row up to it has
        been taken by all of them. None when no reader pulled since then."""
        query = select(func.min(feed_readers.c.position)).where(
            feed_readers.c.feed == self.feed, feed_readers.c.seen_at >= seen_since
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).scalar()
        return int(found) if found is not None else None


# --------------------------------------------------------------------------- service side


class FeedResource:
    """``GET /events?after=<position>&limit=&wait=``: the outbox after a position, long-polled.

    ``other_writers``: whether other processes (the server's other workers) commit to this
    outbox too; if not, a parked poll needs no doorbell to learn of a commit. ``readers``: where
    a pull that names its ``reader`` is recorded.
    """

    def __init__(
        self,
        engine: Engine,
        bus: OutboxEventBus,
        other_writers: bool = True,
        readers: FeedReaders | None = None,
    ) -> None:
        self._engine = engine
        self._bus = bus
        self._bell_interval = BELL_INTERVAL_SECONDS if other_writers else None
        self._readers = readers

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            after = int(req.get_param("after") or "0")
            limit = min(max(int(req.get_param("limit") or "100"), 1), MAX_BATCH)
            wait = float(req.get_param("wait") or "0")
        except ValueError:
            raise InvalidInput("after and limit must be integers, wait a number") from None
        if not 0 <= after <= MAX_STORED_ID:
            # Positions are the outbox's int4 ids: a larger one would make the database refuse
            # the query (a 500), not merely find nothing.
            raise InvalidInput(f"after: a position from 0 to {MAX_STORED_ID}")
        if not math.isfinite(wait):
            raise InvalidInput("wait: a finite number of seconds")
        wait = min(max(wait, 0.0), MAX_WAIT_SECONDS)
        reader = req.get_param("reader")
        if reader is not None and not _READER_NAME.match(reader):
            raise InvalidInput("reader: 1 to 64 letters, digits and . _ : -")
        if reader is not None and self._readers is not None:
            self._readers.saw(reader, after)
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
        reader: str | None = None,
    ) -> None:
        """``deliver`` raises only for an event it could not hand over nor set aside (the bus's
        strict delivery): the puller then stops before it and pulls it again later. ``reader``:
        the name this puller gives the service, so that the service's retention knows where it
        stands."""
        self.service = service
        self.reader = reader
        self._transport = transport
        self._credentials = credentials
        self._deliver = deliver
        self._engine = engine
        # Short long-polls: an idle feed costs one request per couple of seconds, and a server
        # shutting down gracefully never waits long for a parked request.
        self._wait = wait_seconds
        self._read_timeout = read_timeout
        self._stop = threading.Event()
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
        params: dict[str, object] = {"after": after, "limit": 100, "wait": wait}
        if self.reader is not None:
            params["reader"] = self.reader
        query = urlencode(params)
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
        """Deliver what the feed has after our position; returns how many events were handed
        over (delivered, or set aside by the bus for a consumer that refused them).

        The position moves past an event only once it is handed over: if the bus could not set
        a refused event aside (the monolith's database is down), the pull stops before it, and
        the next pull brings it again.
        """
        after = self.position()
        body = self._fetch(after, wait)
        items = body["events"]
        assert isinstance(items, list)
        if self._stop.is_set():
            return 0
        position, taken = after, 0
        try:
            for item in items:
                self._deliver(Event.from_dict(item["event"]))
                position, taken = int(item["position"]), taken + 1
        finally:
            if position != after:
                _upsert(self._engine, cursors, {"source": self.source}, {"position": position})
        return taken

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
