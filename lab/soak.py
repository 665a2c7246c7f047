"""The soak's pieces: everything extracted on RabbitMQ under a steady mixed load, what every
process holds over time, whether anything grows without bound, and whether every request's side
effect is there exactly once at the end. ``bench/soak.py`` runs them (``make soak``), and the
latency suite runs a short soak as a smoke test.

The deployment: the four HTTP services and the email worker (a RabbitMQ consumer), each a process
of its own on its own SQLite database, and the monolith under the configured server, all reading
one config file of the soak's own (the broker on its own exchange and queue names, deleted at the
end). Outbox retention runs with a short retention, so the outboxes' size is one of the things
that must stay bounded.

**How growth is judged** (:func:`judge`). Each series (a process tree's memory, its open file
descriptors and sockets, an outbox's backlog and size, a queue's depth) is sampled at a steady
interval. The first tenth of the run is warm-up (pools fill, code is imported, caches warm) and is
left out. The rest is cut in thirds and each third averaged: the late growth is the last third's
mean minus the middle third's, the early growth the middle's minus the first's (means, not
single samples or slopes within a third, so that a sawtooth — an outbox filling for a retention
period and emptied in batches, a garbage collector's cycle — averages out). A series passes when
its late growth, carried over the whole run (three thirds), stays under the series' tolerance
(noise), or when it is at most half the early growth and under four tolerances (levelling off).
A leak grows at a steady rate, so its late growth equals its early one and fails; a pool or cache
that fills and stops passes. A leak slower than half the warm-up's growth can hide in a short run:
a longer one (``SOAK_SECONDS``) shrinks the warm-up's share. The least-squares slopes of the first
and last thirds are reported beside it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import os
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from blog.config import Config, load_config
from blog.db import make_engine
from blog.domains import HTTP_SERVICES, PUBLISHERS, consumer_queues, manifest
from blog.serving import HOST, ServerProcess, free_port, monolith_process, service_process
from lab.configs import cost_settings, unlimited, write_config
from lab.keepalive import KeepAlive
from lab.procstat import memory, process_tree

PASSWORD = "correct horse battery staple"
TOLERANCES = {
    "memory_kb": 8 * 1024,
    "fds": 4,
    "sockets": 4,
    "backlog": 20,
    "outbox": 20,
    "queue": 20,
}
"""What a series may add over a run (at its late rate) and still count as flat."""
SHARES = {"memory_kb": 0.05, "outbox": 0.25}
"""...or this share of its median, if more: a process's memory, and an outbox's size (it holds a
retention period's worth of events, which follows the load's ups and downs)."""


# --------------------------------------------------------------------------- the deployment


@dataclass(frozen=True)
class SoakSettings:
    seconds: float = 600.0
    rate: float = 12.0
    """Requests per second, every client together."""
    clients: int = 4
    seed_users: int = 8
    bcrypt_rounds: int = 4
    """Cheap hashing: the soak looks for leaks, not at bcrypt (the latency lab measures that)."""
    sample_seconds: float | None = None
    """Between two samples; default: a 120th of the run, between 1 and 5 s."""
    retention_seconds: float | None = None
    """Outbox retention; default: a tenth of the run, at least 5 s."""
    monolith_workers: int = 2

    @property
    def interval(self) -> float:
        if self.sample_seconds is not None:
            return self.sample_seconds
        return min(max(self.seconds / 120, 1.0), 5.0)

    @property
    def retention(self) -> float:
        if self.retention_seconds is not None:
            return self.retention_seconds
        return max(self.seconds / 10, 5.0)


class SoakBroker:
    """The soak's own exchange and queue names on a RabbitMQ, deleted afterwards."""

    def __init__(self, url: str) -> None:
        tag = uuid.uuid4().hex[:10]
        self.url = url
        self.exchange = f"events-soak-{tag}"
        self.queue_prefix = f"soak{tag}-"

    def queues(self) -> list[str]:
        from blog.broker import dead_letter_queue

        names = list(consumer_queues(self.queue_prefix))
        return names + [dead_letter_queue(name) for name in names]

    def depths(self) -> dict[str, int]:
        """Messages ready in each queue (a queue not declared yet counts 0)."""
        import pika
        from pika.exceptions import ChannelClosedByBroker

        depths: dict[str, int] = {}
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            for name in self.queues():
                channel = connection.channel()
                try:
                    declared = channel.queue_declare(name, passive=True)
                    depths[name] = int(declared.method.message_count)
                except ChannelClosedByBroker:  # not declared yet
                    depths[name] = 0
                else:
                    channel.close()
        finally:
            connection.close()
        return depths

    def delete(self) -> None:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            channel = connection.channel()
            for name in self.queues():
                channel.queue_delete(name)
            for name in (self.exchange, self.exchange + ".dlx"):
                channel.exchange_delete(name)
        finally:
            connection.close()


@dataclass
class Deployment:
    state: Path
    config: Config
    servers: dict[str, ServerProcess]
    """Every process of the deployment by name: the monolith, each service, the email worker."""

    @property
    def monolith(self) -> ServerProcess:
        return self.servers["monolith"]

    def database(self, domain: str) -> str:
        return self.config.service_database_url(domain)


def soak_config(
    base: Config, state: Path, broker: SoakBroker, settings: SoakSettings
) -> dict[str, Any]:
    """The one config file every process of the soak reads: the user's cost settings, everything
    extracted (ports picked now), events on the soak's exchange with a short outbox retention,
    every database and image folder under ``state``."""
    ports = {domain: free_port() for domain in (*HTTP_SERVICES, "email")}
    raw = cost_settings(base)
    raw["auth"] = {**raw["auth"], "bcrypt_rounds": settings.bcrypt_rounds}
    raw["images"] = {**raw["images"], "local_dir": str(state / "images")}
    limits = unlimited(base)
    limits["key_prefix"] = f"{broker.queue_prefix}limits"
    services: dict[str, Any] = {
        domain: {
            "mode": "extracted" if domain == "email" else "http",
            "url": f"http://{HOST}:{port}",
            "port": port,
            "database_url": f"sqlite:///{state / f'{domain}-service.db'}",
        }
        for domain, port in ports.items()
    }
    return {
        **raw,
        "env": "development",
        "database_url": f"sqlite:///{state / 'monolith.db'}",
        "payments": {"provider": "fake", "stripe_api_base": None},
        "email": {"transport": "inbox"},
        "events": {
            "broker": "rabbitmq",
            "rabbitmq_url": broker.url,
            "exchange": broker.exchange,
            "queue_prefix": broker.queue_prefix,
            "outbox_retention_seconds": settings.retention,
            "outbox_cleanup_interval_seconds": max(settings.retention / 5, 1.0),
        },
        "rate_limits": limits,
        "services": services,
    }


def deploy(
    base: Config,
    state: Path,
    broker: SoakBroker,
    settings: SoakSettings,
    stack: ExitStack,
    output: Callable[[str], None] | None = None,
) -> Deployment:
    """Start every service, the email worker and the monolith; each is stopped (gracefully, so
    a relay finishes what it holds) when ``stack`` closes."""
    config_path = write_config(state / "soak.yaml", soak_config(base, state, broker, settings))
    config = load_config(config_path)
    servers: dict[str, ServerProcess] = {}
    for domain in HTTP_SERVICES:
        servers[domain] = service_process(
            domain,
            name=f"{domain} service",
            config_path=config_path,
            workers=1,
            port=config.services[domain].port,
            output=state / f"{domain}-service.log",
        )
    email_port = config.services["email"].port
    assert email_port is not None
    servers["email worker"] = ServerProcess(
        [sys.executable, "-m", "extracted.email.worker"],
        port=email_port,
        name="email worker",
        config_path=config_path,
        output=state / "email-worker.log",
    )
    servers["monolith"] = monolith_process(
        config_path=config_path,
        server=dataclasses.replace(config.server, workers=settings.monolith_workers),
        workers=settings.monolith_workers,
        output=state / "monolith.log",
    )
    for server in servers.values():
        stack.callback(server.stop)
    for name, server in servers.items():
        if output is not None:
            output(f"starting {name}")
        server.start(timeout=60)
    return Deployment(state, config, servers)


# --------------------------------------------------------------------------- the load


@dataclass(frozen=True)
class Charge:
    key: str
    amount: int


@dataclass
class Member:
    id: int
    email: str
    headers: dict[str, str]
    charges: list[Charge] = field(default_factory=list)


@dataclass
class Ledger:
    """What the load did and expects to find at the end."""

    members: list[Member] = field(default_factory=list)
    posts: dict[int, str] = field(default_factory=dict)
    """post id → its (unique) title"""
    comments: collections.Counter[int] = field(default_factory=collections.Counter)
    payments: dict[str, int] = field(default_factory=dict)
    """idempotency key → payment id"""
    uploads: list[str] = field(default_factory=list)
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, what: str) -> None:
        with self.lock:
            self.failures[what] += 1


def small_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (30, 120, 200)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


class Client:
    """One simulated user agent: a keep-alive connection to the monolith, reconnected on error."""

    def __init__(self, port: int, ledger: Ledger, upload: tuple[bytes, str]) -> None:
        self._port = port
        self._ledger = ledger
        self._upload = upload
        self._http = KeepAlive(port, timeout=30)
        self._random = random.Random()

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        op: str,
        method: str,
        path: str,
        payload: Any = None,
        headers: Mapping[str, str] | None = None,
        expect: Iterable[int] = (200,),
        body: bytes | None = None,
    ) -> Any:
        """The decoded answer, or None after counting a failure (an unexpected status, or no
        answer: the request's side effect is then unknown, which the soak reports)."""
        send_headers = dict(headers or {})
        if payload is not None:
            body = json.dumps(payload).encode()
            send_headers["Content-Type"] = "application/json"
        with self._ledger.lock:
            self._ledger.requests[op] += 1
        try:
            status, data = self._http.request(method, path, body, send_headers)
        except Exception as exc:  # http.client's errors, a reset, a timeout
            self._ledger.failed(f"{op}: {type(exc).__name__}")
            self._http.close()
            self._http = KeepAlive(self._port, timeout=30)
            return None
        if status not in set(expect):
            self._ledger.failed(f"{op}: HTTP {status}")
            return None
        return json.loads(data) if data and data[:1] in (b"{", b"[") else data

    # ------------------------------------------------------------------ operations

    def register(self) -> Member | None:
        email = f"soak-{uuid.uuid4().hex[:12]}@example.com"
        account = {"email": email, "name": "Soak", "password": PASSWORD}
        user = self.call("register", "POST", "/api/register", account, expect=(201,))
        if user is None:
            return None
        login = {"email": email, "password": PASSWORD}
        token = self.call("login", "POST", "/api/login", login)
        if token is None:
            return None
        member = Member(user["id"], email, {"Authorization": f"Bearer {token['access_token']}"})
        with self._ledger.lock:
            self._ledger.members.append(member)
        return member

    def _member(self) -> Member:
        with self._ledger.lock:
            return self._random.choice(self._ledger.members)

    def _post_id(self) -> int | None:
        with self._ledger.lock:
            return self._random.choice(list(self._ledger.posts)) if self._ledger.posts else None

    def login(self) -> None:
        member = self._member()
        self.call("login", "POST", "/api/login", {"email": member.email, "password": PASSWORD})

    def post(self) -> None:
        member = self._member()
        title = f"soak {uuid.uuid4().hex}"
        post = self.call(
            "post",
            "POST",
            "/api/posts",
            {"title": title, "body": "A post of the soak."},
            member.headers,
            expect=(201,),
        )
        if post is not None:
            with self._ledger.lock:
                self._ledger.posts[post["id"]] = title

    def comment(self) -> None:
        post_id = self._post_id()
        if post_id is None:
            return self.post()
        made = self.call(
            "comment",
            "POST",
            f"/api/posts/{post_id}/comments",
            {"body": "a comment"},
            self._member().headers,
            expect=(201,),
        )
        if made is not None:
            with self._ledger.lock:
                self._ledger.comments[post_id] += 1
        return None

    def pay(self) -> None:
        """A new charge, or (one time in five) a client's retry of its last one: the same key
        and values, which must answer the same payment and charge nothing more."""
        member = self._member()
        with self._ledger.lock:
            last = member.charges[-1] if member.charges else None
        retry = last is not None and self._random.random() < 0.2
        charge = (
            last if retry and last else Charge(uuid.uuid4().hex, 500 + self._random.randrange(1000))
        )
        paid = self.call(
            "pay",
            "POST",
            "/api/payment",
            {"amount": charge.amount, "currency": "usd", "payment_method": "pm_card_visa"},
            {**member.headers, "Idempotency-Key": charge.key},
            expect=(200, 201),
        )
        if paid is None:
            return
        with self._ledger.lock:
            known = self._ledger.payments.get(charge.key)
            if known is not None and known != paid["id"]:
                self._ledger.failures["pay: a retry made another payment"] += 1
            self._ledger.payments[charge.key] = paid["id"]
            if not retry:
                member.charges.append(charge)

    def upload(self) -> None:
        body, content_type = self._upload
        stored = self.call(
            "upload",
            "POST",
            "/api/upload",
            headers={**self._member().headers, "Content-Type": content_type},
            body=body,
            expect=(201,),
        )
        if stored is not None:
            with self._ledger.lock:
                self._ledger.uploads.append(stored["key"])

    def rename(self) -> None:
        member = self._member()
        name = f"Soak {self._random.randrange(10_000)}"
        self.call("rename", "PATCH", "/api/me", {"name": name}, member.headers)

    def read_list(self) -> None:
        self.call("read list", "GET", "/api/posts?per_page=20")

    def read_post(self) -> None:
        post_id = self._post_id()
        if post_id is not None:
            self.call("read post", "GET", f"/api/posts/{post_id}")


MIX: dict[str, float] = {
    "read_list": 0.22,
    "read_post": 0.22,
    "post": 0.14,
    "comment": 0.14,
    "pay": 0.10,
    "upload": 0.06,
    "login": 0.05,
    "register": 0.04,
    "rename": 0.03,
}
"""What a client does, by share of its requests (register and login cost a bcrypt hash each)."""


def drive(
    port: int, ledger: Ledger, settings: SoakSettings, until: float, stop: threading.Event
) -> None:
    """``settings.clients`` clients, each paced to its share of ``settings.rate``, until
    ``until`` (monotonic) or ``stop``."""
    import urllib3

    body, content_type = urllib3.encode_multipart_formdata(
        {"image": ("photo.jpg", small_jpeg(), "image/jpeg")}
    )
    seeder = Client(port, ledger, (body, content_type))
    try:
        for _ in range(settings.seed_users):
            seeder.register()
        seeder.post()
    finally:
        seeder.close()
    if not ledger.members:
        raise RuntimeError(f"the soak could not register a single user: {dict(ledger.failures)}")
    ops, weights = list(MIX), list(MIX.values())

    def run_client(n: int) -> None:
        client = Client(port, ledger, (body, content_type))
        interval = settings.clients / settings.rate
        chooser = random.Random(n)
        next_at = time.monotonic() + chooser.random() * interval
        try:
            while not stop.is_set() and time.monotonic() < until:
                getattr(client, chooser.choices(ops, weights)[0])()
                next_at += interval
                stop.wait(max(next_at - time.monotonic(), 0))
        finally:
            client.close()

    threads = [
        threading.Thread(target=run_client, args=(n,), name=f"soak-client-{n}", daemon=True)
        for n in range(settings.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --------------------------------------------------------------------------- sampling


def _fds(pids: Iterable[int]) -> tuple[int, int]:
    """Open file descriptors and, of them, sockets, of every process in ``pids``."""
    fds = sockets = 0
    for pid in pids:
        directory = f"/proc/{pid}/fd"
        try:
            entries = os.listdir(directory)
        except OSError:  # gone meanwhile
            continue
        for entry in entries:
            try:
                target = os.readlink(f"{directory}/{entry}")
            except OSError:
                continue
            fds += 1
            sockets += target.startswith("socket:")
    return fds, sockets


@dataclass
class Sample:
    at: float
    """Seconds since the load started."""
    values: dict[str, float]
    """Series name → value: ``memory_kb <process>``, ``fds <process>``, ``sockets <process>``,
    ``backlog <outbox>``, ``outbox rows <outbox>``, ``queue <name>``."""


class Sampler:
    """Samples every process tree, outbox and queue of a deployment in a background thread."""

    def __init__(self, deployment: Deployment, broker: SoakBroker, interval: float) -> None:
        self._deployment = deployment
        self._broker = broker
        self._interval = interval
        self._engines: dict[str, Engine] = {
            domain: make_engine(deployment.database(domain)) for domain in PUBLISHERS
        }
        self.samples: list[Sample] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def start(self, started: float) -> None:
        self._started = started
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for engine in self._engines.values():
            engine.dispose()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.samples.append(self.sample(began - self._started))
            except Exception as exc:  # a sample missed is reported, never fatal
                self.errors[f"{type(exc).__name__}: {exc}"] += 1
            self._stop.wait(max(self._interval - (time.monotonic() - began), 0.05))

    def outboxes(self) -> dict[str, tuple[int, int]]:
        """Each publisher's outbox: (rows waiting to be published, rows in all)."""
        found = {}
        for domain, engine in self._engines.items():
            table = manifest(domain).outbox()
            assert table is not None
            with engine.connect() as connection:
                waiting = connection.execute(
                    select(func.count()).select_from(table).where(table.c.published_at.is_(None))
                ).scalar_one()
                total = connection.execute(select(func.count()).select_from(table)).scalar_one()
            found[domain] = (int(waiting), int(total))
        return found

    def sample(self, at: float) -> Sample:
        values: dict[str, float] = {}
        for name, server in self._deployment.servers.items():
            if server.pid is None:
                continue
            tree = process_tree(server.pid)
            values[f"memory_kb {name}"] = memory(tree).pss_kb
            fds, sockets = _fds(tree)
            values[f"fds {name}"] = fds
            values[f"sockets {name}"] = sockets
        for domain, (waiting, total) in self.outboxes().items():
            values[f"backlog {domain}"] = waiting
            values[f"outbox rows {domain}"] = total
        for queue, depth in self._broker.depths().items():
            values[f"queue {queue}"] = depth
        return Sample(at, values)


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Verdict:
    series: str
    first: float
    peak: float
    last: float
    thirds: tuple[float, float, float]
    """The mean of each third after the warm-up."""
    first_slope: float
    """Per minute, over the first third after the warm-up."""
    last_slope: float
    """Per minute, over the last third."""
    projected: float
    """The late growth carried over the whole run (three thirds)."""
    tolerance: float
    passed: bool


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value), per unit of t; 0 for fewer than two points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def tolerance_of(series: str, values: Sequence[float]) -> float:
    kind = series.split(" ")[0]
    ordered = sorted(values)
    median = ordered[len(ordered) // 2] if ordered else 0.0
    return max(TOLERANCES[kind], SHARES.get(kind, 0.0) * median)


def _mean(points: Sequence[tuple[float, float]]) -> float:
    return sum(v for _, v in points) / len(points) if points else 0.0


def judge(series: str, points: Sequence[tuple[float, float]], tolerance: float) -> Verdict:
    """See the module's doc: the late growth against the noise and against the early growth."""
    duration = points[-1][0] - points[0][0] if points else 0.0
    warmed = [p for p in points if p[0] >= points[0][0] + duration / 10] if points else []
    third = max(len(warmed) // 3, 1)
    first, middle, last = warmed[:third], warmed[third:-third], warmed[-third:]
    means = (_mean(first), _mean(middle or last), _mean(last))
    early, late = means[1] - means[0], means[2] - means[1]
    projected = 3 * late
    levelling = late <= 0.5 * early and projected <= 4 * tolerance
    values = [v for _, v in points] or [0.0]
    return Verdict(
        series,
        values[0],
        max(values),
        values[-1],
        means,
        slope(first) * 60,
        slope(last) * 60,
        projected,
        tolerance,
        projected <= tolerance or levelling,
    )


def judge_all(samples: Sequence[Sample]) -> list[Verdict]:
    names = sorted({name for sample in samples for name in sample.values})
    verdicts = []
    for name in names:
        points = [(s.at, s.values[name]) for s in samples if name in s.values]
        if len(points) >= 2:
            verdicts.append(judge(name, points, tolerance_of(name, [v for _, v in points])))
    return verdicts


# --------------------------------------------------------------------------- exactly once


_RECEIPT = re.compile(r"^Payment:\s+#(\d+)\s*$", re.MULTILINE)


def _rows(url: str, domain: str, table: str, *columns: str) -> list[Any]:
    target = manifest(domain).metadata().tables[table]
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(select(*(target.c[c] for c in columns))).all())
    finally:
        engine.dispose()


def side_effect_problems(deployment: Deployment, ledger: Ledger) -> list[str]:
    """Every request's side effect, there exactly once: each post (and no other), each comment,
    each payment (one per idempotency key, however often it was retried), each upload, and each
    email (a welcome per registration, a confirmation per post, a receipt per payment)."""
    problems: list[str] = []
    with ledger.lock:
        posts = dict(ledger.posts)
        comments = collections.Counter(ledger.comments)
        payments = dict(ledger.payments)
        emails = [member.email for member in ledger.members]
        uploads = list(ledger.uploads)

    titles = collections.Counter(
        row.title for row in _rows(deployment.database("posts"), "posts", "posts", "title")
    )
    for post_id, title in posts.items():
        if titles[title] != 1:
            problems.append(f"post {post_id} ({title}) is there {titles[title]} times")
    extra = sum(titles.values()) - len(posts)
    if extra:
        problems.append(f"{extra} post(s) nobody created")
    counted = collections.Counter(
        row.post_id for row in _rows(deployment.database("posts"), "posts", "comments", "post_id")
    )
    for post_id, count in comments.items():
        if counted[post_id] != count:
            problems.append(f"post {post_id}: {counted[post_id]} comments, {count} made")

    rows = _rows(deployment.database("payments"), "payments", "payments", "id", "idempotency_key")
    by_key = collections.Counter(row.idempotency_key for row in rows)
    for key, payment_id in payments.items():
        if by_key[key] != 1:
            problems.append(f"payment {payment_id} (key {key}) is there {by_key[key]} times")
    if len(rows) != len(payments):
        problems.append(f"{len(rows)} payment rows for {len(payments)} idempotency keys")

    images = Path(deployment.config.images.local_dir)
    stored = (
        {path.name for path in images.rglob("*") if path.is_file()} if images.exists() else set()
    )
    missing = [key for key in uploads if not any(key in name for name in stored)]
    if missing:
        problems.append(f"{len(missing)} upload(s) not stored, e.g. {missing[0]}")

    messages = _rows(
        deployment.database("email"), "email", "email_messages", "to", "subject", "body"
    )
    welcomes = collections.Counter(m.to for m in messages if m.subject.startswith("Welcome"))
    for email in emails:
        if welcomes[email] != 1:
            problems.append(f"{email}: {welcomes[email]} welcome emails")
    subjects = collections.Counter(m.subject for m in messages)
    for post_id, title in posts.items():
        got = subjects[f"Your post '{title}' is published"]
        if got != 1:
            problems.append(f"post {post_id}: {got} confirmation emails")
    receipts = collections.Counter(
        int(found) for m in messages for found in _RECEIPT.findall(m.body)
    )
    for payment_id in payments.values():
        if receipts[payment_id] != 1:
            problems.append(f"payment {payment_id}: {receipts[payment_id]} receipts")
    expected = len(emails) + len(posts) + len(set(payments.values()))
    if len(messages) != expected:
        problems.append(f"{len(messages)} emails sent, {expected} expected")
    return problems


def settle(
    deployment: Deployment,
    ledger: Ledger,
    sampler: Sampler,
    broker: SoakBroker,
    timeout: float = 60.0,
) -> list[str]:
    """Wait until every outbox is published, every queue empty and every side effect there (or
    ``timeout``); the problems left."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):  # a database busy for a moment: look again
            problems = side_effect_problems(deployment, ledger)
            backlog = sum(waiting for waiting, _ in sampler.outboxes().values())
            queued = sum(broker.depths().values())
            if not problems and not backlog and not queued:
                return []
        if time.monotonic() > deadline:
            problems = side_effect_problems(deployment, ledger)
            backlog = sum(waiting for waiting, _ in sampler.outboxes().values())
            queued = sum(broker.depths().values())
            extra = [f"{backlog} outbox row(s) never published"] if backlog else []
            extra += [f"{queued} message(s) left in the queues"] if queued else []
            return problems + extra
        time.sleep(0.5)
