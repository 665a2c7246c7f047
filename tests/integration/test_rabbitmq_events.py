"""The RabbitMQ transport against a real broker: outbox relay, email worker, dead letters, restarts.

Every test gets its own exchange and queue prefix and deletes them afterwards, so runs can share
one broker. The email worker runs as a real process (``python -m extracted.email.worker``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pika
import pytest
import yaml
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from blog.broker import (
    ERROR_CODE_HEADER,
    ERROR_HEADER,
    EventConsumer,
    OutboxRelay,
    dead_letter_exchange,
    dead_letter_queue,
    declare_exchange,
    declare_queue,
)
from blog.config import Config
from blog.db import create_tables, make_engine, make_session_factory
from blog.events import (
    EVENT_TYPES,
    POST_CREATED,
    USER_REGISTERED,
    USER_RENAMED,
    Event,
    OutboxEventBus,
)
from tests.support import config_overrides, eventually, make_config, require_service

pytestmark = pytest.mark.rabbitmq

ROOT = Path(__file__).resolve().parents[2]
URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
EMAIL_QUEUE = "email_service_queue"
POSTS_QUEUE = "posts_service_queue"
AUTHOR = {"user_id": 7, "email": "ada@example.com", "name": "Ada"}


# --------------------------------------------------------------------------- helpers


@contextmanager
def amqp_channel() -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


@dataclass
class Broker:
    """This test's own names on the shared broker."""

    exchange: str
    prefix: str

    @property
    def email_queue(self) -> str:
        return self.prefix + EMAIL_QUEUE

    @property
    def posts_queue(self) -> str:
        return self.prefix + POSTS_QUEUE

    def declare_email_queue(self) -> None:
        """What the worker declares on start: as if it had run before and is now down."""
        with amqp_channel() as channel:
            declare_queue(channel, self.exchange, self.email_queue, EVENT_TYPES)

    def counts(self, queue: str) -> tuple[int, int]:
        """(messages ready, consumers) of ``queue``."""
        with amqp_channel() as channel:
            ok = channel.queue_declare(queue, passive=True).method
            return ok.message_count, ok.consumer_count

    def publish(self, body: bytes, routing_key: str, message_id: str | None = None) -> None:
        with amqp_channel() as channel:
            declare_exchange(channel, self.exchange)
            channel.confirm_delivery()
            channel.basic_publish(
                self.exchange,
                routing_key,
                body,
                pika.BasicProperties(delivery_mode=2, message_id=message_id),
                mandatory=True,
            )

    def publish_event(self, event: Event) -> None:
        self.publish(json.dumps(event.to_dict()).encode(), event.type, event.id)

    def dead_letters(self, queue: str) -> list[tuple[bytes, dict[str, object]]]:
        found = []
        with amqp_channel() as channel:
            while True:
                method, properties, body = channel.basic_get(dead_letter_queue(queue), True)
                if method is None:
                    return found
                found.append((body, dict(properties.headers or {})))

    def delete_all(self) -> None:
        queues = [
            q
            for base in (self.email_queue, self.posts_queue)
            for q in (base, dead_letter_queue(base))
        ]
        for name in queues:
            with amqp_channel() as channel:
                channel.queue_delete(name)
        for name in (self.exchange, dead_letter_exchange(self.exchange)):
            with amqp_channel() as channel:
                channel.exchange_delete(name)


@pytest.fixture
def broker() -> Iterator[Broker]:
    require_service("RabbitMQ", 5672, "rabbitmq-server -detached")
    tag = uuid.uuid4().hex[:12]
    names = Broker(exchange=f"events-{tag}", prefix=f"t{tag}-")
    try:
        yield names
    finally:
        wait_for_broker()  # a test that stopped the broker restarted it; clean up after it
        names.delete_all()


def wait_for_broker(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", 5672), timeout=1), amqp_channel():
                return
        except (OSError, AMQPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def rabbitmqctl(command: str) -> None:
    subprocess.run(["rabbitmqctl", command], check=True, capture_output=True, timeout=120)


def events_config(broker: Broker) -> dict[str, object]:
    return {
        "broker": "rabbitmq",
        "rabbitmq_url": URL,
        "exchange": broker.exchange,
        "queue_prefix": broker.prefix,
        "prefetch": 50,
    }


class PostsSide:
    """The posts domain as the monolith runs it with ``events.broker: rabbitmq``."""

    def __init__(self, tmp_path: Path, broker: Broker) -> None:
        from blog.posts.models import metadata, outbox
        from blog.posts.service import InProcessPostsService

        self.config: Config = make_config(tmp_path, events=events_config(broker))
        self.engine = make_engine(f"sqlite:///{tmp_path}/posts.db")
        create_tables(self.engine, metadata)
        self.bus = OutboxEventBus(outbox)
        self.service = InProcessPostsService(
            make_session_factory(self.engine), self.bus, self.config.posts
        )
        self.relay = OutboxRelay(self.engine, outbox, URL, broker.exchange, self.bus)

    def close(self) -> None:
        self.relay.stop()
        self.engine.dispose()


class Worker:
    """``python -m extracted.email.worker`` as a real process, with its own email database."""

    def __init__(self, tmp_path: Path, broker: Broker) -> None:
        self.broker = broker
        self.db_path = tmp_path / "email-service.db"
        self.config_path = tmp_path / "email-worker.yaml"
        self.log_path = tmp_path / "email-worker.log"
        overrides = config_overrides(
            tmp_path,
            log_level="INFO",
            events=events_config(broker),
            services={"email": {"mode": "extracted", "database_url": f"sqlite:///{self.db_path}"}},
        )
        self.config_path.write_text(yaml.safe_dump(overrides))
        self.process: subprocess.Popen[bytes] | None = None
        self._engine: Engine | None = None

    def start(self) -> Worker:
        env = {**os.environ, "BLOG_CONFIG": str(self.config_path)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "extracted.email.worker"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def consuming() -> None:
            assert self.process is not None and self.process.poll() is None, self.log()
            assert self.broker.counts(self.broker.email_queue)[1] >= 1

        def declared() -> None:
            try:
                consuming()
            except AMQPError:  # the queue does not exist yet
                raise AssertionError("not declared yet") from None

        eventually(declared, timeout=30, interval=0.1)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post_mails(self) -> tuple[int, int]:
        """(post confirmation emails recorded, distinct event ids among them)."""
        if self._engine is None:
            self._engine = make_engine(f"sqlite:///{self.db_path}")
        query = text(
            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM email_messages "
            "WHERE subject LIKE 'Your post %'"
        )
        try:
            with self._engine.connect() as connection:
                total, distinct = connection.execute(query).one()
        except OperationalError as exc:  # the worker has not created its tables yet
            raise AssertionError(str(exc)) from None
        return total, distinct

    def close(self) -> None:
        self.kill()
        if self._engine is not None:
            self._engine.dispose()


def assert_mailed_once(worker: Worker, expected: int, timeout: float) -> None:
    def all_mailed() -> None:
        assert worker.post_mails()[0] >= expected

    try:
        eventually(all_mailed, timeout=timeout, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {expected} expected\n{worker.log()[-3000:]}") from None
    assert worker.post_mails() == (expected, expected)  # none twice


# --------------------------------------------------------------------------- tests


def test_posts_created_while_the_worker_is_down_are_each_mailed_once(broker, tmp_path):
    broker.declare_email_queue()
    posts, worker = PostsSide(tmp_path, broker), Worker(tmp_path, broker)
    try:
        broker.publish_event(Event(USER_REGISTERED, AUTHOR))
        posts.relay.start()
        for i in range(1000):
            posts.service.create_post(7, "Ada", f"post {i}", "body")
        eventually(lambda: assert_equal(posts.relay.pending(), 0), timeout=30, interval=0.1)
        assert broker.counts(broker.email_queue) == (1001, 0)  # waiting in the broker

        worker.start()
        assert_mailed_once(worker, 1000, timeout=60)
        assert worker.terminate() == 0, worker.log()[-3000:]
        assert "SIGTERM: finishing the current message" in worker.log()
    finally:
        worker.close()
        posts.close()


def test_a_broker_restart_mid_stream_fails_no_request_and_loses_no_event(broker, tmp_path):
    posts, worker = PostsSide(tmp_path, broker), Worker(tmp_path, broker)
    down, resume = threading.Event(), threading.Event()

    def restart_broker() -> None:
        try:
            rabbitmqctl("stop_app")
            down.set()
            resume.wait(30)
        finally:
            rabbitmqctl("start_app")

    restarter = threading.Thread(target=restart_broker, daemon=True)
    try:
        worker.start()
        broker.publish_event(Event(USER_REGISTERED, AUTHOR))
        posts.relay.start()
        for i in range(1000):
            if i == 300:
                restarter.start()  # the broker goes down while posts keep being created
            if i == 500:
                assert down.wait(60), "rabbitmqctl stop_app did not finish"
            if i == 800:
                resume.set()
            posts.service.create_post(7, "Ada", f"post {i}", "body")  # never fails
        restarter.join(120)
        wait_for_broker()
        assert_mailed_once(worker, 1000, timeout=60)
        assert posts.relay.pending() == 0
    finally:
        resume.set()
        if restarter.is_alive():
            restarter.join(120)
        try:
            rabbitmqctl("start_app")  # idempotent: whatever happened above, the broker is up
        finally:
            wait_for_broker()
            worker.close()
            posts.close()


def test_a_killed_worker_s_unacked_messages_are_redelivered_and_mailed_once(broker, tmp_path):
    total = 600
    broker.declare_email_queue()
    posts, worker = PostsSide(tmp_path, broker), Worker(tmp_path, broker)
    try:
        broker.publish_event(Event(USER_REGISTERED, AUTHOR))
        for i in range(total):
            posts.service.create_post(7, "Ada", f"post {i}", "body")
        assert posts.relay.run_once() == total

        worker.start()
        eventually(lambda: assert_true(worker.post_mails()[0] >= 30), timeout=30, interval=0.005)
        worker.kill()  # SIGKILL mid-batch: some handled, some prefetched and unacked
        handled = worker.post_mails()[0]
        assert handled < total, "the worker finished before it could be killed"
        eventually(
            lambda: assert_true(broker.counts(broker.email_queue)[0] >= total - handled), timeout=15
        )

        worker.start()
        assert_mailed_once(worker, total, timeout=60)
    finally:
        worker.close()
        posts.close()


def test_poison_messages_go_to_the_dead_letter_queue_with_their_reason(broker, tmp_path):
    worker = Worker(tmp_path, broker)
    try:
        worker.start()
        broker.publish(b"\xff\x00 not json {", POST_CREATED, message_id="garbage")
        unknown = Event("post.exploded", {"post_id": 1})
        broker.publish(json.dumps(unknown.to_dict()).encode(), POST_CREATED, unknown.id)
        broker.publish_event(Event(USER_REGISTERED, AUTHOR))
        broker.publish_event(
            Event(
                POST_CREATED,
                {"post_id": 1, "title": "still flowing", "author_id": 7, "author_name": "Ada"},
            )
        )
        assert_mailed_once(worker, 1, timeout=20)

        letters = broker.dead_letters(broker.email_queue)
        reasons = {
            body: (headers[ERROR_CODE_HEADER], headers[ERROR_HEADER]) for body, headers in letters
        }
        assert len(letters) == 2
        code, reason = reasons[b"\xff\x00 not json {"]
        assert code == "invalid_envelope" and "not JSON" in str(reason)
        code, reason = next(v for k, v in reasons.items() if unknown.id.encode() in k)
        assert code == "malformed_event" and "unknown event type 'post.exploded'" in str(reason)
        assert broker.counts(broker.email_queue)[0] == 0
    finally:
        worker.close()


def test_a_rename_reaches_the_posts_database_through_the_broker(broker, tmp_path):
    from blog.auth.models import metadata as auth_metadata
    from blog.auth.models import outbox as auth_outbox
    from blog.auth.service import InProcessAuthService

    posts = PostsSide(tmp_path, broker)
    auth_engine = make_engine(f"sqlite:///{tmp_path}/auth.db")
    create_tables(auth_engine, auth_metadata)
    auth_bus = OutboxEventBus(auth_outbox)
    auth = InProcessAuthService(make_session_factory(auth_engine), auth_bus, posts.config.auth)
    # As wiring does: the publisher declares its known consumers' queues, so user.registered
    # (for email, which is not running here) waits in the broker instead of blocking the outbox.
    queues = {broker.email_queue: EVENT_TYPES, broker.posts_queue: [USER_RENAMED]}
    auth_relay = OutboxRelay(
        auth_engine, auth_outbox, URL, broker.exchange, auth_bus, queues=queues
    )
    consumer = EventConsumer(
        URL,
        broker.exchange,
        broker.posts_queue,
        [USER_RENAMED],
        posts.service.handle_event,
        prefetch=10,
    )
    thread = consumer.start_in_thread()
    try:
        assert consumer.wait_until_consuming(15)
        auth_relay.start()
        user = auth.register("grace@example.com", "Grace", "correct horse battery")
        post = posts.service.create_post(user.id, user.name, "Hello", "body")
        auth.rename(user.id, "Grace Hopper")

        def renamed() -> None:
            assert posts.service.get_post(post.id).author_name == "Grace Hopper"

        eventually(renamed, timeout=15)
    finally:
        consumer.stop()
        thread.join(15)
        auth_relay.stop()
        auth_engine.dispose()
        posts.close()
    assert not thread.is_alive()


def test_a_transient_failure_is_retried_and_a_persistent_one_dead_lettered(broker):
    calls: dict[str, int] = {}

    def flaky(event: Event) -> None:
        calls[event.id] = calls.get(event.id, 0) + 1
        if event.data["fails"] >= calls[event.id]:
            raise OperationalError("UPDATE ...", {}, Exception("database is locked"))

    consumer = EventConsumer(
        URL,
        broker.exchange,
        broker.email_queue,
        [POST_CREATED],
        flaky,
        prefetch=5,
        max_attempts=3,
        retry_delay=0.01,
    )
    thread = consumer.start_in_thread()
    try:
        assert consumer.wait_until_consuming(15)
        recovers, never = Event(POST_CREATED, {"fails": 2}), Event(POST_CREATED, {"fails": 99})
        broker.publish_event(recovers)
        broker.publish_event(never)

        def settled() -> None:
            assert broker.counts(dead_letter_queue(broker.email_queue))[0] == 1
            assert broker.counts(broker.email_queue)[0] == 0

        eventually(settled, timeout=15)
        assert calls[recovers.id] == 3  # two failures, then handled and acked
        assert calls[never.id] == 3  # max_attempts, then the dead-letter queue
    finally:
        consumer.stop()
        thread.join(15)
    [(body, headers)] = broker.dead_letters(broker.email_queue)
    assert never.id.encode() in body
    assert "gave up after 3 attempts: " in str(headers[ERROR_HEADER])
    assert "database is locked" in str(headers[ERROR_HEADER])
    assert headers[ERROR_CODE_HEADER] == "OperationalError"


def assert_equal(actual: object, expected: object) -> None:
    assert actual == expected, f"{actual!r} != {expected!r}"


def assert_true(value: bool) -> None:
    assert value
