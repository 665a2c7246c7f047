"""The shared HTTP rules on a Falcon app: every extracted service.

Why Falcon for the services and Flask for the gateway: the latency lab's ladder measured what
each layer of a hop costs, and Flask's own request handling (contexts, URL adapter, response
finalisation) was the largest share of an extracted hop, more than the loopback round trip itself;
Falcon does the same work for a few microseconds. The gateway keeps Flask, whose blueprints and
test client are what the public API is written in; a service is generated from its route table,
so nobody writes Falcon code by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import falcon
import msgspec

from blog.config import Config
from blog.errors import DomainError
from blog.httpkit import (
    PASSED_ON_HEADERS,
    access_log,
    check_json_request,
    error_body,
    http_error_code,
    parse_json_object,
    request_id_from,
)
from blog.transport import REQUEST_ID_HEADER, request_id_var
from blog.transport.credentials import ServiceCredentials

log = logging.getLogger("blog.httpkit")

JSON = "application/json"


class Public:
    """A resource whose every method needs no service credential (health, ping, documents)."""

    public_methods: frozenset[str] = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE", "PUT"})


class ServiceMiddleware:
    """Starts the runtime on the first request, takes the request id, checks the service
    credential (unless the resource says the method is public), stamps the response, logs it."""

    def __init__(
        self,
        config: Config,
        start: Callable[[], None],
        credentials: ServiceCredentials,
        audience: str,
    ) -> None:
        self._config = config
        self._start = start
        self._credentials = credentials
        self._audience = audience

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._start()  # returns at once after the first time
        request_id = request_id_from(req.get_header(REQUEST_ID_HEADER))
        req.context.request_id = request_id
        req.context.config = self._config
        req.context.started = time.perf_counter()
        request_id_var.set(request_id)

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        if resource is not None and req.method not in getattr(resource, "public_methods", ()):
            self._credentials.verify(req.get_header("Authorization"), audience=self._audience)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        request_id = req.context.get("request_id") or request_id_from(None)
        started = req.context.get("started")
        elapsed = time.perf_counter() - started if started else 0.0
        resp.set_header(REQUEST_ID_HEADER, request_id)
        resp.set_header("Server-Timing", f"total;dur={elapsed * 1000:.3f}")
        if access_log.isEnabledFor(logging.INFO):
            query = f"?{req.query_string}" if req.query_string else ""
            access_log.info(
                "%s %s%s %s %.1fms", req.method, req.path, query, resp.status, elapsed * 1000
            )


def _send_error(
    resp: falcon.Response,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> None:
    resp.status = status
    resp.content_type = JSON
    resp.data = msgspec.json.encode(error_body(code, message, details))


def _domain_error(req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any) -> None:
    assert isinstance(exc, DomainError)
    if exc.status >= 500:
        log.warning("domain error %s: %s", exc.code, exc.message)
    _send_error(resp, exc.status, exc.code, exc.message, exc.details)


def _http_error(req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any) -> None:
    assert isinstance(exc, falcon.HTTPError)
    status = exc.status_code
    title = exc.title or ""
    _send_error(resp, status, http_error_code(status, title), exc.description or title)
    headers = exc.headers or {}
    pairs: list[tuple[str, str]] = (
        list(headers.items()) if isinstance(headers, dict) else list(headers)  # type: ignore[arg-type]
    )
    for name, value in pairs:
        if name.title() in PASSED_ON_HEADERS:
            resp.set_header(name, value)


def _unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any) -> None:
    log.exception("unhandled error", exc_info=exc)
    _send_error(resp, 500, "internal_error", "something went wrong on our side")


ServiceApp = falcon.App[falcon.Request, falcon.Response]


def service_app(middleware: ServiceMiddleware) -> ServiceApp:
    """A Falcon app with the shared rules: JSON errors of every kind, no HTML, request ids."""
    app: ServiceApp = falcon.App(middleware=[middleware])
    app.req_options.strip_url_path_trailing_slash = False
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(DomainError, _domain_error)
    return app


def read_json(req: falcon.Request) -> dict[str, Any]:
    """The request's JSON object, or a 4xx that says what is wrong with it."""
    max_bytes = req.context.config.max_json_bytes
    check_json_request(req.content_type, req.content_length, max_bytes)
    return parse_json_object(req.bounded_stream.read(max_bytes + 1), max_bytes)


def send_json(resp: falcon.Response, payload: bytes, status: int = 200) -> None:
    resp.status = status
    resp.content_type = JSON
    resp.data = payload
