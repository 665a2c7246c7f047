"""``/api/health``: each domain's mode and health, so a user sees the topology they run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from flask import Blueprint, Response, jsonify

from blog.domains import NAMES
from blog.errors import DomainError
from blog.web.context import domains
from blog.web.openapi import documented

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@dataclass(frozen=True)
class DomainHealth:
    """Where the domain runs and how it is; the rest depends on the domain and its mode."""

    mode: str
    status: str


@dataclass(frozen=True)
class Health:
    status: Literal["ok", "degraded"]
    domains: dict[str, DomainHealth]


@bp.get("/health")
@documented("Each domain's mode and health (200 even when degraded)", response=Health)
def health() -> tuple[Response, int]:
    registry = domains()
    report: dict[str, Any] = {}
    for name in NAMES:
        service = registry[name]
        try:
            state = dict(service.health())
        except DomainError as exc:
            state = {"status": "down", "error": exc.to_dict()}
        report[name] = {"mode": registry.modes[name], **state}
    healthy = all(entry.get("status") == "ok" for entry in report.values())
    body = {"status": "ok" if healthy else "degraded", "domains": report}
    # 200 even when degraded: the gateway itself serves, and a load balancer that pulled it out
    # of rotation because one domain is down would turn a partial outage into a full one.
    return jsonify(body), 200
