"""The posts domain: posts and their comments.

``author_name`` is the tutorial's denormalised copy of the author's name: posts can be listed and
shown without asking auth, and ``user.renamed`` events keep the copy current (eventually).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blog.errors import Forbidden, InvalidInput, NotFound, Unavailable
from blog.events import Event


@dataclass(frozen=True)
class Post:
    id: int
    title: str
    body: str
    author_id: int
    author_name: str
    image_url: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class Comment:
    id: int
    post_id: int
    author_id: int
    author_name: str
    body: str
    created_at: str


@dataclass(frozen=True)
class PostPage:
    items: list[Post]
    page: int
    per_page: int
    total: int


class PostsInvalidInput(InvalidInput):
    code = "invalid_input"


class PostNotFound(NotFound):
    code = "post_not_found"


class NotPostAuthor(Forbidden):
    code = "not_post_author"


class PostsUnavailable(Unavailable):
    code = "posts_unavailable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__("posts", message)


ERRORS = (PostsInvalidInput, PostNotFound, NotPostAuthor)

UNSET: object = object()
"""Marks an update field the caller did not send (``None`` is a real value for image_url)."""


class PostsService(Protocol):
    def create_post(
        self,
        author_id: int,
        author_name: str,
        title: str,
        body: str,
        image_url: str | None = None,
    ) -> Post: ...

    def get_post(self, post_id: int) -> Post: ...

    def list_posts(self, page: int = 1, per_page: int | None = None) -> PostPage: ...

    def update_post(
        self,
        post_id: int,
        editor_id: int,
        *,
        title: str | None = None,
        body: str | None = None,
        image_url: str | object | None = UNSET,
    ) -> Post: ...

    def delete_post(self, post_id: int, editor_id: int) -> None: ...

    def add_comment(self, post_id: int, author_id: int, author_name: str, body: str) -> Comment: ...

    def list_comments(self, post_id: int) -> list[Comment]: ...

    def handle_event(self, event: Event) -> None:
        """Keep the denormalised author names current (``user.renamed``)."""

    def health(self) -> dict[str, object]: ...
