"""The composition root: the one module that reads ``services.<domain>.mode`` and names concrete
implementations. Everything else receives what is built here, so flipping a flag in config.yaml
is the only change an extraction needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine, MetaData

from blog.auth import AuthService
from blog.config import Config, ConfigError
from blog.db import create_tables, make_engine, make_session_factory
from blog.email import EmailService
from blog.events import EVENT_TYPES, USER_RENAMED, EventBus, InlineEventBus
from blog.images import ImagesService
from blog.payments import PaymentsService
from blog.posts import PostsService

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)

    def gather(self, *calls: Callable[[], Any]) -> list[Any]:
        """Run independent calls, concurrently when any domain is remote.

        In-process calls take microseconds and a thread hand-off would cost more than it saves,
        so the all-in-process monolith runs them one after the other.
        """
        if self._executor is None or len(calls) < 2:
            return [call() for call in calls]
        futures = [self._executor.submit(call) for call in calls]
        return [future.result() for future in futures]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()


def _require_inprocess(config: Config, domain: str) -> None:
    mode = config.mode(domain)
    if mode != "inprocess":
        raise ConfigError(
            f"services.{domain}.mode: {mode!r} is not built yet; only 'inprocess' works in this "
            "version"
        )


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


def build(config: Config) -> Domains:
    from blog.auth.service import InProcessAuthService
    from blog.email.service import InProcessEmailService
    from blog.email.transports import make_transport
    from blog.images.service import InProcessImagesService
    from blog.images.storage import make_storage
    from blog.payments.providers import make_provider
    from blog.payments.service import InProcessPaymentsService
    from blog.posts.service import InProcessPostsService

    for domain in ("auth", "posts", "images", "payments", "email"):
        _require_inprocess(config, domain)
    if config.events.broker != "inline":
        raise ConfigError(f"events.broker: {config.events.broker!r} is not built yet; use 'inline'")

    engine = make_engine(config.database_url)
    for metadata in domain_metadata().values():
        create_tables(engine, metadata)
    sessions = make_session_factory(engine)
    bus = InlineEventBus()

    provider_name, provider = make_provider(config.payments)
    domains = Domains(
        auth=InProcessAuthService(sessions, bus, config.auth),
        posts=InProcessPostsService(sessions, bus, config.posts),
        images=InProcessImagesService(sessions, config.images, make_storage(config.images)),
        payments=InProcessPaymentsService(sessions, bus, provider, provider_name),
        email=InProcessEmailService(
            sessions, make_transport(config.email), config.email.from_address
        ),
        bus=bus,
        modes={domain: svc.mode for domain, svc in config.services.items()},
        engine=engine,
    )
    bus.subscribe(USER_RENAMED, domains.posts.handle_event, consumer="posts")
    for event_type in EVENT_TYPES:
        bus.subscribe(event_type, domains.email.handle_event, consumer="email")
    return domains
