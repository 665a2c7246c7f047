"""The images service (the tutorial's port 3003), on its own database.

It reads ``images.local_dir`` (or the S3 settings) from the same config as the monolith did, so
images stored before the extraction stay reachable after it. Images publishes no events, so there
is no outbox and no feed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from blog.config import Config
from extracted.common import create_service_app


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    from blog.images.http import make_blueprint
    from blog.images.models import metadata
    from blog.images.service import InProcessImagesService
    from blog.images.storage import make_storage

    return create_service_app(
        "images",
        metadata=metadata,
        outbox=None,
        build_service=lambda cfg, sessions, _bus: InProcessImagesService(
            sessions, cfg.images, make_storage(cfg.images)
        ),
        make_blueprint=make_blueprint,
        config=config,
    )
