"""strangler-blog: a blog backend built as a modular monolith.

``create_app`` is the application factory (``flask --app blog run`` finds it): it reads the
configuration, asks the composition root for the domains and mounts the public API. Building it
has no side effects; the first request (or a server's start hook) starts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from blog.config import Config, load_config


def create_app(
    config: Config | Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> Flask:
    """Build the monolith: ``config`` is a ready Config, or overrides merged over config.yaml;
    ``overrides`` replaces domains by other implementations of their interfaces."""
    if not isinstance(config, Config):
        config = load_config(overrides=config)

    from blog import cli
    from blog.httpkit import configure_logging
    from blog.web import register_web
    from blog.wiring import MULTIPART_OVERHEAD_BYTES, build_monolith

    configure_logging(config.log_level)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key,
        MAX_CONTENT_LENGTH=config.images.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        BLOG=config,
        TESTING=config.env == "testing",
    )
    runtime = build_monolith(config, overrides)
    app.extensions["blog.runtime"] = runtime
    app.extensions["blog.domains"] = runtime.registry
    app.before_request(runtime.start)  # returns at once after the first request
    register_web(app)
    cli.register(app)
    return app
