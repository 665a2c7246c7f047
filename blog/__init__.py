"""strangler-blog: a blog backend built as a modular monolith.

``create_app`` is the application factory (``flask --app blog run`` finds it); it reads the
configuration, asks the composition root for the domains and mounts the public API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from blog.config import Config, load_config

# Multipart framing around an upload (boundaries, part headers) on top of the image's own bytes.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the monolith: ``config`` is a ready Config, or overrides merged over config.yaml."""
    if not isinstance(config, Config):
        config = load_config(overrides=config)

    from blog import cli, wiring
    from blog.web import register_web
    from blog.web.observability import configure_logging

    configure_logging(config.log_level)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key,
        MAX_CONTENT_LENGTH=config.images.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        BLOG=config,
        TESTING=config.env == "testing",
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the DTOs' field order
    domains = wiring.build(config)
    app.extensions["blog.domains"] = domains
    register_web(app)
    cli.register(app)
    return app
