"""The email service's read side over HTTP: its inbox (the dev mailbox) and nothing else.

Email's write side is the queue: it never takes commands, only events. The extracted worker
serves this blueprint so ``GET /api/dev/inbox`` keeps working after extraction.
"""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, jsonify, request

from blog.email import EmailService
from blog.errors import InvalidInput


def make_blueprint(service: EmailService) -> Blueprint:
    bp = Blueprint("email_service", __name__)

    @bp.get("/inbox")
    def inbox() -> Response:
        try:
            limit = int(request.args.get("limit", "50"))
        except ValueError:
            raise InvalidInput("limit must be an integer", details={"field": "limit"}) from None
        return jsonify({"items": [asdict(m) for m in service.list_inbox(limit=limit)]})

    return bp
