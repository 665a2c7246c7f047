"""The inline bus delivers only what was committed, and a failing handler hurts no one."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from blog.db import make_engine, make_session_factory, transaction
from blog.events import Event, InlineEventBus


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/events.db")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE things (id INTEGER PRIMARY KEY)"))
    yield make_session_factory(engine)
    engine.dispose()


def test_delivered_after_commit(sessions):
    bus = InlineEventBus()
    seen: list[tuple[str, int]] = []

    def handler(event: Event) -> None:
        with sessions() as session:  # the change is visible to the handler
            count = session.execute(text("SELECT COUNT(*) FROM things")).scalar_one()
        seen.append((event.type, count))

    bus.subscribe("thing.made", handler, consumer="test")
    with transaction(sessions) as session:
        session.execute(text("INSERT INTO things DEFAULT VALUES"))
        bus.publish(session, Event(type="thing.made", data={}))
        assert seen == []
    assert seen == [("thing.made", 1)]


def test_not_delivered_on_rollback(sessions):
    bus = InlineEventBus()
    seen: list[Event] = []
    bus.subscribe("thing.made", seen.append, consumer="test")
    with pytest.raises(RuntimeError), transaction(sessions) as session:
        bus.publish(session, Event(type="thing.made", data={}))
        raise RuntimeError("the change fails")
    with transaction(sessions) as session:
        session.execute(text("INSERT INTO things DEFAULT VALUES"))
    assert seen == []


def test_a_failing_handler_is_logged_and_others_still_run(sessions, caplog):
    bus = InlineEventBus()
    seen: list[Event] = []

    def broken(_event: Event) -> None:
        raise ValueError("handler bug")

    bus.subscribe("thing.made", broken, consumer="broken")
    bus.subscribe("thing.made", seen.append, consumer="ok")
    logging.getLogger("blog").propagate = True
    try:
        with caplog.at_level(logging.ERROR, logger="blog.events"), transaction(sessions) as s:
            bus.publish(s, Event(type="thing.made", data={"n": 1}))
    finally:
        logging.getLogger("blog").propagate = False
    assert len(seen) == 1
    assert "consumer=broken" in caplog.text


def test_envelope_round_trip():
    event = Event(type="post.created", data={"post_id": 1})
    assert Event.from_dict(event.to_dict()) == event
    assert set(event.to_dict()) == {"id", "type", "occurred_at", "data"}


def test_strict_delivery_runs_every_handler_then_raises():
    bus = InlineEventBus()
    seen: list[str] = []

    def broken(_event: Event) -> None:
        raise LookupError("not yet")

    bus.subscribe("thing.made", broken, consumer="broken")
    bus.subscribe("thing.made", lambda e: seen.append(e.id), consumer="ok")
    event = Event(type="thing.made", data={})
    logging.getLogger("blog").propagate = False
    with pytest.raises(LookupError):
        bus.deliver(event, strict=True)
    assert seen == [event.id]
    bus.deliver(event)  # the default never raises: a request is never failed by a handler


def test_a_commit_in_another_process_rings_the_outbox_doorbell(tmp_path):
    """Two buses on one outbox stand for two workers of one service: the waiter learns of the
    other's commit from the doorbell file, without reading the table."""
    import threading

    from blog.db import create_tables
    from blog.domains import manifest
    from blog.events import OutboxEventBus, doorbell

    engine = make_engine(f"sqlite:///{tmp_path}/posts.db")
    metadata, outbox = manifest("posts").metadata(), manifest("posts").outbox()
    assert outbox is not None
    create_tables(engine, metadata)
    bell = doorbell(engine, outbox)
    assert bell == doorbell(make_engine(f"sqlite:///{tmp_path}/posts.db"), outbox)
    waiting, writing = OutboxEventBus(outbox, bell), OutboxEventBus(outbox, bell)
    sessions = make_session_factory(engine)
    woke: list[bool] = []
    mark = waiting.watermark()
    waiter = threading.Thread(
        target=lambda: woke.append(waiting.wait_for_commit(10, bell_interval=0.02, since=mark))
    )
    waiter.start()
    with transaction(sessions) as session:
        writing.publish(session, Event(type="post.created", data={}))
    waiter.join(5)
    assert woke == [True]
    # a one-worker server does not watch the bell: only its own commits or the timeout wake it
    assert waiting.wait_for_commit(0.05, bell_interval=None) is False
    engine.dispose()


def test_a_broker_message_nested_too_deeply_is_refused_not_a_crash():
    """json.loads raises RecursionError (not ValueError) on deep nesting: a message off the
    queue must come back as InvalidEnvelope, which the consumer dead-letters."""
    from blog.broker import InvalidEnvelope, parse_envelope

    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        with pytest.raises(InvalidEnvelope, match="nested too deeply"):
            parse_envelope(body)
