"""The composition root: the one module that reads ``services.<domain>.mode`` and names concrete
implementations. Everything else receives what is built here, so flipping a flag in config.yaml
is the only change an extraction needs.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine, MetaData, Table
from sqlalchemy.orm import Session, sessionmaker

from blog.auth import AuthService
from blog.config import DOMAINS, Config
from blog.db import create_tables, make_engine, make_session_factory
from blog.email import EmailService
from blog.events import (
    CONSUMER_QUEUES,
    EMAIL_QUEUE,
    EVENT_TYPES,
    POSTS_QUEUE,
    USER_RENAMED,
    EventBus,
    EventPublisher,
    InlineEventBus,
    OutboxEventBus,
    consumer_queues,
)
from blog.feed import FeedPuller
from blog.images import ImagesService
from blog.leader import Leader
from blog.payments import PaymentsService
from blog.posts import PostsService
from blog.timing import TimedDomain
from blog.transport import ServiceCredentials

log = logging.getLogger(__name__)

T = TypeVar("T")

PUBLISHERS = ("auth", "posts", "payments")
"""Domains that publish events: extracted, their events reach the monolith through a feed."""


@dataclass
class Domains:
    """Every domain behind its interface, plus the bus that links them."""

    auth: AuthService
    posts: PostsService
    images: ImagesService
    payments: PaymentsService
    email: EmailService
    bus: EventBus
    modes: dict[str, str]
    engine: Engine
    pullers: list[Leader] = field(default_factory=list)
    relays: list[Any] = field(default_factory=list)
    consumers: list[Any] = field(default_factory=list)
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)

    def gather(self, *calls: Callable[[], Any]) -> list[Any]:
        """Run independent calls, concurrently when any domain is remote.

        In-process calls take microseconds and a thread hand-off would cost more than it saves,
        so the all-in-process monolith runs them one after the other.
        """
        if self._executor is None or len(calls) < 2:
            return [call() for call in calls]
        # each call runs in a copy of this context, so the request id travels with it
        futures = [self._executor.submit(contextvars.copy_context().run, call) for call in calls]
        return [future.result() for future in futures]

    def close(self) -> None:
        for consumer in self.consumers:
            consumer.stop()
        for relay in self.relays:
            relay.stop()
        for puller in self.pullers:
            puller.stop()
        for name in DOMAINS:
            close = getattr(getattr(self, name), "close", None)
            if close is not None:
                close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()


def domain_metadata() -> dict[str, MetaData]:
    """Each domain's own tables (imported lazily: nothing heavy happens at import time)."""
    from blog.auth.models import metadata as auth_metadata
    from blog.email.models import metadata as email_metadata
    from blog.images.models import metadata as images_metadata
    from blog.payments.models import metadata as payments_metadata
    from blog.posts.models import metadata as posts_metadata

    return {
        "auth": auth_metadata,
        "posts": posts_metadata,
        "images": images_metadata,
        "payments": payments_metadata,
        "email": email_metadata,
    }


def _inprocess_factories(
    config: Config, sessions: sessionmaker[Session], bus_for: Callable[[str], EventPublisher]
) -> dict[str, Callable[[], Any]]:
    from blog.auth.service import InProcessAuthService
    from blog.email.service import InProcessEmailService
    from blog.email.transports import make_transport
    from blog.images.service import InProcessImagesService
    from blog.images.storage import make_storage
    from blog.payments.providers import make_provider
    from blog.payments.service import InProcessPaymentsService
    from blog.posts.service import InProcessPostsService

    def payments() -> Any:
        provider_name, provider = make_provider(config.payments)
        return InProcessPaymentsService(sessions, bus_for("payments"), provider, provider_name)

    return {
        "auth": lambda: InProcessAuthService(sessions, bus_for("auth"), config.auth),
        "posts": lambda: InProcessPostsService(sessions, bus_for("posts"), config.posts),
        "images": lambda: InProcessImagesService(
            sessions, config.images, make_storage(config.images)
        ),
        "payments": payments,
        "email": lambda: InProcessEmailService(
            sessions, make_transport(config.email), config.email.from_address
        ),
    }


HTTP_CLIENTS = {
    "auth": "blog.auth.client:HttpAuthClient",
    "posts": "blog.posts.client:HttpPostsClient",
    "images": "blog.images.client:HttpImagesClient",
    "payments": "blog.payments.client:HttpPaymentsClient",
    "email": "blog.email.client:HttpEmailClient",
}


def _http_client(domain: str, config: Config, credentials: ServiceCredentials) -> Any:
    module_name, class_name = HTTP_CLIENTS[domain].split(":")
    client_class = getattr(importlib.import_module(module_name), class_name)
    url = config.services[domain].url
    assert url is not None  # config validation guarantees it in http mode
    return client_class(url, config.transport, credentials)


def outbox_of(domain: str) -> Table:
    return importlib.import_module(f"blog.{domain}.models").outbox


def build(config: Config) -> Domains:
    """Build every domain where config.yaml says it runs, and link them with events.

    ``events.broker: inline`` — publishers hand events to the in-process bus after commit; an
    extracted publisher's events come back through its HTTP feed. ``rabbitmq`` — every
    in-process publisher writes its outbox and a relay sends it to the broker; consumers (email,
    posts' rename handler) read their own queues wherever their domain runs.
    """
    engine = make_engine(config.database_url)
    sessions = make_session_factory(engine)
    inline_bus = InlineEventBus()
    credentials = ServiceCredentials(config.transport.internal_token)
    modes = {domain: svc.mode for domain, svc in config.services.items()}
    metadata = domain_metadata()
    rabbitmq = config.events.broker == "rabbitmq"
    outbox_buses: dict[str, OutboxEventBus] = {}

    def bus_for(domain: str) -> EventPublisher:
        if not rabbitmq:
            return inline_bus
        return outbox_buses.setdefault(domain, OutboxEventBus(outbox_of(domain)))

    inprocess = _inprocess_factories(config, sessions, bus_for)
    built: dict[str, Any] = {}
    pullers: list[Leader] = []
    for domain in DOMAINS:
        if modes[domain] == "inprocess":
            # Only the domains that live here get tables here: after extraction the monolith
            # no longer touches an extracted domain's tables.
            create_tables(engine, metadata[domain])
            built[domain] = inprocess[domain]()
        else:
            built[domain] = _http_client(domain, config, credentials)
            if domain in PUBLISHERS and not rabbitmq:
                url = config.services[domain].url or ""
                puller = FeedPuller(
                    domain,
                    url,
                    config.transport,
                    credentials,
                    functools.partial(inline_bus.deliver, strict=True),
                    engine,
                )
                # one puller per feed across the monolith's processes, or each worker would
                # handle every event (and send every email) once more
                key = f"feed {engine.url.render_as_string(hide_password=True)} {domain}"
                pullers.append(Leader(key, puller.start, puller.stop))

    timed = {name: TimedDomain(impl, name, modes[name]) for name, impl in built.items()}
    remote = any(mode != "inprocess" for mode in modes.values())
    domains = Domains(
        **timed,
        bus=inline_bus,
        modes=modes,
        engine=engine,
        pullers=pullers,
        _executor=ThreadPoolExecutor(max_workers=8, thread_name_prefix="gather")
        if remote
        else None,
    )
    if rabbitmq:
        _start_broker_links(config, domains, built, outbox_buses, engine)
    else:
        inline_bus.subscribe(USER_RENAMED, domains.posts.handle_event, consumer="posts")
        for event_type in EVENT_TYPES:
            inline_bus.subscribe(event_type, domains.email.handle_event, consumer="email")
    for puller in pullers:
        puller.start()
    return domains


def _start_broker_links(
    config: Config,
    domains: Domains,
    built: dict[str, Any],
    outbox_buses: dict[str, OutboxEventBus],
    engine: Engine,
) -> None:
    from blog.broker import EventConsumer, OutboxRelay, SingleRelay
    from blog.email import UnknownRecipient

    events = config.events
    queues = consumer_queues(events.queue_prefix)
    for bus in outbox_buses.values():
        relay = OutboxRelay(
            engine, bus.table, events.rabbitmq_url, events.exchange, bus, queues=queues
        )
        domains.relays.append(SingleRelay(relay))
    if domains.modes["email"] == "inprocess":
        domains.consumers.append(
            EventConsumer(
                events.rabbitmq_url,
                events.exchange,
                events.queue_prefix + EMAIL_QUEUE,
                CONSUMER_QUEUES[EMAIL_QUEUE],
                built["email"].handle_event,
                events.prefetch,
                retry_errors=(UnknownRecipient,),
            )
        )
    if domains.modes["posts"] == "inprocess":
        domains.consumers.append(
            EventConsumer(
                events.rabbitmq_url,
                events.exchange,
                events.queue_prefix + POSTS_QUEUE,
                CONSUMER_QUEUES[POSTS_QUEUE],
                built["posts"].handle_event,
                events.prefetch,
            )
        )
    for relay in domains.relays:
        relay.start()
    for consumer in domains.consumers:
        consumer.start_in_thread()
