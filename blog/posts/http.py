"""The posts interface served over HTTP (mounted by ``extracted/posts``); ``client.py`` is the
other end of the same wire format. Inputs pass through untouched so the service's own validation
produces exactly the errors the in-process call would.

A path or query string carries no types, so integers there are parsed here; what does not parse
is refused with the very error the service gives a non-integer id.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from blog.events import Event
from blog.posts import UNSET, PostsInvalidInput, PostsService
from blog.transport import read_json


def not_an_id(field: str) -> PostsInvalidInput:
    """The service's own refusal of a non-integer id (``service._id``), word for word."""
    return PostsInvalidInput(f"{field}: must be a positive integer", details={"field": field})


def _query_int(name: str, field: str, default: int | None = None) -> Any:
    """The query parameter as an int, ``default`` when absent (``Any``: the service decides
    whether a missing value is acceptable, exactly as for a ``None`` passed in-process)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise not_an_id(field) from None


def _event(raw: dict[str, Any]) -> Event:
    """The envelope ``{id, type, occurred_at, data}``, or 400 when it is not one."""
    try:
        event = Event.from_dict(raw)
    except KeyError:
        event = None
    if (
        event is None
        or not all(isinstance(v, str) for v in (event.id, event.type, event.occurred_at))
        or not isinstance(event.data, dict)
    ):
        raise PostsInvalidInput(
            "the body must be an event envelope {id, type, occurred_at, data}",
            details={"field": "event"},
        )
    return event


def make_blueprint(service: PostsService) -> Blueprint:
    bp = Blueprint("posts_service", __name__)

    def body() -> dict[str, Any]:
        return read_json(current_app.config["BLOG"].max_json_bytes)

    @bp.post("/posts")
    def create_post() -> tuple[Response, int]:
        data = body()
        post = service.create_post(
            data.get("author_id"),
            data.get("author_name"),
            data.get("title"),
            data.get("body"),
            data.get("image_url"),
        )
        return jsonify(asdict(post)), 201

    @bp.get("/posts")
    def list_posts() -> Response:
        page = _query_int("page", "page", 1)
        per_page = _query_int("per_page", "per_page")
        return jsonify(asdict(service.list_posts(page, per_page)))

    # signed: a negative id must reach the service (invalid input), not miss the route (404)
    @bp.get("/posts/<int(signed=True):post_id>")
    def get_post(post_id: int) -> Response:
        return jsonify(asdict(service.get_post(post_id)))

    @bp.patch("/posts/<int(signed=True):post_id>")
    def update_post(post_id: int) -> Response:
        data = body()
        post = service.update_post(
            post_id,
            data.get("editor_id"),
            title=data.get("title"),
            body=data.get("body"),
            # a missing key leaves the image alone; an explicit null removes it
            image_url=data.get("image_url", UNSET),
        )
        return jsonify(asdict(post))

    @bp.delete("/posts/<int(signed=True):post_id>")
    def delete_post(post_id: int) -> tuple[str, int]:
        service.delete_post(post_id, _query_int("editor_id", "editor_id"))
        return "", 204

    @bp.get("/comments")
    def list_comments() -> Response:
        comments = service.list_comments(_query_int("post", "post_id"))
        return jsonify({"items": [asdict(c) for c in comments]})

    @bp.post("/comments")
    def add_comment() -> tuple[Response, int]:
        data = body()
        comment = service.add_comment(
            data.get("post_id"), data.get("author_id"), data.get("author_name"), data.get("body")
        )
        return jsonify(asdict(comment)), 201

    @bp.post("/events")
    def handle_event() -> tuple[str, int]:
        service.handle_event(_event(body()))
        return "", 204

    return bp
