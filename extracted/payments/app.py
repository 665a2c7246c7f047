"""The payments service (the tutorial's port 3004), on its own database.

It owns the provider (and so the Stripe key): after extraction the monolith never talks to the
provider, only to this service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from blog.config import Config
from blog.events import OutboxEventBus
from extracted.common import create_service_app


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    from blog.payments.http import make_blueprint
    from blog.payments.models import metadata, outbox
    from blog.payments.providers import make_provider
    from blog.payments.service import InProcessPaymentsService

    def build_service(
        cfg: Config, sessions: sessionmaker[Session], bus: OutboxEventBus | None
    ) -> InProcessPaymentsService:
        assert bus is not None  # an outbox is passed below, so the service gets its bus
        provider_name, provider = make_provider(cfg.payments)
        return InProcessPaymentsService(sessions, bus, provider, provider_name)

    return create_service_app(
        "payments",
        metadata=metadata,
        outbox=outbox,
        build_service=build_service,
        make_blueprint=make_blueprint,
        config=config,
    )
