"""``/api/health``: each domain's health; its mode and its internals for those who may see them.

Anyone may ask whether each domain is up. How it runs (instance URLs, breaker state, injected
faults, the error a service gave) maps the inside of the system for an attacker, so in production
only a caller with the monolith's internal credential (a service JWT whose audience is
``monolith``, signed with ``BLOG_INTERNAL_TOKEN``) sees it; outside production everyone does, so a
user sees the topology they run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from flask import Blueprint, Response, current_app, jsonify, request

from blog.domains import NAMES
from blog.errors import DomainError
from blog.transport.credentials import MONOLITH_AUDIENCE, ServiceCredentials
from blog.web.context import config, domains
from blog.web.openapi import documented

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@dataclass(frozen=True)
class DomainHealth:
    """``up`` or ``down``; with the details (outside production, or with the internal
    credential), ``mode`` and ``ok`` or ``down``, and the rest depends on the domain and its
    mode."""

    status: str
    mode: str | None = None


@dataclass(frozen=True)
class Health:
    status: Literal["ok", "degraded"]
    domains: dict[str, DomainHealth]


def _details_allowed() -> bool:
    if config().env != "production":
        return True
    credentials: ServiceCredentials | None = getattr(
        current_app.extensions["blog.runtime"], "credentials", None
    )
    return credentials is not None and credentials.accepts(
        request.headers.get("Authorization"), MONOLITH_AUDIENCE
    )


@bp.get("/health")
@documented("Each domain's health (200 even when degraded)", response=Health)
def health() -> tuple[Response, int]:
    registry = domains()
    details = _details_allowed()
    report: dict[str, Any] = {}
    for name in NAMES:
        service = registry[name]
        try:
            state = dict(service.health())
        except DomainError as exc:
            state = {"status": "down", "error": exc.to_dict()}
        if details:
            report[name] = {"mode": registry.modes[name], **state}
        else:
            report[name] = {"status": "up" if state.get("status") == "ok" else "down"}
    healthy = all(entry.get("status") in ("ok", "up") for entry in report.values())
    body = {"status": "ok" if healthy else "degraded", "domains": report}
    # 200 even when degraded: the gateway itself serves, and a load balancer that pulled it out
    # of rotation because one domain is down would turn a partial outage into a full one.
    return jsonify(body), 200
