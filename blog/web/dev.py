"""Developer conveniences: the dev mailbox (off in production)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response, jsonify

from blog.email import EmailMessage
from blog.errors import NotFound
from blog.web.context import config, domains
from blog.web.inputs import query_int
from blog.web.openapi import documented, integer

bp = Blueprint("dev", __name__)


@dataclass(frozen=True)
class Inbox:
    items: list[EmailMessage]


LIMIT = integer(
    "How many, newest first; any integer, clamped to 1 up to the server's maximum.",
    default=50,
    minimum=None,
    maximum=None,
)


@bp.get("/dev/inbox")
@documented(
    "The dev mailbox: the newest emails the blog sent (not served in production)",
    response=Inbox,
    query={"limit": LIMIT},
    errors=(400, 404, 503),
)
def inbox() -> Response:
    if config().env == "production":
        raise NotFound("the dev inbox is not served in production")
    messages = domains().email.list_inbox(limit=query_int("limit", 50))
    return jsonify({"items": messages})
