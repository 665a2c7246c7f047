"""Posts and comments, and the post detail page that aggregates three calls into one."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify

from blog.auth import UserNotFound
from blog.errors import Unavailable
from blog.posts import UNSET, Post
from blog.web.auth_guard import current_user, login_required
from blog.web.context import domains
from blog.web.inputs import field, json_body, query_int

log = logging.getLogger(__name__)

bp = Blueprint("posts", __name__)


@bp.get("/posts")
def list_posts() -> Response:
    page = domains().posts.list_posts(
        page=query_int("page", 1), per_page=query_int("per_page", 0) or None
    )
    return jsonify(asdict(page))


@bp.post("/posts")
@login_required
def create_post() -> tuple[Response, int]:
    body = json_body()
    user = current_user()
    post = domains().posts.create_post(
        author_id=user.id,
        author_name=user.name,
        title=field(body, "title", str),
        body=field(body, "body", str),
        image_url=field(body, "image_url", str, required=False),
    )
    return jsonify(asdict(post)), 201


def _author_of(post: Post) -> dict[str, Any]:
    """The author as auth knows them; the post's own copy of the name when auth cannot answer.

    This is the tutorial's data-duplication trade-off at work: with auth down (or the user gone)
    the page still renders, with a name that may be slightly stale.
    """
    try:
        user = domains().auth.get_user(post.author_id)
    except UserNotFound:
        return {"id": post.author_id, "name": post.author_name, "source": "post", "missing": True}
    except Unavailable as exc:
        log.warning("post %s: author from the post's copy (%s)", post.id, exc.message)
        return {"id": post.author_id, "name": post.author_name, "source": "post"}
    return {"id": user.id, "name": user.name, "source": "auth"}


@bp.get("/posts/<int:post_id>")
def post_detail(post_id: int) -> Response:
    posts = domains().posts
    post, comments = domains().gather(
        lambda: posts.get_post(post_id), lambda: posts.list_comments(post_id)
    )
    return jsonify(
        {
            "post": asdict(post),
            "author": _author_of(post),
            "comments": [asdict(c) for c in comments],
        }
    )


@bp.patch("/posts/<int:post_id>")
@login_required
def update_post(post_id: int) -> Response:
    body = json_body()
    post = domains().posts.update_post(
        post_id,
        current_user().id,
        title=field(body, "title", str, required=False),
        body=field(body, "body", str, required=False),
        image_url=field(body, "image_url", str, required=False) if "image_url" in body else UNSET,
    )
    return jsonify(asdict(post))


@bp.delete("/posts/<int:post_id>")
@login_required
def delete_post(post_id: int) -> tuple[str, int]:
    domains().posts.delete_post(post_id, current_user().id)
    return "", 204


@bp.get("/posts/<int:post_id>/comments")
def list_comments(post_id: int) -> Response:
    comments = domains().posts.list_comments(post_id)
    return jsonify({"items": [asdict(c) for c in comments]})


@bp.post("/posts/<int:post_id>/comments")
@login_required
def add_comment(post_id: int) -> tuple[Response, int]:
    body = json_body()
    user = current_user()
    comment = domains().posts.add_comment(
        post_id, author_id=user.id, author_name=user.name, body=field(body, "body", str)
    )
    return jsonify(asdict(comment)), 201
