"""The shared HTTP rules on a Flask app: the public API's gateway (``blog.web``)."""

from __future__ import annotations

import logging
import time
from dataclasses import is_dataclass
from typing import Any, cast

import msgspec
from flask import Flask, Request, Response, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.response import Response as SansIOResponse

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
from blog.timing import calls_var, server_timing
from blog.transport import REQUEST_ID_HEADER, request_id_var

log = logging.getLogger("blog.httpkit")


def install(app: Flask) -> None:
    """JSON errors and request ids on ``app``, and no cookie session."""
    app.json = DtoJSONProvider(app)
    app.session_interface = NoSessions()
    _install_request_ids(app)
    _install_error_handlers(app)


class DtoJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with our frozen dataclasses (DTOs) turned into JSON by msgspec, field order
    kept: ``jsonify(post)`` then costs a fraction of ``jsonify(asdict(post))`` (``asdict``
    deep-copies every value), and writes the same bytes."""

    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        if is_dataclass(o) and not isinstance(o, type):
            return msgspec.to_builtins(o)
        return DefaultJSONProvider.default(o)

    def response(self, *args: Any, **kwargs: Any) -> SansIOResponse:
        """The body encoded by msgspec, compact, as Flask's would be outside debug mode.

        Why: the standard library's encoder took ~100 µs of a 20-post page, more than the rest
        of what the gateway adds to the query. msgspec writes UTF-8 where Flask would write
        ``\\u`` escapes; JSON reads both the same. Debug mode keeps Flask's indented output, and
        a string msgspec cannot write (a lone surrogate) falls back to it too.
        """
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = msgspec.json.encode(obj, enc_hook=self.default)
        except (UnicodeEncodeError, TypeError):
            return super().response(*args, **kwargs)
        response_class: Any = self._app.response_class  # typed as the sans-I/O base
        return cast(SansIOResponse, response_class(body + b"\n", mimetype=self.mimetype))


class NoSessions(SessionInterface):
    """The API is stateless (bearer tokens at the edge, service JWTs inside): no request opens or
    saves a cookie session. Flask's default would build a signing serializer on every request,
    which costs more than the rest of the request hooks together."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        return None  # Flask then hands the request its null session, which is never saved

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def _install_request_ids(app: Flask) -> None:
    # Server-Timing names every domain call a request made: the internal call graph, which is
    # for developers and the latency lab, not for the public in production (unless config says
    # so). Without it, the calls are not even recorded.
    settings = app.config.get("BLOG")
    send_timing = settings.server_timing_sent() if settings is not None else True

    @app.before_request
    def _take_request_id() -> None:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request_id_var.set(g.request_id)  # carried to every service call this request makes
        g.started_at = time.perf_counter()
        calls_var.set([] if send_timing else None)

    @app.after_request
    def _stamp_response(response: Response) -> Response:
        request_id = g.get("request_id") or request_id_from(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("started_at")
        elapsed = time.perf_counter() - started if started else 0.0
        calls = calls_var.get()
        if calls is not None:
            response.headers["Server-Timing"] = server_timing(calls, elapsed)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %s %.1fms",
                request.method,
                request.full_path.rstrip("?"),
                response.status_code,
                elapsed * 1000,
            )
        return response


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    response = jsonify(error_body(code, message, details))
    response.status_code = status
    return response


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError) -> Response:
        if exc.status >= 500:
            log.warning("domain error %s: %s", exc.code, exc.message)
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = error_response(
            status, http_error_code(status, exc.name), exc.description or exc.name
        )
        headers = dict(exc.get_headers())
        for header in PASSED_ON_HEADERS:
            if header in headers:
                response.headers[header] = headers[header]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "something went wrong on our side")


def read_json(max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, or a 4xx that says what is wrong with it."""
    check_json_request(request.content_type, request.content_length, max_bytes)
    return parse_json_object(request.get_data(cache=True), max_bytes)
