"""Outbox retention: delivered outbox rows are deleted once older than
``events.outbox_retention_seconds``, in small batches, by the runtime that publishes them.

What "delivered" means depends on who carries the events:

- RabbitMQ: the relay marks a row ``published_at`` once the broker confirmed it; a row is
  deleted when it was published longer ago than the retention.
- the inline broker's feed (an extracted service's ``GET /events``): the outbox *is* the queue,
  and the service learns where each puller stands from its pulls (``blog.feed.FeedReaders``). A
  row is deleted when it is older than the retention *and* every reader that pulled within the
  retention has passed it. A reader silent for longer than the retention no longer holds rows
  back (a monolith database thrown away must not keep a feed forever), and with no such reader at
  all nothing is deleted: the events wait for their reader, as a queue would keep them.

Writers are never held up: each batch is its own short transaction that deletes by primary key
rows nobody writes any more (old, delivered), and the job pauses between batches. On PostgreSQL
and MariaDB the deletes lock only those rows; on SQLite each batch holds the database's write lock
for the few milliseconds it takes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, Table, delete, select
from sqlalchemy.exc import SQLAlchemyError

from blog.db import utcnow

log = logging.getLogger(__name__)

Horizon = Callable[[datetime], int | None]
"""Given the oldest time a reader may have pulled at to count, the highest position every such
reader has passed (None: no reader counts)."""


class OutboxRetention:
    """Deletes an outbox's delivered rows older than ``retention_seconds``, ``batch_size`` rows a
    transaction, every ``interval_seconds`` (a background thread, or :meth:`purge_once`).

    ``horizon``: the feed's readers (see the module's doc); without it, rows count as delivered
    once ``published_at`` is set (the RabbitMQ relay's mark).
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        retention_seconds: float,
        *,
        batch_size: int = 500,
        interval_seconds: float = 60.0,
        pause_seconds: float = 0.05,
        horizon: Horizon | None = None,
    ) -> None:
        self.engine = engine
        self.table = table
        self.retention = timedelta(seconds=retention_seconds)
        self.batch_size = batch_size
        self.interval = interval_seconds
        self.pause = pause_seconds
        self._horizon = horizon
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def purge_once(self, now: datetime | None = None) -> int:
        """Delete every deletable row, a batch at a time; returns how many were deleted."""
        cutoff = (now or utcnow()) - self.retention
        table = self.table
        if self._horizon is None:
            deletable = table.c.published_at.is_not(None) & (table.c.published_at < cutoff)
        else:
            horizon = self._horizon(cutoff)
            if horizon is None:
                return 0
            deletable = (table.c.id <= horizon) & (table.c.created_at < cutoff)
        query = select(table.c.id).where(deletable).order_by(table.c.id).limit(self.batch_size)
        deleted = 0
        while not self._stop.is_set():
            with self.engine.begin() as connection:
                ids = list(connection.execute(query).scalars())
                if ids:
                    connection.execute(delete(table).where(table.c.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < self.batch_size:
                break
            self._stop.wait(self.pause)  # let the writers in between two batches
        if deleted:
            log.info(
                "outbox %s: deleted %d delivered row(s) older than the retention",
                table.name,
                deleted,
            )
        return deleted

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"retention-{self.table.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.purge_once()
            except SQLAlchemyError as exc:  # the next round tries again
                log.warning("outbox %s: retention pass failed: %s", self.table.name, exc)
            except Exception:  # a bug must not end the thread silently
                log.exception("outbox %s: retention pass failed", self.table.name)
            self._stop.wait(self.interval)
