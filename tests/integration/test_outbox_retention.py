"""Outbox retention (issue 12, item 8): delivered rows older than the retention are deleted in
batches, on SQLite and PostgreSQL; undelivered rows, and rows a live feed reader has not passed,
are kept; a writer is not held up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select

from blog.db import make_engine, utcnow
from blog.domains import manifest
from blog.feed import FeedReaders, feed_reader_metadata, feed_readers
from blog.retention import OutboxRetention
from tests.integration.databases import postgres_database
from tests.support import eventually, make_config

OUTBOX = manifest("posts").outbox()
assert OUTBOX is not None
WEEK = 7 * 24 * 3600.0


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/outbox.db"
        made = make_engine(url)
        _create(made)
        yield made
        made.dispose()
        return
    with postgres_database() as url:
        made = make_engine(url)
        _create(made)
        yield made
        made.dispose()


def _create(engine: Engine) -> None:
    manifest("posts").metadata().create_all(engine)
    feed_reader_metadata.create_all(engine)


def _rows(engine: Engine, count: int, *, age: timedelta, published: bool) -> list[int]:
    created = utcnow() - age
    ids = []
    with engine.begin() as connection:
        for _ in range(count):
            n = connection.execute(select(func.count()).select_from(OUTBOX)).scalar_one()
            result = connection.execute(
                insert(OUTBOX).values(
                    event_id=f"e-{time.perf_counter_ns()}-{n}",
                    type="post.created",
                    payload="{}",
                    created_at=created,
                    published_at=created + timedelta(seconds=1) if published else None,
                )
            )
            ids.append(int(result.inserted_primary_key[0]))
    return ids


def _left(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.execute(select(OUTBOX.c.id).order_by(OUTBOX.c.id)).scalars())


def _count_commits(engine: Engine) -> list[int]:
    commits: list[int] = []
    event.listen(engine, "commit", lambda _connection: commits.append(1))
    return commits


def test_published_rows_older_than_the_retention_are_deleted_in_batches(engine: Engine) -> None:
    old = _rows(engine, 10, age=timedelta(days=8), published=True)
    recent = _rows(engine, 3, age=timedelta(hours=1), published=True)
    waiting = _rows(engine, 4, age=timedelta(days=8), published=False)  # the broker was away
    commits = _count_commits(engine)
    retention = OutboxRetention(engine, OUTBOX, WEEK, batch_size=3, pause_seconds=0)
    assert retention.purge_once() == len(old)
    assert _left(engine) == sorted(recent + waiting)
    assert len(commits) >= 4  # 10 rows, 3 a transaction: each batch its own short transaction
    assert retention.purge_once() == 0


def test_a_feed_keeps_what_a_live_reader_has_not_passed(engine: Engine) -> None:
    ids = _rows(engine, 10, age=timedelta(days=8), published=False)
    fresh = _rows(engine, 2, age=timedelta(minutes=1), published=False)
    readers = FeedReaders(engine, OUTBOX.name)
    retention = OutboxRetention(
        engine, OUTBOX, WEEK, batch_size=4, pause_seconds=0, horizon=readers.horizon
    )
    assert retention.purge_once() == 0  # no reader has ever pulled: the events wait for one

    readers.saw("monolith-a", ids[5])
    readers.saw("monolith-b", ids[7])
    assert retention.purge_once() == 6  # both passed the first six, which are old enough
    assert _left(engine) == ids[6:] + fresh

    # a reader silent for longer than the retention no longer holds the feed back...
    with engine.begin() as connection:
        connection.execute(
            feed_readers.update()
            .where(feed_readers.c.reader == "monolith-a")
            .values(seen_at=utcnow() - timedelta(days=8))
        )
    assert retention.purge_once() == 2  # ...so what monolith-b passed goes
    assert _left(engine) == ids[8:] + fresh
    # and rows younger than the retention stay, whoever passed them
    readers.saw("monolith-b", fresh[-1])
    assert retention.purge_once() == 2
    assert _left(engine) == fresh


def test_a_reader_is_recorded_when_its_position_moves_not_on_every_poll(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/feed.db")
    _create(engine)
    readers = FeedReaders(engine, OUTBOX.name)
    commits = _count_commits(engine)
    for _ in range(5):
        readers.saw("monolith-a", 3)  # five long-polls that brought nothing
    readers.saw("monolith-a", 9)
    assert len(commits) == 2
    assert readers.horizon(utcnow() - timedelta(minutes=1)) == 9
    engine.dispose()


def test_deleting_does_not_hold_up_a_writer_on_postgresql(tmp_path: Path) -> None:
    """A transaction that writes the outbox (a request publishing an event) while the retention
    runs: neither waits for the other. (SQLite has one writer at a time: there each batch is a
    short transaction of its own, see the batches test.)"""
    with postgres_database() as url:
        engine = make_engine(url)
        try:
            _create(engine)
            _rows(engine, 50, age=timedelta(days=8), published=True)
            with engine.connect() as writer:
                transaction = writer.begin()
                writer.execute(
                    insert(OUTBOX).values(
                        event_id="in-flight",
                        type="post.created",
                        payload="{}",
                        created_at=utcnow(),
                    )
                )
                done: list[int] = []
                retention = OutboxRetention(engine, OUTBOX, WEEK, batch_size=10, pause_seconds=0)
                purge = threading.Thread(target=lambda: done.append(retention.purge_once()))
                purge.start()
                purge.join(10)
                assert done == [50], "the retention waited for the writer"
                started = time.monotonic()
                transaction.commit()
                assert time.monotonic() - started < 1
            assert len(_left(engine)) == 1
        finally:
            engine.dispose()


def _outbox_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(OUTBOX)).scalar_one())


def test_an_extracted_service_deletes_what_the_monolith_has_pulled(tmp_path: Path) -> None:
    """End to end with the inline broker: posts runs extracted (over the in-process wire) with a
    short retention; the monolith's puller takes its events (email confirms each post), says how
    far it got, and the service then deletes them."""
    from blog.wiring import build_monolith

    database = tmp_path / "posts-service.db"
    config = make_config(
        tmp_path,
        services={"posts": {"mode": "wire", "database_url": f"sqlite:///{database}"}},
        events={"outbox_retention_seconds": 0.5, "outbox_cleanup_interval_seconds": 0.2},
    )
    monolith = build_monolith(config)
    monolith.start()
    try:
        domains = monolith.registry
        user = domains.auth.register("ada@example.com", "Ada", "correct horse battery")
        for n in range(3):
            domains.posts.create_post(
                author_id=user.id, author_name="Ada", title=f"Post {n}", body="b"
            )
        service_engine: Any = monolith.children[0].engine

        def confirmed_then_deleted() -> None:
            subjects = [m.subject for m in domains.email.list_inbox()]
            assert sum("Post" in s for s in subjects) == 3, subjects
            assert _outbox_rows(service_engine) == 0

        eventually(confirmed_then_deleted, timeout=20)
    finally:
        monolith.close()


@pytest.mark.rabbitmq
def test_the_monolith_deletes_what_its_relay_published(tmp_path: Path) -> None:
    """End to end with RabbitMQ: auth's outbox in the monolith, its relay publishing, and the
    relay's runtime deleting the published rows once older than the retention."""
    from blog.wiring import build_monolith
    from tests.support import IsolatedBroker

    broker = IsolatedBroker()
    events = {
        **broker.overrides()["events"],
        "outbox_retention_seconds": 0.5,
        "outbox_cleanup_interval_seconds": 0.2,
    }
    monolith = build_monolith(make_config(tmp_path, events=events))
    monolith.start()
    try:
        auth_outbox = manifest("auth").outbox()
        assert auth_outbox is not None
        monolith.registry.auth.register("ada@example.com", "Ada", "correct horse battery")

        def published_then_deleted() -> None:
            with monolith.engine.connect() as connection:  # type: ignore[union-attr]
                left = connection.execute(select(func.count()).select_from(auth_outbox))
                assert left.scalar_one() == 0

        with monolith.engine.connect() as connection:  # type: ignore[union-attr]
            assert connection.execute(select(func.count()).select_from(auth_outbox)).scalar_one()
        eventually(published_then_deleted, timeout=20)
    finally:
        monolith.close()
        broker.delete()
