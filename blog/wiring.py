"""The composition root: the one module that reads ``services.<domain>.mode`` and names concrete
implementations. Everything else receives what is built here, so flipping a flag in config.yaml
is the only change an extraction needs.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine, MetaData
from sqlalchemy.orm import Session, sessionmaker

from blog.auth import AuthService
from blog.config import DOMAINS, Config, ConfigError
from blog.db import create_tables, make_engine, make_session_factory
from blog.email import EmailService
from blog.events import EVENT_TYPES, USER_RENAMED, EventBus, InlineEventBus
from blog.feed import FeedPuller
from blog.images import ImagesService
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
    pullers: list[FeedPuller] = field(default_factory=list)
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
    config: Config, sessions: sessionmaker[Session], bus: InlineEventBus
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
        return InProcessPaymentsService(sessions, bus, provider, provider_name)

    return {
        "auth": lambda: InProcessAuthService(sessions, bus, config.auth),
        "posts": lambda: InProcessPostsService(sessions, bus, config.posts),
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
}


def _http_client(domain: str, config: Config, credentials: ServiceCredentials) -> Any:
    module_name, class_name = HTTP_CLIENTS[domain].split(":")
    client_class = getattr(importlib.import_module(module_name), class_name)
    url = config.services[domain].url
    assert url is not None  # config validation guarantees it in http mode
    return client_class(url, config.transport, credentials)


def build(config: Config) -> Domains:
    if config.events.broker != "inline":
        raise ConfigError(f"events.broker: {config.events.broker!r} is not built yet; use 'inline'")

    engine = make_engine(config.database_url)
    sessions = make_session_factory(engine)
    bus = InlineEventBus()
    credentials = ServiceCredentials(config.transport.internal_token)
    modes = {domain: svc.mode for domain, svc in config.services.items()}
    metadata = domain_metadata()
    inprocess = _inprocess_factories(config, sessions, bus)

    built: dict[str, Any] = {}
    pullers: list[FeedPuller] = []
    for domain in DOMAINS:
        if modes[domain] == "inprocess":
            # Only the domains that live here get tables here: after extraction the monolith
            # no longer touches an extracted domain's tables.
            create_tables(engine, metadata[domain])
            built[domain] = inprocess[domain]()
        elif modes[domain] == "http":
            built[domain] = _http_client(domain, config, credentials)
            if domain in PUBLISHERS:
                url = config.services[domain].url or ""
                pullers.append(
                    FeedPuller(domain, url, config.transport, credentials, bus.deliver, engine)
                )
        else:
            raise ConfigError(
                f"services.{domain}.mode: {modes[domain]!r} is not built yet for {domain}"
            )

    timed = {name: TimedDomain(impl, name, modes[name]) for name, impl in built.items()}
    remote = any(mode != "inprocess" for mode in modes.values())
    domains = Domains(
        **timed,
        bus=bus,
        modes=modes,
        engine=engine,
        pullers=pullers,
        _executor=ThreadPoolExecutor(max_workers=8, thread_name_prefix="gather")
        if remote
        else None,
    )
    bus.subscribe(USER_RENAMED, domains.posts.handle_event, consumer="posts")
    for event_type in EVENT_TYPES:
        bus.subscribe(event_type, domains.email.handle_event, consumer="email")
    for puller in pullers:
        puller.start()
    return domains
