"""Developer conveniences: the dev mailbox (off in production)."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, jsonify

from blog.errors import NotFound
from blog.web.context import config, domains
from blog.web.inputs import query_int

bp = Blueprint("dev", __name__)


@bp.get("/dev/inbox")
def inbox() -> Response:
    if config().env == "production":
        raise NotFound("the dev inbox is not served in production")
    messages = domains().email.list_inbox(limit=query_int("limit", 50))
    return jsonify({"items": [asdict(m) for m in messages]})
