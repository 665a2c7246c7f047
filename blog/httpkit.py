"""What every HTTP face of the product shares: the gateway and each extracted service.

JSON errors (``{"error": {"code", "message"}}`` with the right status, never an HTML page), request
ids (taken from the caller when sane, so one id follows a request through every process), access
logging, ``Server-Timing``, and reading a JSON body. Neither ``blog.web`` nor ``extracted`` owns
it: both install it with :func:`install`.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from dataclasses import is_dataclass
from typing import Any

import msgspec
from flask import Flask, Request, Response, g, has_request_context, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.exceptions import HTTPException

from blog.errors import DomainError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from blog.timing import calls_var, server_timing
from blog.transport import REQUEST_ID_HEADER, request_id_var

log = logging.getLogger(__name__)
access_log = logging.getLogger("blog.access")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


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


class NoSessions(SessionInterface):
    """The API is stateless (bearer tokens at the edge, service JWTs inside): no request opens or
    saves a cookie session. Flask's default would build a signing serializer on every request,
    which costs more than the rest of a service's request hooks together."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        return None  # Flask then hands the request its null session, which is never saved

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


# --------------------------------------------------------------------------- logging


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or request_id_var.get() or "-"
        return True


def current_request_id() -> str | None:
    if has_request_context():
        request_id: str | None = g.get("request_id")
        return request_id
    return None


def configure_logging(level: str) -> None:
    """Install one handler on the ``blog`` logger (idempotent: app factories run many times)."""
    logger = logging.getLogger("blog")
    logger.setLevel(level)
    if not any(getattr(h, "_blog_handler", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        handler.addFilter(RequestIdFilter())
        handler._blog_handler = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


# --------------------------------------------------------------------------- request ids


def _install_request_ids(app: Flask) -> None:
    @app.before_request
    def _take_request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request_id_var.set(g.request_id)  # carried to every service call this request makes
        g.started_at = time.perf_counter()
        calls_var.set([])

    @app.after_request
    def _stamp_response(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
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


# --------------------------------------------------------------------------- errors


def error_response(status: int, code: str, message: str, **extra: object) -> Response:
    body: dict[str, object] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v})
    response = jsonify({"error": body})
    response.status_code = status
    return response


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError) -> Response:
        if exc.status >= 500:
            log.warning("domain error %s: %s", exc.code, exc.message)
        return error_response(exc.status, exc.code, exc.message, details=exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, exc.name.lower().replace(" ", "_"))
        response = error_response(status, code, exc.description or exc.name)
        headers = dict(exc.get_headers())
        for header in ("Allow", "WWW-Authenticate", "Retry-After"):
            if header in headers:
                response.headers[header] = headers[header]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "something went wrong on our side")


# --------------------------------------------------------------------------- input


def read_json(max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, or a 4xx that says what is wrong with it."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"JSON bodies are limited to {max_bytes} bytes")
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    if len(request.get_data(cache=True)) > max_bytes:
        raise PayloadTooLarge(f"JSON bodies are limited to {max_bytes} bytes")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser can follow: not JSON we can take
        body = None
    if body is None:
        raise InvalidInput("the body is not valid JSON", details={"code": "malformed_json"})
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    _refuse_lone_surrogates(body)
    return body


def _refuse_lone_surrogates(body: dict[str, Any]) -> None:
    """A ``\\ud800``-style escape parses into a str no text encoding can hold: every database
    write, log line or onward call that encodes it would fail (a 500 on the wire's client, where
    msgspec refuses to encode it). Refuse it here, once, for every reader of a JSON body.

    Iterative, because a body may nest as deep as the parser allows.
    """
    for name, value in body.items():
        pending: list[Any] = [name, value]
        while pending:
            item = pending.pop()
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidInput(
                        f"'{_printable(name)}' is not valid Unicode text (it holds a lone "
                        "surrogate escape)",
                        details={"field": _printable(name), "code": "invalid_unicode"},
                    ) from None
            elif isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)


def _printable(name: str) -> str:
    """``name`` as it can travel back in an error (the bad name itself may be the culprit)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")
