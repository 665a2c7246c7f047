"""Access to what the composition root built, from inside a request or CLI command."""

from __future__ import annotations

from flask import current_app

from blog.config import Config
from blog.wiring import Domains


def domains() -> Domains:
    registry: Domains = current_app.extensions["blog.domains"]
    return registry


def config() -> Config:
    settings: Config = current_app.config["BLOG"]
    return settings
