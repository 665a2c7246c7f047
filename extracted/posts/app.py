"""The posts service (the tutorial's port 3002), on its own database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from blog.config import Config
from extracted.common import create_service_app


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    from blog.posts.http import make_blueprint
    from blog.posts.models import metadata, outbox
    from blog.posts.service import InProcessPostsService

    return create_service_app(
        "posts",
        metadata=metadata,
        outbox=outbox,
        build_service=lambda cfg, sessions, bus: InProcessPostsService(sessions, bus, cfg.posts),
        make_blueprint=make_blueprint,
        config=config,
    )
