"""The public JSON API under ``/api``: the strangler facade.

It routes, aggregates and authenticates at the edge; it talks to domains only through their
interfaces, so it cannot tell (and must not care) whether a domain is in-process or remote.
"""

from __future__ import annotations

from flask import Flask

from blog.httpkit.flask import install


def register_web(app: Flask) -> None:
    from blog.web import accounts, dev, health, limits, media, openapi, payments, posts

    install(app)
    for module in (accounts, posts, media, payments, dev, health, openapi):
        app.register_blueprint(module.bp, url_prefix="/api")
    limits.install(app, app.config["BLOG"].rate_limits)
