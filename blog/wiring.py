"""The composition root: the one module that reads ``services.<domain>.mode`` and puts concrete
implementations together, for every kind of process the product runs.

- :func:`build_monolith`: the gateway's domains, each in-process, or a client of its extracted
  service (over a socket, or over the in-process wire), linked by events;
- :func:`build_service`: one extracted domain: its own database, its endpoints generated from
  its route table, its outbox relay and its consumer.

Building has no side effects: no table is created, no thread started, no connection opened.
A :class:`Runtime` starts explicitly: ``start()`` creates what tables are missing and starts the
background work (outbox relays, queue consumers, event-feed pullers). A server does that when it
starts serving (the first request, or gunicorn's ``post_worker_init``); the CLI, the tests and the
lab build freely and start only what they mean to.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import logging
import multiprocessing.util
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from flask import Flask
from sqlalchemy import Engine, MetaData, Table
from sqlalchemy.orm import Session

from blog.auth import AuthService
from blog.config import Config
from blog.contract import (
    failure_detector,
    remote,
)
from blog.db import create_tables, make_engine, make_session_factory
from blog.discovery import InstanceSource, StaticInstances
from blog.discovery.dns import DnsInstances
from blog.discovery.etcd import EtcdGateway
from blog.discovery.registry import Registrar, RegistryDirectory, advertised_url
from blog.domains import MANIFESTS, manifest
from blog.email import EmailService
from blog.events import Event, EventPublisher, InlineEventBus, OutboxEventBus, doorbell
from blog.httpkit import configure_logging
from blog.images import ImagesService
from blog.manifest import BuildContext, DomainManifest
from blog.payments import PaymentsService
from blog.posts import PostsService
from blog.serviceapp import build_app
from blog.timing import TimedDomain
from blog.transport import Transport
from blog.transport.balancing import BalancedTransport
from blog.transport.credentials import MONOLITH_AUDIENCE, ServiceCredentials
from blog.transport.faults import FaultInjectingTransport
from blog.transport.http import PooledHttpTransport
from blog.transport.resilience import CircuitBreaker, ResilientTransport
from blog.transport.wire import WireTransport

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Multipart framing around an upload (boundaries, part headers) on top of the image's bytes."""

JobKind = Literal["relay", "consumer", "feed", "redelivery", "discovery", "registration"]
"""``relay``: a publisher's outbox work (the RabbitMQ relay, and the outbox retention of the
relay or of the feed); ``redelivery``: the inline broker's events set aside for another try."""


class Job(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Runtime:
    """What a built process owns: databases to prepare, background jobs, things to close."""

    tables: list[tuple[Engine, MetaData]] = field(default_factory=list)
    jobs: list[tuple[JobKind, Job]] = field(default_factory=list)
    children: list[Runtime] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)
    _started: bool = field(default=False, repr=False)
    _closed: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def init_db(self) -> None:
        """Create every table this process owns that does not exist yet (idempotent)."""
        for child in self.children:
            child.init_db()
        for engine, metadata in self.tables:
            create_tables(engine, metadata)

    def start(
        self,
        kinds: Iterable[JobKind] = (
            "discovery",
            "registration",
            "relay",
            "consumer",
            "feed",
            "redelivery",
        ),
    ) -> None:
        """Prepare the databases and start the background jobs of ``kinds``; once per process
        (a second call returns at once, so a server may call it on every request)."""
        if self._started:
            return
        with self._lock:
            if not self._started:  # another thread may have started it while we waited
                self.init_db()
                wanted = set(kinds)
                for child in self.children:
                    child.start(wanted)
                for kind, job in self.jobs:
                    if kind in wanted:
                        job.start()
                self._started = True

    def close(self) -> None:
        """Stop the jobs, close the domains, release the databases; once (later calls return)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _kind, job in reversed(self.jobs):
            job.stop()
        for child in self.children:
            child.close()
        for close in self.closers:
            close()
        for engine in self.engines:
            engine.dispose()


# --------------------------------------------------------------------------- the monolith


@dataclass
class Domains:
    """Every domain behind its interface, as the gateway sees them."""

    auth: AuthService
    posts: PostsService
    images: ImagesService
    payments: PaymentsService
    email: EmailService
    bus: InlineEventBus
    modes: dict[str, str]

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def close(self) -> None:
        for m in MANIFESTS:
            close = getattr(self[m.name], "close", None)
            if close is not None:
                close()


@dataclass
class Monolith(Runtime):
    config: Config | None = None
    domains: Domains | None = None
    engine: Engine | None = None
    credentials: ServiceCredentials | None = None
    """Every extracted service's credential, and the monolith's own (``/api/health``)."""
    redeliveries: Any = None
    """``blog.redelivery.Redeliveries`` with the inline broker: the events set aside."""

    @property
    def registry(self) -> Domains:
        assert self.domains is not None
        return self.domains


def build_monolith(config: Config, overrides: Mapping[str, Any] | None = None) -> Monolith:
    """The gateway's domains where config.yaml says each one runs, linked by events.

    ``overrides`` replaces a domain by any object that implements its interface (a test double,
    a client over a mock transport): Service Weaver's trick of running one test body against
    every deployment.

    ``events.broker: inline``: publishers hand events to the in-process bus after commit; an
    extracted publisher's events come back through its HTTP feed. ``rabbitmq``: every in-process
    publisher writes its outbox and a relay sends it to the broker; each consumer reads its own
    queue wherever its domain runs.
    """
    overrides = dict(overrides or {})
    engine = make_engine(config.database_url)
    sessions = make_session_factory(engine)
    credentials = monolith_credentials(config)
    rabbitmq = config.events.broker == "rabbitmq"
    runtime = Monolith(config=config, engine=engine, engines=[engine], credentials=credentials)
    bus = InlineEventBus() if rabbitmq else _redelivering_bus(config, runtime, engine)
    discovery = Discovery(config, runtime)
    outboxes: dict[str, OutboxEventBus] = {}
    built: dict[str, Any] = {}
    for m in MANIFESTS:
        mode = config.mode(m.name)
        if m.name in overrides:
            built[m.name] = overrides[m.name]
        elif mode == "inprocess":
            # Only the domains that live here get tables here: after extraction the monolith
            # no longer touches an extracted domain's tables.
            runtime.tables.append((engine, m.metadata()))
            publisher = _publisher(m, bus, outboxes if rabbitmq else None, engine)
            built[m.name] = m.build(BuildContext(config, sessions, publisher))
        else:
            child = None
            if mode == "wire":
                child = build_service(m.name, config)
                runtime.children.append(child)
            transport = _service_transport(m, config, child, discovery)
            built[m.name] = remote(m, _resilient(m, config, transport), credentials)
            if m.publishes and not rabbitmq:
                _pull_feed(m, config, runtime, child, discovery, engine, bus, credentials)
    if rabbitmq:
        _link_to_broker(config, runtime, outboxes, built, engine, inprocess_only=True)
    else:
        for m in MANIFESTS:
            for event_type in m.handles:
                bus.subscribe(
                    event_type,
                    built[m.name].handle_event,
                    consumer=m.name,
                    retry_on=m.retry_handling_on,
                )
    modes = {m.name: config.mode(m.name) for m in MANIFESTS}
    runtime.domains = Domains(
        **{name: TimedDomain(impl, name, modes[name]) for name, impl in built.items()},
        bus=bus,
        modes=modes,
    )
    runtime.closers.append(runtime.domains.close)
    return runtime


def monolith_credentials(config: Config) -> ServiceCredentials:
    """The monolith's credentials: the secret of every service it calls (each its own in
    production), and its own shared one for callers of its internals (``/api/health``)."""
    secrets = {
        m.name: config.internal_token(m.name)
        for m in MANIFESTS
        if config.mode(m.name) != "inprocess"
    }
    return ServiceCredentials({**secrets, MONOLITH_AUDIENCE: config.transport.internal_token})


def _redelivering_bus(config: Config, runtime: Monolith, engine: Engine) -> InlineEventBus:
    """The inline bus, setting refused events aside in the monolith's database, and the one job
    (per database, across the monolith's processes) that tries them again."""
    from blog.leader import Leader
    from blog.redelivery import (
        Redeliveries,
        RedeliveryJob,
        RedeliveryPolicy,
        redelivery_metadata,
    )

    events = config.events
    store = Redeliveries(
        engine,
        RedeliveryPolicy(
            events.redelivery_max_attempts,
            events.redelivery_initial_seconds,
            events.redelivery_max_seconds,
        ),
    )
    bus = InlineEventBus(store)
    runtime.redeliveries = store
    runtime.tables.append((engine, redelivery_metadata))
    job = RedeliveryJob(store, bus)
    key = f"redelivery {engine.url.render_as_string(hide_password=True)}"
    runtime.jobs.append(("redelivery", Leader(key, job.start, job.stop)))
    return bus


def _retain(
    config: Config,
    runtime: Runtime,
    engine: Engine,
    table: Table,
    horizon: Callable[[Any], int | None] | None = None,
) -> None:
    """Outbox retention (``blog.retention``) for ``table``, in one process per outbox."""
    from blog.leader import Leader
    from blog.retention import OutboxRetention

    events = config.events
    retention = OutboxRetention(
        engine,
        table,
        events.outbox_retention_seconds,
        batch_size=events.outbox_cleanup_batch,
        interval_seconds=events.outbox_cleanup_interval_seconds,
        horizon=horizon,
    )
    key = f"retention {engine.url.render_as_string(hide_password=True)} {table.name}"
    runtime.jobs.append(("relay", Leader(key, retention.start, retention.stop)))


def _publisher(
    m: DomainManifest[Any],
    bus: InlineEventBus,
    outboxes: dict[str, OutboxEventBus] | None,
    engine: Engine,
) -> EventPublisher:
    if not m.publishes:
        return UndeclaredEvents(m.name)
    if outboxes is None:
        return bus
    outbox = m.outbox()
    assert outbox is not None
    return outboxes.setdefault(m.name, OutboxEventBus(outbox, doorbell(engine, outbox)))


class UndeclaredEvents:
    """The publisher of a domain that declares no events: publishing is a bug, said loudly."""

    def __init__(self, domain: str) -> None:
        self._domain = domain

    def publish(self, session: Session, event: Event) -> None:
        raise RuntimeError(
            f"{self._domain} published {event.type}, but its manifest declares no events"
        )


class Discovery:
    """Where each extracted domain's instances are (``discovery.kind``), for the transports:
    one registry watch for the whole process, one resolver per domain for DNS."""

    def __init__(self, config: Config, runtime: Runtime) -> None:
        self._config = config
        self._runtime = runtime
        self._directory: RegistryDirectory | None = None

    def source(self, domain: str) -> InstanceSource:
        settings = self._config.discovery
        service = self._config.services[domain]
        if settings.kind == "registry":
            if self._directory is None:
                gateway = EtcdGateway(settings.registry.url)
                self._directory = RegistryDirectory(gateway, settings.registry.prefix)
                self._runtime.jobs.append(("discovery", self._directory))
            return self._directory.source(domain)
        if settings.kind == "dns":
            assert service.url is not None  # config validation guarantees it
            resolver = DnsInstances(
                service.url, settings.dns.nameserver, settings.dns.interval_seconds
            )
            self._runtime.jobs.append(("discovery", resolver))
            return resolver
        return StaticInstances(service.instance_urls())

    def balanced(
        self, m: DomainManifest[Any], source: InstanceSource, pool_size: int = 32
    ) -> BalancedTransport:
        settings = self._config.transport
        return BalancedTransport(
            m.name,
            source,
            lambda url: PooledHttpTransport(
                url,
                connect_timeout=settings.connect_timeout_seconds,
                read_timeout=settings.read_timeout_seconds,
                pool_size=pool_size,
                keep_alive=settings.keep_alive,
            ),
            policy=self._config.discovery.balancing,
            ejection_seconds=self._config.discovery.ejection_seconds,
            is_failure=failure_detector(m),
        )


def _service_transport(
    m: DomainManifest[Any],
    config: Config,
    child: ServiceRuntime | None,
    discovery: Discovery,
) -> Transport:
    """How calls reach the extracted domain: its own app in this process (``wire``), or its
    instances' servers over keep-alive sockets, spread by the balancer; with any configured
    faults in front."""
    service = config.services[m.name]
    inner: Transport
    if child is not None:
        inner = WireTransport(child.app, m.name)
    else:
        inner = discovery.balanced(m, discovery.source(m.name))
    if service.faults:
        inner = FaultInjectingTransport(
            inner, service.faults, read_timeout=config.transport.read_timeout_seconds
        )
    return inner


def _resilient(m: DomainManifest[Any], config: Config, inner: Transport) -> ResilientTransport:
    settings = config.transport
    breaker = CircuitBreaker(
        m.name,
        settings.breaker_reset_timeout_seconds,
        failure_rate=settings.breaker_failure_rate,
        window_seconds=settings.breaker_window_seconds,
        minimum_calls=settings.breaker_minimum_calls,
    )
    return ResilientTransport(
        inner, breaker, retries=settings.retries, is_failure=failure_detector(m)
    )


def _pull_feed(
    m: DomainManifest[Any],
    config: Config,
    runtime: Runtime,
    child: ServiceRuntime | None,
    discovery: Discovery,
    engine: Engine,
    bus: InlineEventBus,
    credentials: ServiceCredentials,
) -> None:
    from blog.feed import FeedPuller, cursor_metadata
    from blog.leader import Leader

    # Its own connection, with no breaker: background polling of a dead service must not hold
    # the request path's breaker open or steal its half-open trial.
    transport: Transport
    if child is not None:
        transport = WireTransport(child.app, m.name)
    else:
        # Any instance serves the feed: they share the service's database and its outbox.
        transport = discovery.balanced(m, discovery.source(m.name), pool_size=1)
    puller = FeedPuller(
        m.name,
        transport,
        credentials,
        functools.partial(bus.deliver, strict=True),
        engine,
        read_timeout=config.transport.read_timeout_seconds,
        reader=_reader_name(engine),
    )
    if (engine, cursor_metadata) not in runtime.tables:
        runtime.tables.append((engine, cursor_metadata))
    # One puller per feed across the monolith's processes, or each worker would handle every
    # event (and send every email) once more.
    key = f"feed {engine.url.render_as_string(hide_password=True)} {m.name}"
    runtime.jobs.append(("feed", Leader(key, puller.start, puller.stop)))


def _reader_name(engine: Engine) -> str:
    """How this monolith names itself to a feed: one name per monolith database (its processes
    share one cursor and elect one puller), so a feed counts it once."""
    url = engine.url.render_as_string(hide_password=True)
    return "monolith-" + hashlib.sha1(url.encode()).hexdigest()[:12]


def _link_to_broker(
    config: Config,
    runtime: Runtime,
    outboxes: Mapping[str, OutboxEventBus],
    built: Mapping[str, Any],
    engine: Engine,
    *,
    inprocess_only: bool,
) -> None:
    """With RabbitMQ: a relay per outbox written here, and a consumer per handling domain that
    runs here."""
    from blog.broker import EventConsumer, OutboxRelay, SingleRelay
    from blog.domains import consumer_queues

    events = config.events
    queues = consumer_queues(events.queue_prefix)
    for outbox in outboxes.values():
        relay = OutboxRelay(
            engine, outbox.table, events.rabbitmq_url, events.exchange, outbox, queues=queues
        )
        runtime.jobs.append(("relay", SingleRelay(relay)))
        _retain(config, runtime, engine, outbox.table)
    for name, impl in built.items():
        m = manifest(name)
        if not m.handles or (inprocess_only and config.mode(name) != "inprocess"):
            continue
        consumer = EventConsumer(
            events.rabbitmq_url,
            events.exchange,
            events.queue_prefix + m.queue,
            m.handles,
            _logged(name, impl.handle_event),
            events.prefetch,
            retry_errors=m.retry_handling_on,
        )
        runtime.jobs.append(("consumer", consumer))


def _logged(domain: str, handle: Callable[[Event], object]) -> Callable[[Event], object]:
    consumer_log = logging.getLogger(f"blog.{domain}.consumer")

    def handler(event: Event) -> object:
        started = time.perf_counter()
        handled = handle(event)
        consumer_log.info(
            "event %s (%s) %s in %.1f ms",
            event.id,
            event.type,
            "skipped: already processed" if handled is False else "handled",
            (time.perf_counter() - started) * 1000,
        )
        return handled

    return handler


# --------------------------------------------------------------------------- one service


@dataclass
class ServiceRuntime(Runtime):
    app: Flask = field(default_factory=lambda: Flask(__name__))
    service: Any = None
    engine: Engine | None = None
    credentials: ServiceCredentials | None = None
    """This service's own credential only: what it checks callers with."""


def build_service(domain: str, config: Config) -> ServiceRuntime:
    """One extracted domain: the same in-process implementation the monolith runs, on the
    service's own database, served through endpoints generated from its route table."""
    m = manifest(domain)
    configure_logging(config.log_level)
    engine = make_engine(config.service_database_url(domain))
    rabbitmq = config.events.broker == "rabbitmq"
    outbox_table = m.outbox()
    outbox = (
        OutboxEventBus(outbox_table, doorbell(engine, outbox_table))
        if outbox_table is not None
        else None
    )
    publisher: EventPublisher = outbox if outbox is not None else UndeclaredEvents(domain)
    credentials = ServiceCredentials({domain: config.internal_token(domain)})
    service = m.build(BuildContext(config, make_session_factory(engine), publisher))

    runtime = ServiceRuntime(
        service=service,
        engine=engine,
        tables=[(engine, m.metadata())],
        engines=[engine],
        credentials=credentials,
    )
    feed: dict[str, Any] = {}
    if outbox is not None and outbox_table is not None and not rabbitmq:
        from blog.feed import (
            READER_REFRESH_SECONDS,
            FeedReaders,
            FeedResource,
            feed_reader_metadata,
        )

        # A reader counts as alive while it pulled within the retention: rewrite its row well
        # within that, even when its position stands still.
        refresh = min(READER_REFRESH_SECONDS, config.events.outbox_retention_seconds / 4)
        readers = FeedReaders(engine, outbox_table.name, refresh)
        feed["/events"] = FeedResource(engine, outbox, config.server.workers > 1, readers)
        runtime.tables.append((engine, feed_reader_metadata))
        _retain(config, runtime, engine, outbox_table, horizon=readers.horizon)
    runtime.app = build_app(m, service, config, runtime.start, feed, credentials)
    if rabbitmq:
        _link_to_broker(
            config,
            runtime,
            {domain: outbox} if outbox is not None else {},
            {domain: service},
            engine,
            inprocess_only=False,
        )
    if config.discovery.kind == "registry":
        registry = config.discovery.registry
        registrar = Registrar(
            EtcdGateway(registry.url),
            registry.prefix,
            domain,
            advertised_url(config.services[domain].port),
            instance=os.environ.get("BLOG_INSTANCE_NAME"),
            ttl=registry.lease_seconds,
        )
        runtime.jobs.append(("registration", registrar))
    closer = getattr(service, "close", None)
    if closer is not None:
        runtime.closers.append(closer)
    runtime.app.extensions["blog.runtime"] = runtime
    return runtime


def runtime_of(app: Flask) -> Runtime:
    runtime: Runtime = app.extensions["blog.runtime"]
    return runtime


def service_app_factory(domain: str) -> Callable[..., Flask]:
    """``create_app(config=None)`` for ``extracted/<domain>``: config.yaml (or ``BLOG_CONFIG``),
    with optional overrides merged over it."""

    def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
        if not isinstance(config, Config):
            from blog.config import load_config

            config = load_config(overrides=config)
        return build_service(domain, config).app

    create_app.__doc__ = f"The {domain} service's Flask app."
    return create_app


def connect(domain: str, config: Config, url: str | None = None) -> Any:
    """A client of ``domain``'s extracted service at ``url`` (default: its configured one), with
    the same transport stack the monolith uses: for tools, tests and the lab."""
    m = manifest(domain)
    settings = config.services[m.name]
    if url is not None:
        config = dataclasses.replace(
            config,
            services={
                **config.services,
                m.name: dataclasses.replace(settings, mode="http", url=url, urls=[]),
            },
            discovery=dataclasses.replace(config.discovery, kind="static"),
        )
    transport = _service_transport(m, config, None, Discovery(config, Runtime()))
    credentials = ServiceCredentials({m.name: config.internal_token(m.name)})
    return remote(m, _resilient(m, config, transport), credentials)


def serve(app: Flask) -> Flask:
    """Start ``app`` for a server that imports it to serve it (a ``wsgi.py`` module): its
    tables, then its background work, in this process, which is the worker that serves. A
    server that forks imports it in each worker, after the fork."""
    runtime = runtime_of(app)
    runtime.start()
    # Stopped gracefully, the server's worker exits through the interpreter's shutdown: its
    # runtime then deregisters from the registry and stops its relays and consumers in order.
    # A worker that multiprocessing started (granian's) skips atexit, and runs its finalizers.
    atexit.register(runtime.close)
    multiprocessing.util.Finalize(None, runtime.close, exitpriority=10)
    log.info("pid %d serving %s", os.getpid(), app.name)
    return app
