"""Events a consumer refused are kept in the database and tried again, for that consumer alone,
a bounded number of times (issue 12, item 7)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import Engine, select

from blog.db import make_engine
from blog.errors import InvalidInput
from blog.events import Event, InlineEventBus
from blog.feed import FeedPuller, cursor_metadata, cursors
from blog.redelivery import (
    Redeliveries,
    RedeliveryJob,
    RedeliveryPolicy,
    redeliveries,
    redelivery_metadata,
)
from blog.transport import WireRequest, WireResponse
from blog.transport.credentials import ServiceCredentials

FAST = RedeliveryPolicy(max_attempts=3, initial_seconds=0.01, max_seconds=0.02)


class NotYet(InvalidInput):
    code = "not_yet"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path}/monolith.db")
    redelivery_metadata.create_all(made)
    cursor_metadata.create_all(made)
    yield made
    made.dispose()


@pytest.fixture
def blog_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    logging.getLogger("blog").propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="blog"):
            yield caplog
    finally:
        logging.getLogger("blog").propagate = False


class Consumer:
    """Refuses the first ``refusals`` deliveries with ``error``, then takes them."""

    def __init__(self, refusals: int, error: Exception | None = None) -> None:
        self.refusals = refusals
        self.error = error or RuntimeError("the service is down")
        self.calls: list[str] = []

    def __call__(self, event: Event) -> None:
        self.calls.append(event.id)
        if len(self.calls) <= self.refusals:
            raise self.error


def _drain(job: RedeliveryJob, rounds: int = 10) -> None:
    for _ in range(rounds):
        job.run_once()
        time.sleep(0.03)


def test_a_refused_event_is_tried_again_for_that_consumer_alone(engine: Engine) -> None:
    store = Redeliveries(engine, FAST)
    bus = InlineEventBus(store)
    flaky, steady = Consumer(refusals=1), Consumer(refusals=0)
    bus.subscribe("thing.made", flaky, consumer="flaky")
    bus.subscribe("thing.made", steady, consumer="steady")
    event = Event(type="thing.made", data={"n": 1})
    bus.deliver(event, strict=True)  # set aside: nothing raised to the feed that brought it
    assert store.waiting() == 1
    _drain(RedeliveryJob(store, bus))
    assert flaky.calls == [event.id, event.id]
    assert steady.calls == [event.id]  # it had taken it already
    assert store.waiting() == 0 and store.given_up() == 0


def test_attempts_are_bounded_then_the_give_up_is_logged_and_kept(
    engine: Engine, blog_logs: pytest.LogCaptureFixture
) -> None:
    store = Redeliveries(engine, FAST)
    bus = InlineEventBus(store)
    never = Consumer(refusals=100)
    bus.subscribe("thing.made", never, consumer="never")
    event = Event(type="thing.made", data={})
    bus.deliver(event)
    _drain(RedeliveryJob(store, bus))
    assert len(never.calls) == FAST.max_attempts
    assert store.waiting() == 0 and store.given_up() == 1
    gave_up = [r for r in blog_logs.records if "gave up" in r.getMessage()]
    assert gave_up and gave_up[0].levelno == logging.ERROR
    assert event.id in gave_up[0].getMessage()
    with engine.connect() as connection:
        row = connection.execute(select(redeliveries)).one()
    assert row.attempts == FAST.max_attempts and "the service is down" in row.last_error


def test_an_event_that_can_never_be_handled_is_given_up_at_once(engine: Engine) -> None:
    store = Redeliveries(engine, FAST)
    bus = InlineEventBus(store)
    bad = Consumer(refusals=100, error=InvalidInput("malformed"))
    early = Consumer(refusals=1, error=NotYet("author unknown yet"))
    bus.subscribe("thing.made", bad, consumer="bad")
    bus.subscribe("thing.made", early, consumer="early", retry_on=(NotYet,))
    bus.deliver(Event(type="thing.made", data={}))
    _drain(RedeliveryJob(store, bus))
    assert len(bad.calls) == 1  # permanent: never tried again
    assert len(early.calls) == 2  # "not yet": tried again, taken
    assert store.given_up() == 1 and store.waiting() == 0


def test_an_event_kept_already_keeps_its_schedule(engine: Engine) -> None:
    store = Redeliveries(engine, RedeliveryPolicy(initial_seconds=60))
    bus = InlineEventBus(store)
    bus.subscribe("thing.made", Consumer(refusals=100), consumer="c")
    event = Event(type="thing.made", data={})
    bus.deliver(event, strict=True)
    bus.deliver(event, strict=True)  # a feed handed it over again after a crash
    assert store.waiting() == 1


def test_when_the_event_cannot_be_kept_strict_delivery_raises(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/no-tables.db")  # the table is missing
    bus = InlineEventBus(Redeliveries(engine, FAST))
    bus.subscribe("thing.made", Consumer(refusals=100), consumer="c")
    event = Event(type="thing.made", data={})
    bus.deliver(event)  # a request's delivery: logged, never raised
    with pytest.raises(RuntimeError):
        bus.deliver(event, strict=True)  # a feed's: raised, so the feed keeps the event
    engine.dispose()


class FeedOf:
    """A service's feed answering with ``events`` (positions 1..n) after any position."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events

    def send(self, request: WireRequest) -> WireResponse:
        after = int(request.path.split("after=")[1].split("&")[0])
        items = [
            {"position": n, "event": e.to_dict()}
            for n, e in enumerate(self.events, start=1)
            if n > after
        ]
        body = {"events": items, "last_position": len(self.events) if items else after}
        return WireResponse(200, {"content-type": "application/json"}, msgspec.json.encode(body))

    def describe(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None


def _position(engine: Engine) -> int:
    with engine.connect() as connection:
        found = connection.execute(select(cursors.c.position)).scalar()
    return int(found or 0)


def test_the_puller_moves_past_an_event_only_once_it_is_handed_over(engine: Engine) -> None:
    events = [Event(type="thing.made", data={"n": n}) for n in range(3)]
    handed: list[str] = []

    def deliver(event: Event) -> None:
        if event is events[1] or event.id == events[1].id:
            raise RuntimeError("neither delivered nor kept (the database is down)")
        handed.append(event.id)

    puller = FeedPuller(
        "posts",
        FeedOf(events),  # type: ignore[arg-type]
        ServiceCredentials("s" * 40),
        deliver,
        engine,
        read_timeout=1.0,
    )
    with pytest.raises(RuntimeError):
        puller.pull_once()
    assert handed == [events[0].id]
    assert _position(engine) == 1  # the next pull starts with the event it could not hand over
