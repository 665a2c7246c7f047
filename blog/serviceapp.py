"""An extracted service's HTTP app: the endpoints of its route table, plus ``/health``,
``/ping``, its API document and, with inline events, its event feed; under the shared HTTP rules
(``blog.httpkit.falcon``), wrapped in a Flask shell.

The shell serves no request itself: its WSGI callable is the Falcon app's. It is there so that
``flask --app extracted.<domain> run`` (the development server), Flask's test client and
``app.extensions`` work for a service as they do for the monolith.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import falcon
import msgspec
from flask import Flask

from blog.config import Config
from blog.contract import openapi_document, service_resources
from blog.httpkit.falcon import Public, ServiceMiddleware, send_json, service_app
from blog.manifest import DomainManifest
from blog.transport.credentials import ServiceCredentials

PONG = b"pong"


class _Ping(Public):
    """A trivial endpoint: the latency lab's floor for one round trip on this stack."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain"
        resp.data = PONG


class _Health(Public):
    def __init__(self, domain: str, service: Any) -> None:
        self._domain = domain
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, msgspec.json.encode({"service": self._domain, **self._service.health()}))


class _Document(Public):
    def __init__(self, manifest: DomainManifest[Any]) -> None:
        self._document = functools.cache(lambda: msgspec.json.encode(openapi_document(manifest)))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, self._document())


def _merged(resource: Any, extra: Any) -> Any:
    """One path served by two resources (posts' ``POST /events`` from its route table and the
    feed's ``GET /events``): Falcon takes one resource a path, so the responders join."""
    for name in dir(extra):
        if name.startswith("on_"):
            setattr(resource, name, getattr(extra, name))
    return resource


def build_app(
    manifest: DomainManifest[Any],
    service: Any,
    config: Config,
    start: Callable[[], None],
    extra_routes: dict[str, Any] | None = None,
    credentials: ServiceCredentials | None = None,
) -> Flask:
    """``credentials``: the service's own (default: built from its secret in ``config``)."""
    if credentials is None:
        credentials = ServiceCredentials({manifest.name: config.internal_token(manifest.name)})
    middleware = ServiceMiddleware(config, start, credentials, manifest.name)
    app = service_app(middleware)
    app.add_route("/ping", _Ping())
    app.add_route("/health", _Health(manifest.name, service))
    app.add_route("/openapi.json", _Document(manifest))
    routes = service_resources(manifest, service)
    for template, extra in (extra_routes or {}).items():
        routes[template] = _merged(routes[template], extra) if template in routes else extra
    for template, resource in routes.items():
        app.add_route(template, resource)
    shell = Flask(f"extracted.{manifest.name}")
    shell.config.update(BLOG=config, SECRET_KEY=config.secret_key)
    shell.wsgi_app = app  # type: ignore[method-assign, assignment]
    return shell
