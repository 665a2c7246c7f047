"""What every HTTP face of the product shares: the gateway (Flask, ``blog.httpkit.flask``) and
each extracted service (Falcon, ``blog.httpkit.falcon``).

The same rules on both: errors as ``{"error": {"code", "message"}}`` with the right status,
never an HTML page; request ids taken from the caller when sane, so one id follows a request
through every process; the same refusals of a JSON body; one logging set-up. What differs is
only how each framework is told.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from typing import Any

from blog.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from blog.transport import request_id_var

access_log = logging.getLogger("blog.access")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}
PASSED_ON_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")
"""Headers an HTTP error carries that its JSON form keeps (405's Allow, for one)."""


def request_id_from(incoming: str | None) -> str:
    """The caller's ``X-Request-ID`` when it looks sane, else a new one."""
    if incoming and _VALID_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


def http_error_code(status: int, name: str) -> str:
    return HTTP_CODES.get(status, name.lower().replace(" ", "_"))


# --------------------------------------------------------------------------- logging


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        return True


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


# --------------------------------------------------------------------------- input


def check_json_request(
    content_type: str | None, content_length: int | None, max_bytes: int
) -> None:
    """What can be refused before the body is read: its size as announced, its media type."""
    if content_length is not None and content_length > max_bytes:
        raise PayloadTooLarge(f"JSON bodies are limited to {max_bytes} bytes")
    media = (content_type or "").split(";")[0].strip().lower()
    if not (
        media == "application/json"
        or (media.startswith("application/") and media.endswith("+json"))
    ):
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")


def parse_json_object(data: bytes, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object, or a 4xx that says what is wrong with it."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"JSON bodies are limited to {max_bytes} bytes")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        body = None
    if body is None:
        raise InvalidInput("the body is not valid JSON", details={"code": "malformed_json"})
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    refuse_lone_surrogates(body)
    return body


def refuse_lone_surrogates(body: dict[str, Any]) -> None:
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
