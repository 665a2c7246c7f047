"""Posts and comments, and the post detail page that aggregates three calls into one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from flask import Blueprint, Response, jsonify
from msgspec import Meta

from blog.auth import UserNotFound
from blog.errors import Unavailable
from blog.posts import UNSET, Comment, Post, PostNotFound, PostPage
from blog.web.auth_guard import current_user, login_required
from blog.web.context import domains
from blog.web.inputs import field, json_body, path_id, query_int
from blog.web.openapi import documented, integer

log = logging.getLogger(__name__)

bp = Blueprint("posts", __name__)


# Only what the schema can say exactly: the domain's rules beyond it (not blank once trimmed, no
# control characters, a length limit after trimming) answer 400 naming the field.
Title = Annotated[str, Meta(min_length=1, description="One line.", examples=["Hello, world"])]
Body = Annotated[str, Meta(min_length=1, examples=["The first post."])]
ImageUrl = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=2048,
        description="A path starting with '/' (such as an upload's `url`) or an http(s) URL.",
        examples=["/api/images/0123456789abcdef0123456789abcdef.jpg"],
    ),
]


@dataclass(frozen=True)
class NewPost:
    title: Title
    body: Body
    image_url: ImageUrl | None = None


@dataclass(frozen=True)
class PostChanges:
    """Only the fields sent change; ``image_url: null`` removes the image."""

    title: Title | None = None
    body: Body | None = None
    image_url: ImageUrl | None = None


@dataclass(frozen=True)
class NewComment:
    body: Body


@dataclass(frozen=True)
class Author:
    """The author as auth knows them (``source: auth``), or the post's own copy of the name when
    auth cannot answer (``source: post``; ``missing`` when the account is gone)."""

    id: int
    name: str
    source: Literal["auth", "post"]
    missing: bool = False


@dataclass(frozen=True)
class PostDetail:
    post: Post
    author: Author
    comments: list[Comment]


@dataclass(frozen=True)
class CommentList:
    items: list[Comment]


PAGE = integer("The page, from 1.", default=1)
PER_PAGE = integer(
    "Posts per page; 0 (or none) is the server's default, more than its maximum is capped to it.",
    minimum=0,
)


def _post_id(post_id: int) -> int:
    return path_id(post_id, "post_id", PostNotFound, "post")


@bp.get("/posts")
@documented(
    "The newest posts first, a page at a time",
    response=PostPage,
    query={"page": PAGE, "per_page": PER_PAGE},
    errors=(400, 503),
)
def list_posts() -> Response:
    page = domains().posts.list_posts(
        page=query_int("page", 1), per_page=query_int("per_page", 0) or None
    )
    return jsonify(page)


@bp.post("/posts")
@login_required
@documented("Publish a post", body=NewPost, response=Post, status=201, errors=(503,))
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
    return jsonify(post), 201


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
@documented("A post with its author and comments", response=PostDetail, errors=(400, 503))
def post_detail(post_id: int) -> Response:
    """The critical path is two calls in a row: posts (the post with its comments, one round
    trip), then auth (the author, whose id only the post knows)."""
    thread = domains().posts.get_post_with_comments(_post_id(post_id))
    return jsonify(
        {
            "post": thread.post,
            "author": _author_of(thread.post),
            "comments": thread.comments,
        }
    )


@bp.patch("/posts/<int:post_id>")
@login_required
@documented("Edit one's own post", body=PostChanges, response=Post, errors=(403, 503))
def update_post(post_id: int) -> Response:
    post_id = _post_id(post_id)
    body = json_body()
    post = domains().posts.update_post(
        post_id,
        current_user().id,
        title=field(body, "title", str, required=False),
        body=field(body, "body", str, required=False),
        image_url=field(body, "image_url", str, required=False) if "image_url" in body else UNSET,
    )
    return jsonify(post)


@bp.delete("/posts/<int:post_id>")
@login_required
@documented("Delete one's own post", status=204, errors=(400, 403, 503))
def delete_post(post_id: int) -> tuple[str, int]:
    domains().posts.delete_post(_post_id(post_id), current_user().id)
    return "", 204


@bp.get("/posts/<int:post_id>/comments")
@documented("A post's comments, oldest first", response=CommentList, errors=(400, 503))
def list_comments(post_id: int) -> Response:
    comments = domains().posts.list_comments(_post_id(post_id))
    return jsonify({"items": comments})


@bp.post("/posts/<int:post_id>/comments")
@login_required
@documented("Comment on a post", body=NewComment, response=Comment, status=201, errors=(503,))
def add_comment(post_id: int) -> tuple[Response, int]:
    post_id = _post_id(post_id)
    body = json_body()
    user = current_user()
    comment = domains().posts.add_comment(
        post_id, author_id=user.id, author_name=user.name, body=field(body, "body", str)
    )
    return jsonify(comment), 201
