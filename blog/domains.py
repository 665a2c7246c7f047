"""The one list of domains, read from each domain's own declaration (its ``MANIFEST``)."""

from __future__ import annotations

from typing import Any

from blog import auth, email, images, payments, posts
from blog.manifest import DomainManifest, HttpService

MANIFESTS: tuple[DomainManifest[Any], ...] = (
    auth.MANIFEST,
    posts.MANIFEST,
    images.MANIFEST,
    payments.MANIFEST,
    email.MANIFEST,
)
BY_NAME: dict[str, DomainManifest[Any]] = {m.name: m for m in MANIFESTS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
HTTP_SERVICES: tuple[str, ...] = tuple(
    m.name for m in MANIFESTS if isinstance(m.extraction, HttpService)
)
"""Domains extracted as HTTP services (the others are queue consumers)."""
PUBLISHERS: tuple[str, ...] = tuple(m.name for m in MANIFESTS if m.publishes)


def manifest(name: str) -> DomainManifest[Any]:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no domain {name!r}; the domains are {', '.join(NAMES)}") from None


def consumer_queues(prefix: str = "") -> dict[str, tuple[str, ...]]:
    """Every consumer's queue and the event types it is bound to."""
    return {prefix + m.queue: m.handles for m in MANIFESTS if m.handles}
