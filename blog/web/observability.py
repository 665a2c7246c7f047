"""Request ids and logging: every log line and every response carries ``X-Request-ID``.

The id is taken from the caller when it looks sane (so a trace can cross the gateway and, later,
the extracted services) and made up otherwise.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, has_request_context, request

from blog.timing import calls_var, server_timing
from blog.transport import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"

access_log = logging.getLogger("blog.access")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or request_id_var.get() or "-"
        return True


def current_request_id() -> str | None:
    if has_request_context():
        return g.get("request_id")
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


def init_request_ids(app: Flask) -> None:
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
        elapsed_ms = elapsed * 1000
        calls = calls_var.get()
        if calls is not None:
            response.headers["Server-Timing"] = server_timing(calls, elapsed)
        access_log.info(
            "%s %s %s %.1fms",
            request.method,
            request.full_path.rstrip("?"),
            response.status_code,
            elapsed_ms,
        )
        return response
