"""The posts interface over HTTP: the same methods, DTOs and errors as ``service.py``."""

from __future__ import annotations

from typing import Any

from blog.config import TransportConfig
from blog.events import Event
from blog.posts import (
    ERRORS,
    UNSET,
    Comment,
    Post,
    PostPage,
    PostsUnavailable,
)
from blog.posts.http import not_an_id
from blog.transport import ServiceClient, ServiceCredentials


def _wire_int(value: object, field: str) -> int:
    """An id bound for a path or query string, where its type would be lost.

    ``True`` would travel as ``1`` and ``"7"`` as ``7``; in-process both are refused, so they are
    refused here with the service's own error. Any real int goes through for the service to judge.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise not_an_id(field)
    return value


class HttpPostsClient:
    def __init__(
        self, base_url: str, transport: TransportConfig, credentials: ServiceCredentials
    ) -> None:
        self.transport = ServiceClient(
            "posts", base_url, transport, ERRORS, PostsUnavailable, credentials
        )

    def create_post(
        self,
        author_id: int,
        author_name: str,
        title: str,
        body: str,
        image_url: str | None = None,
    ) -> Post:
        # Not retried: a repeat after a lost response would publish the post twice.
        response = self.transport.call(
            "POST",
            "/posts",
            json={
                "title": title,
                "body": body,
                "author_id": author_id,
                "author_name": author_name,
                "image_url": image_url,
            },
            idempotent=False,
        )
        return Post(**response.json())

    def get_post(self, post_id: int) -> Post:
        path = f"/posts/{_wire_int(post_id, 'post_id')}"
        return Post(**self.transport.call("GET", path, idempotent=True).json())

    def list_posts(self, page: int = 1, per_page: int | None = None) -> PostPage:
        params = {"page": _wire_int(page, "page")}
        if per_page is not None:
            params["per_page"] = _wire_int(per_page, "per_page")
        data = self.transport.call("GET", "/posts", params=params, idempotent=True).json()
        return PostPage(**{**data, "items": [Post(**p) for p in data["items"]]})

    def update_post(
        self,
        post_id: int,
        editor_id: int,
        *,
        title: str | None = None,
        body: str | None = None,
        image_url: str | object | None = UNSET,
    ) -> Post:
        payload: dict[str, Any] = {"editor_id": editor_id, "title": title, "body": body}
        if image_url is not UNSET:  # an absent key is UNSET on the other end; null clears
            payload["image_url"] = image_url
        # Setting values is idempotent: repeating it leaves the same state (and updated_at
        # moves only when something actually changed).
        response = self.transport.call(
            "PATCH", f"/posts/{_wire_int(post_id, 'post_id')}", json=payload, idempotent=True
        )
        return Post(**response.json())

    def delete_post(self, post_id: int, editor_id: int) -> None:
        # Retried: if the first attempt deleted the post and only its answer was lost, the
        # repeat answers PostNotFound. The post is gone either way, which is what was asked,
        # and "no such post" is a true answer; failing with "unavailable" on a transient
        # error (the alternative) would report a failure for a delete that may well be done.
        self.transport.call(
            "DELETE",
            f"/posts/{_wire_int(post_id, 'post_id')}",
            params={"editor_id": _wire_int(editor_id, "editor_id")},
            idempotent=True,
        )

    def add_comment(self, post_id: int, author_id: int, author_name: str, body: str) -> Comment:
        # Not retried: a repeat after a lost response would post the comment twice.
        response = self.transport.call(
            "POST",
            "/comments",
            json={
                "post_id": post_id,
                "author_id": author_id,
                "author_name": author_name,
                "body": body,
            },
            idempotent=False,
        )
        return Comment(**response.json())

    def list_comments(self, post_id: int) -> list[Comment]:
        response = self.transport.call(
            "GET", "/comments", params={"post": _wire_int(post_id, "post_id")}, idempotent=True
        )
        return [Comment(**c) for c in response.json()["items"]]

    def handle_event(self, event: Event) -> None:
        # The handler sets a name rather than applying a diff, so a redelivery is harmless.
        self.transport.call("POST", "/events", json=event.to_dict(), idempotent=True)

    def health(self) -> dict[str, Any]:
        return self.transport.remote_health()

    def close(self) -> None:
        self.transport.close()
