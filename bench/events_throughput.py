"""What moving events onto RabbitMQ costs: throughput and post→email latency, inline vs broker.

    .venv/bin/python bench/events_throughput.py --events 2000

Inline: the monolith's default, the email is sent inside the post's request (after its commit).
RabbitMQ: the post's request only writes the outbox; the relay publishes with publisher confirms;
the email worker (``python -m extracted.email.worker``, a real process) consumes and commits.
Latency is measured from the post's commit to the email's row being committed, on one clock.
Needs a RabbitMQ on the configured URL; uses its own exchange and queues and deletes them.

Both sides are built by the composition root from a config file of the bench's own: the inline
monolith with ``build_monolith``, the posts service that writes the outbox with
``build_service("posts", ...)``, the worker by ``extracted.email.worker`` itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

import pika
import yaml
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import Engine, MetaData, func, select
from sqlalchemy import event as sa_event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blog.broker import (  # noqa: E402
    SingleRelay,
    dead_letter_exchange,
    dead_letter_queue,
    declare_queue,
)
from blog.config import Config, load_config  # noqa: E402
from blog.db import make_engine  # noqa: E402
from blog.domains import consumer_queues, manifest  # noqa: E402
from blog.events import USER_REGISTERED, Event  # noqa: E402
from blog.serving import ServerProcess, free_port  # noqa: E402
from blog.wiring import build_monolith, build_service  # noqa: E402

AUTHOR = {"user_id": 1, "email": "bench@example.com", "name": "Bench"}
FROM = "Bench <bench@example.com>"
Row = tuple[str, float, float | None, float | None]


def bench_config(path: Path, settings: Mapping[str, Any]) -> Config:
    """A config file of the bench's own (the defaults, a quiet log, the inbox transport, and
    ``settings``), written where a server process can read it too."""
    raw = {
        "env": "testing",
        "log_level": "WARNING",
        "email": {"transport": "inbox", "from_address": FROM},
        **settings,
    }
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


@contextmanager
def commit_clock(metadata: MetaData) -> Iterator[list[float]]:
    """Wall-clock time of every commit that inserted rows into ``metadata``'s tables (one per
    post), in order.

    A listener on the Session class runs before the inline bus's per-session one, so the time is
    taken before the inline email is sent; the email's own commit, which inserts nothing of
    ``metadata``'s, is not counted.
    """
    commits: list[float] = []

    def flushing(session: Session, _context: object, _instances: object) -> None:
        if any(sa_inspect(obj).mapper.local_table.metadata is metadata for obj in session.new):
            session.info["clocked"] = True

    def committed(session: Session) -> None:
        if session.info.pop("clocked", False):
            commits.append(time.time())

    sa_event.listen(Session, "before_flush", flushing)
    sa_event.listen(Session, "after_commit", committed)
    try:
        yield commits
    finally:
        sa_event.remove(Session, "before_flush", flushing)
        sa_event.remove(Session, "after_commit", committed)


def _subject(prefix: str) -> str:
    return f"Your post '{prefix}-%"


def email_times(engine: Engine, prefix: str) -> dict[str, float]:
    """Post title → time its email row was recorded (the service's own ``created_at``, UTC)."""
    messages = manifest("email").metadata().tables["email_messages"]
    query = select(messages.c.subject, messages.c.created_at).where(
        messages.c.subject.like(_subject(prefix))
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    found = {}
    for subject, created in rows:
        title = subject.split("'")[1]
        moment = created if created.tzinfo else created.replace(tzinfo=UTC)
        found[title] = moment.timestamp()
    return found


def mailed(engine: Engine, prefix: str) -> int:
    messages = manifest("email").metadata().tables["email_messages"]
    query = select(func.count()).where(messages.c.subject.like(_subject(prefix)))
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def latencies(commits: list[float], titles: list[str], mailed: dict[str, float]) -> list[float]:
    return [
        (mailed[title] - committed) * 1000 for title, committed in zip(titles, commits, strict=True)
    ]


def pct(values: list[float], q: int) -> float:
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
    config = bench_config(tmp / "inline.yaml", {"database_url": f"sqlite:///{tmp}/inline.db"})
    monolith = build_monolith(config)
    try:
        monolith.init_db()  # tables only: nothing runs in the background with the inline bus
        assert monolith.engine is not None
        domains = monolith.registry
        domains.bus.deliver(Event(USER_REGISTERED, AUTHOR))
        titles = [f"inline-{i}" for i in range(events)]
        with commit_clock(manifest("posts").metadata()) as commits:
            started = time.perf_counter()
            for title in titles:
                domains.posts.create_post(1, "Bench", title, "body")
            elapsed = time.perf_counter() - started
        lat = latencies(commits, titles, email_times(monolith.engine, "inline"))
    finally:
        monolith.close()
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
    """``python -m extracted.email.worker`` as a real process, on a database of its own."""

    def __init__(self, tmp: Path, url: str, events: Mapping[str, Any]) -> None:
        self.queue = events["queue_prefix"] + manifest("email").queue
        self.url = url
        port = free_port()  # its inbox: answers /health once its consumer runs
        database = f"sqlite:///{tmp / 'worker-email.db'}"
        config_path = tmp / "worker.yaml"
        bench_config(
            config_path,
            {
                "events": events,
                "services": {
                    "email": {"mode": "extracted", "database_url": database, "port": port}
                },
            },
        )
        self.server = ServerProcess(
            [sys.executable, "-m", "extracted.email.worker"],
            port=port,
            name="email worker",
            config_path=config_path,
            output=tmp / "worker.log",
        )
        self.engine = make_engine(database)

    def start(self) -> None:
        def consuming() -> bool:
            with amqp(self.url) as channel:
                declared = channel.queue_declare(self.queue, passive=True)
                return bool(declared.method.consumer_count > 0)

        self.server.start(timeout=30, ready=consuming)

    def mailed(self, prefix: str) -> int:
        return mailed(self.engine, prefix)

    def stop(self) -> None:
        self.server.stop(timeout=30)  # SIGTERM: the message in hand finishes
        self.engine.dispose()


def bench_rabbitmq(tmp: Path, url: str, events: int, paced: int, rate: float) -> list[Row]:
    tag = uuid.uuid4().hex[:10]
    broker = {
        "broker": "rabbitmq",
        "rabbitmq_url": url,
        "exchange": f"bench-{tag}",
        "queue_prefix": f"bench{tag}-",
    }
    exchange, prefix = broker["exchange"], broker["queue_prefix"]
    config = bench_config(
        tmp / "posts.yaml",
        {
            "events": broker,
            "services": {"posts": {"database_url": f"sqlite:///{tmp}/rabbit-posts.db"}},
        },
    )
    service = build_service("posts", config)
    service.init_db()
    posts = service.service
    (single,) = [job for kind, job in service.jobs if kind == "relay"]
    assert isinstance(single, SingleRelay)
    relay = single.relay
    worker = Worker(tmp, url, broker)
    rows: list[Row] = []
    try:
        with amqp(url) as channel:
            # what the worker declares: the backlog waits in the broker until it starts
            declare_queue(channel, exchange, worker.queue, manifest("email").handles)
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

        service.start(kinds=("relay",))  # the relay in the background, as a server runs it
        with commit_clock(manifest("posts").metadata()) as commits:
            # 4. burst: everything running, posts created as fast as possible
            titles = [f"burst-{i}" for i in range(events)]
            started = time.perf_counter()
            for title in titles:
                posts.create_post(1, "Bench", title, "body")
            wait_for(lambda: worker.mailed("burst") >= events, 300, "the burst to be mailed")
            elapsed = time.perf_counter() - started
            lat = latencies(commits, titles, email_times(worker.engine, "burst"))
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
            lat = latencies(commits, titles, email_times(worker.engine, "paced"))
            rows.append(
                (f"rabbitmq: end to end, paced at {rate:g}/s", rate, pct(lat, 50), pct(lat, 99))
            )
    finally:
        service.close()
        worker.stop()
        with amqp(url) as channel:
            for queue in consumer_queues(prefix):
                for name in (queue, dead_letter_queue(queue)):
                    channel.queue_delete(name)
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
