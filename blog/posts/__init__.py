"""The posts domain: posts and their comments.

``author_name`` is the tutorial's denormalised copy of the author's name: posts can be listed and
shown without asking auth, and ``user.renamed`` events keep the copy current (eventually).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blog.contract import Route
from blog.errors import Forbidden, NotFound, Unavailable
from blog.events import POST_CREATED, USER_RENAMED, Event
from blog.manifest import BuildContext, DomainManifest, HttpService


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
class PostWithComments:
    """A post and its comments, oldest first: the post page's data in one round trip."""

    post: Post
    comments: list[Comment]


@dataclass(frozen=True)
class PostPage:
    items: list[Post]
    page: int
    per_page: int
    total: int


class PostNotFound(NotFound):
    code = "post_not_found"


class NotPostAuthor(Forbidden):
    code = "not_post_author"


class PostsUnavailable(Unavailable):
    code = "posts_unavailable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__("posts", message)


ERRORS = (PostNotFound, NotPostAuthor)

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

    def get_post_with_comments(self, post_id: int) -> PostWithComments:
        """The post and its comments together: one call where the page needs both (one round
        trip, not two, once posts is extracted)."""

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


ROUTES = (
    # Not safe: a repeat after a lost answer would publish the post (or comment) twice.
    Route("create_post", "POST", "/posts", status=201),
    Route("list_posts", "GET", "/posts", safe=True, query={"page": "page", "per_page": "per_page"}),
    Route("get_post", "GET", "/posts/{post_id}", safe=True),
    Route("get_post_with_comments", "GET", "/posts/{post_id}/with-comments", safe=True),
    # Setting values: a repeat leaves the same state (updated_at moves only on a real change).
    Route("update_post", "PATCH", "/posts/{post_id}", safe=True),
    # Safe: if the first attempt deleted the post and only its answer was lost, the repeat
    # answers "no such post", which is true; the post is gone either way.
    Route("delete_post", "DELETE", "/posts/{post_id}", safe=True, query={"editor_id": "editor_id"}),
    Route("list_comments", "GET", "/comments", safe=True, query={"post_id": "post"}),
    Route("add_comment", "POST", "/comments", status=201),
    # The handler sets a name rather than applying a diff, so a redelivery is harmless.
    Route("handle_event", "POST", "/events", safe=True, body="event"),
)


def _build(context: BuildContext) -> PostsService:
    from blog.posts.service import InProcessPostsService

    return InProcessPostsService(context.sessions, context.publisher, context.config.posts)


MANIFEST = DomainManifest(
    name="posts",
    interface=PostsService,
    build=_build,
    models="blog.posts.models",
    errors=ERRORS,
    unavailable=PostsUnavailable,
    extraction=HttpService(port=3002, routes=ROUTES),
    publishes=(POST_CREATED,),
    handles=(USER_RENAMED,),
)
