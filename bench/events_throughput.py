"""What moving events onto RabbitMQ costs: throughput and post→email latency, inline vs broker.

    .venv/bin/python bench/events_throughput.py --events 2000

Inline: the monolith's default, the email is sent inside the post's request (after its commit).
RabbitMQ: the post's request only writes the outbox; the relay publishes with publisher confirms;
the email worker (``python -m extracted.email.worker``, a real process) consumes and commits.
Latency is measured from the post's commit to the email's row being committed, on one clock.
Needs a RabbitMQ on the configured URL; uses its own exchange and queues and deletes them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pika
import yaml
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, sessionmaker

from blog.broker import (
    OutboxRelay,
    dead_letter_exchange,
    dead_letter_queue,
    declare_queue,
)
from blog.config import PostsConfig
from blog.db import create_tables, make_engine, make_session_factory
from blog.email.models import metadata as email_metadata
from blog.email.service import InProcessEmailService
from blog.email.transports import InboxTransport
from blog.events import (
    EVENT_TYPES,
    USER_REGISTERED,
    Event,
    InlineEventBus,
    OutboxEventBus,
)
from blog.posts.models import metadata as posts_metadata
from blog.posts.models import outbox
from blog.posts.service import InProcessPostsService

ROOT = Path(__file__).resolve().parent.parent
AUTHOR = {"user_id": 1, "email": "bench@example.com", "name": "Bench"}
FROM = "Bench <bench@example.com>"
Row = tuple[str, float, float | None, float | None]


def commit_clock(sessions: sessionmaker[Session]) -> list[float]:
    """Wall-clock time of every commit made through ``sessions``, in order (one per post).

    A sessionmaker-level listener runs before the inline bus's per-session one, so the time is
    taken before the inline email is sent.
    """
    commits: list[float] = []
    sa_event.listen(sessions, "after_commit", lambda _s: commits.append(time.time()))
    return commits


def email_times(db: Path, prefix: str) -> dict[str, float]:
    """Post title → time its email row was recorded (the service's own ``created_at``, UTC)."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT subject, created_at FROM email_messages WHERE subject LIKE ?",
            (f"Your post '{prefix}-%",),
        ).fetchall()
    found = {}
    for subject, created in rows:
        title = subject.split("'")[1]
        found[title] = datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()
    return found


def latencies(commits: list[float], titles: list[str], mailed: dict[str, float]) -> list[float]:
    return [
        (mailed[title] - committed) * 1000 for title, committed in zip(titles, commits, strict=True)
    ]


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- inline


def bench_inline(tmp: Path, events: int) -> Row:
    posts_engine = make_engine(f"sqlite:///{tmp}/inline-posts.db")
    email_engine = make_engine(f"sqlite:///{tmp}/inline-email.db")
    create_tables(posts_engine, posts_metadata)
    create_tables(email_engine, email_metadata)
    bus = InlineEventBus()
    email = InProcessEmailService(make_session_factory(email_engine), InboxTransport(), FROM)
    for event_type in EVENT_TYPES:
        bus.subscribe(event_type, email.handle_event, consumer="email")
    sessions = make_session_factory(posts_engine)
    posts = InProcessPostsService(sessions, bus, PostsConfig())
    bus.deliver(Event(USER_REGISTERED, AUTHOR))
    commits = commit_clock(sessions)
    titles = [f"inline-{i}" for i in range(events)]
    started = time.perf_counter()
    for title in titles:
        posts.create_post(1, "Bench", title, "body")
    elapsed = time.perf_counter() - started
    lat = latencies(commits, titles, email_times(tmp / "inline-email.db", "inline"))
    posts_engine.dispose()
    email_engine.dispose()
    return (
        "inline bus: create post + send email in the request",
        events / elapsed,
        pct(lat, 50),
        pct(lat, 99),
    )


# --------------------------------------------------------------------------- rabbitmq


@contextmanager
def amqp(url: str) -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection.channel()
    finally:
        connection.close()


class Worker:
    def __init__(self, tmp: Path, url: str, exchange: str, prefix: str) -> None:
        self.db = tmp / "worker-email.db"
        self.queue = prefix + "email_service_queue"
        self.url = url
        self.config = tmp / "worker.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "env": "testing",
                    "log_level": "WARNING",
                    "events": {
                        "broker": "rabbitmq",
                        "rabbitmq_url": url,
                        "exchange": exchange,
                        "queue_prefix": prefix,
                    },
                    "services": {
                        "email": {"mode": "extracted", "database_url": f"sqlite:///{self.db}"}
                    },
                }
            )
        )
        self.log = tmp / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "extracted.email.worker"],
                cwd=ROOT,
                env={**os.environ, "BLOG_CONFIG": str(self.config)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def consuming() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"the worker exited:\n{self.log.read_text()}")
            with amqp(self.url) as channel:
                return channel.queue_declare(self.queue, passive=True).method.consumer_count > 0

        wait_for(consuming, 30, "the worker to consume")

    def mailed(self, prefix: str) -> int:
        with sqlite3.connect(self.db) as connection:
            return connection.execute(
                "SELECT COUNT(*) FROM email_messages WHERE subject LIKE ?",
                (f"Your post '{prefix}-%",),
            ).fetchone()[0]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def bench_rabbitmq(tmp: Path, url: str, events: int, paced: int, rate: float) -> list[Row]:
    tag = uuid.uuid4().hex[:10]
    exchange, prefix = f"bench-{tag}", f"bench{tag}-"
    engine = make_engine(f"sqlite:///{tmp}/rabbit-posts.db")
    create_tables(engine, posts_metadata)
    bus = OutboxEventBus(outbox)
    sessions = make_session_factory(engine)
    posts = InProcessPostsService(sessions, bus, PostsConfig())
    worker = Worker(tmp, url, exchange, prefix)
    relay = OutboxRelay(engine, outbox, url, exchange, bus, queues={worker.queue: EVENT_TYPES})
    rows: list[Row] = []
    try:
        with amqp(url) as channel:
            # what the worker declares: the backlog waits in the broker until it starts
            declare_queue(channel, exchange, worker.queue, EVENT_TYPES)
            channel.confirm_delivery()
            channel.basic_publish(
                exchange,
                USER_REGISTERED,
                json.dumps(Event(USER_REGISTERED, AUTHOR).to_dict()).encode(),
                pika.BasicProperties(delivery_mode=2),
                mandatory=True,
            )

        # 1. the request path: create post + write the outbox row (no broker involved)
        started = time.perf_counter()
        for i in range(events):
            posts.create_post(1, "Bench", f"backlog-{i}", "body")
        rows.append(
            (
                "rabbitmq: create post + write outbox (request path)",
                events / (time.perf_counter() - started),
                None,
                None,
            )
        )

        # 2. the relay alone: outbox → broker, confirmed, rows marked
        started = time.perf_counter()
        published = relay.run_once()
        rows.append(
            (
                "rabbitmq: relay outbox → broker (publisher confirms)",
                published / (time.perf_counter() - started),
                None,
                None,
            )
        )

        # 3. the worker alone: drains the backlog into its database
        worker.start()
        started = time.perf_counter()
        wait_for(lambda: worker.mailed("backlog") >= events, 300, "the backlog to drain")
        rows.append(
            (
                "rabbitmq: worker drains queue → email row (prefetch 50)",
                events / (time.perf_counter() - started),
                None,
                None,
            )
        )

        relay.start()
        # 4. burst: everything running, posts created as fast as possible
        commits = commit_clock(sessions)
        titles = [f"burst-{i}" for i in range(events)]
        started = time.perf_counter()
        for title in titles:
            posts.create_post(1, "Bench", title, "body")
        wait_for(lambda: worker.mailed("burst") >= events, 300, "the burst to be mailed")
        elapsed = time.perf_counter() - started
        lat = latencies(commits, titles, email_times(worker.db, "burst"))
        rows.append(
            (
                "rabbitmq: end to end, burst (queueing included)",
                events / elapsed,
                pct(lat, 50),
                pct(lat, 99),
            )
        )

        # 5. paced: a steady load well under capacity shows the transport's own latency
        commits.clear()
        titles = [f"paced-{i}" for i in range(paced)]
        started = time.perf_counter()
        for n, title in enumerate(titles):
            time.sleep(max(0.0, started + n / rate - time.perf_counter()))
            posts.create_post(1, "Bench", title, "body")
        wait_for(lambda: worker.mailed("paced") >= paced, 120, "the paced posts to be mailed")
        lat = latencies(commits, titles, email_times(worker.db, "paced"))
        rows.append(
            (f"rabbitmq: end to end, paced at {rate:g}/s", rate, pct(lat, 50), pct(lat, 99))
        )
    finally:
        relay.stop()
        worker.stop()
        engine.dispose()
        with amqp(url) as channel:
            for queue in (worker.queue, dead_letter_queue(worker.queue)):
                channel.queue_delete(queue)
            for name in (exchange, dead_letter_exchange(exchange)):
                channel.exchange_delete(name)
    return rows


# --------------------------------------------------------------------------- report


def machine(url: str) -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    connection = pika.BlockingConnection(pika.URLParameters(url))
    rabbit = connection._impl.server_properties.get("version", b"?")  # pika keeps it private
    connection.close()
    rabbit = rabbit.decode() if isinstance(rabbit, bytes) else rabbit
    return (
        f"{platform.system()} {platform.release()}, {cpu} x{os.cpu_count()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version} (WAL), "
        f"RabbitMQ {rabbit}, pika {pika.__version__}, "
        f"load average {os.getloadavg()[0]:.2f} (other work skews these numbers)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--paced", type=int, default=500, help="events in the paced run")
    parser.add_argument("--rate", type=float, default=100.0, help="events/s in the paced run")
    parser.add_argument("--rabbitmq-url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    args = parser.parse_args()

    print(f"machine: {machine(args.rabbitmq_url)}")
    print(f"events: {args.events} per run; paced run: {args.paced} at {args.rate:g}/s\n")
    with tempfile.TemporaryDirectory(prefix="events-bench-") as tmp:
        rows = [bench_inline(Path(tmp), args.events)]
        rows += bench_rabbitmq(Path(tmp), args.rabbitmq_url, args.events, args.paced, args.rate)

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(f"{'path':<58}{'events/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, per_second, p50, p99 in rows:
        print(f"{name:<58}{per_second:>10.0f}{ms(p50):>10}{ms(p99):>10}")


if __name__ == "__main__":
    main()
