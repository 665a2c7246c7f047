"""The auth service (the tutorial's port 3001), on its own database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from blog.config import Config
from extracted.common import create_service_app


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    from blog.auth.http import make_blueprint
    from blog.auth.models import metadata, outbox
    from blog.auth.service import InProcessAuthService

    return create_service_app(
        "auth",
        metadata=metadata,
        outbox=outbox,
        build_service=lambda cfg, sessions, bus: InProcessAuthService(sessions, bus, cfg.auth),
        make_blueprint=make_blueprint,
        config=config,
    )
