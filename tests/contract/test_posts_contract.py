"""The posts interface behaves the same in-process and over HTTP (a real gunicorn process).

One service per mode serves the whole module, so every test makes its own authors and posts
and compares relative order and deltas, never absolute counts.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest

from blog.errors import InvalidInput
from blog.events import Event
from blog.posts import (
    UNSET,
    Comment,
    NotPostAuthor,
    Post,
    PostNotFound,
    PostPage,
    PostWithComments,
)
from blog.transport.credentials import ServiceCredentials
from extracted.posts import create_app
from tests.support import deploy, eventually, service_overrides, unique_email

_user_ids = itertools.count(random.randrange(10**6, 10**9, 10**4))


def new_user() -> int:
    """An author id no other test in this module uses."""
    return next(_user_ids)


@pytest.fixture(scope="module", params=["inprocess", "wire", "http"])
def domains(request, tmp_path_factory):
    with deploy("posts", request.param, tmp_path_factory.mktemp("posts")) as built:
        yield built


@pytest.fixture
def posts(domains):
    return domains.posts


def _post(posts, author_id: int | None = None, **fields: Any) -> Post:
    values: dict[str, Any] = {"author_name": "Ada", "title": "A title", "body": "Some body"}
    values.update(fields)
    return posts.create_post(author_id or new_user(), **values)


def test_create_get_and_list(posts):
    author = new_user()
    post = posts.create_post(
        author, "Ada", "  Hello  ", "World\n\twith lines", image_url="/images/a.jpg"
    )
    assert isinstance(post, Post)
    assert (post.title, post.body, post.author_id, post.author_name, post.image_url) == (
        "Hello",
        "World\n\twith lines",
        author,
        "Ada",
        "/images/a.jpg",
    )
    assert post.created_at == post.updated_at
    assert posts.get_post(post.id) == post
    page = posts.list_posts()
    assert isinstance(page, PostPage)
    assert (page.page, page.per_page) == (1, 20)
    assert all(isinstance(item, Post) for item in page.items)
    assert page.items[0] == post


def test_list_is_newest_first_paginated_and_capped(posts):
    before = posts.list_posts(per_page=1).total
    ids = [_post(posts, title=f"post {i}").id for i in range(3)]
    first = posts.list_posts(page=1, per_page=2)
    assert [p.id for p in first.items] == ids[::-1][:2]
    assert first.total == before + 3
    second = posts.list_posts(page=2, per_page=2)
    assert second.items[0].id == ids[0]
    assert (second.page, second.per_page) == (2, 2)
    capped = posts.list_posts(per_page=10**6)
    assert capped.per_page == 100
    beyond = posts.list_posts(page=10**6, per_page=100)
    assert (beyond.items, beyond.total) == ([], before + 3)


def test_update_by_the_author(posts):
    post = _post(posts, image_url="https://cdn.example.com/a.jpg")
    same = posts.update_post(post.id, post.author_id, title="A title")
    assert same == post  # nothing changed: updated_at stays
    retitled = posts.update_post(post.id, post.author_id, title="Better", body="New body")
    assert (retitled.title, retitled.body) == ("Better", "New body")
    assert retitled.image_url == post.image_url  # image_url left UNSET: kept
    assert retitled.updated_at >= post.updated_at
    kept = posts.update_post(post.id, post.author_id, image_url=UNSET)
    assert kept.image_url == post.image_url
    cleared = posts.update_post(post.id, post.author_id, image_url=None)
    assert cleared.image_url is None
    assert posts.get_post(post.id) == cleared
    replaced = posts.update_post(post.id, post.author_id, image_url="/images/b.jpg")
    assert replaced.image_url == "/images/b.jpg"


def test_only_the_author_edits_or_deletes(posts):
    post = _post(posts)
    other = new_user()
    with pytest.raises(NotPostAuthor) as excinfo:
        posts.update_post(post.id, other, title="pwned")
    assert excinfo.value.status == 403
    with pytest.raises(NotPostAuthor):
        posts.update_post(post.id, other, image_url=None)
    with pytest.raises(NotPostAuthor):
        posts.delete_post(post.id, other)
    assert posts.get_post(post.id) == post


def test_delete_removes_the_post_and_its_comments(posts):
    post = _post(posts)
    posts.add_comment(post.id, new_user(), "Bob", "Nice!")
    before = posts.list_posts(per_page=1).total
    assert posts.delete_post(post.id, post.author_id) is None
    assert posts.list_posts(per_page=1).total == before - 1
    for call in (
        lambda: posts.get_post(post.id),
        lambda: posts.list_comments(post.id),
        lambda: posts.delete_post(post.id, post.author_id),
        lambda: posts.update_post(post.id, post.author_id, title="x"),
        lambda: posts.add_comment(post.id, post.author_id, "Ada", "x"),
    ):
        with pytest.raises(PostNotFound) as excinfo:
            call()
        assert excinfo.value.status == 404


def test_comments(posts):
    post = _post(posts)
    bob, eve = new_user(), new_user()
    first = posts.add_comment(post.id, bob, "Bob", "Nice!")
    assert isinstance(first, Comment)
    assert (first.post_id, first.author_id, first.author_name, first.body) == (
        post.id,
        bob,
        "Bob",
        "Nice!",
    )
    second = posts.add_comment(post.id, eve, "Eve", "line one\nline two")
    listed = posts.list_comments(post.id)
    assert listed == [first, second]
    assert posts.list_comments(_post(posts).id) == []
    with pytest.raises(PostNotFound):
        posts.add_comment(10**12, bob, "Bob", "x")
    with pytest.raises(PostNotFound):
        posts.list_comments(10**12)


def test_a_post_with_its_comments_in_one_call(posts):
    post = _post(posts)
    comment = posts.add_comment(post.id, new_user(), "Bob", "First!")
    thread = posts.get_post_with_comments(post.id)
    assert isinstance(thread, PostWithComments)
    assert thread == PostWithComments(posts.get_post(post.id), [comment])
    assert posts.get_post_with_comments(_post(posts).id).comments == []
    with pytest.raises(PostNotFound):
        posts.get_post_with_comments(10**12)
    with pytest.raises(InvalidInput, match="post_id: must be a positive integer"):
        posts.get_post_with_comments("1")


INVALID: list[tuple[str, Callable[[Any], Any], str]] = [
    ("empty title", lambda p: p.create_post(1, "Ada", "  ", "b"), "title"),
    ("too-long title", lambda p: p.create_post(1, "Ada", "t" * 201, "b"), "title"),
    ("control char", lambda p: p.create_post(1, "Ada", "a\x00b", "b"), "title"),
    ("title not str", lambda p: p.create_post(1, "Ada", 5, "b"), "title"),
    ("bool author", lambda p: p.create_post(True, "Ada", "t", "b"), "author_id"),
    ("str author", lambda p: p.create_post("1", "Ada", "t", "b"), "author_id"),
    ("zero author", lambda p: p.create_post(0, "Ada", "t", "b"), "author_id"),
    ("empty author_name", lambda p: p.create_post(1, "", "t", "b"), "author_name"),
    ("body not str", lambda p: p.create_post(1, "Ada", "t", 3), "body"),
    ("js image", lambda p: p.create_post(1, "Ada", "t", "b", "javascript:x()"), "image_url"),
    ("int image", lambda p: p.create_post(1, "Ada", "t", "b", 3), "image_url"),
    ("zero id", lambda p: p.get_post(0), "post_id"),
    ("negative id", lambda p: p.get_post(-1), "post_id"),
    ("huge id", lambda p: p.get_post(2**63), "post_id"),
    ("bool id", lambda p: p.get_post(True), "post_id"),
    ("str id", lambda p: p.get_post("1"), "post_id"),
    ("zero page", lambda p: p.list_posts(page=0), "page"),
    ("str page", lambda p: p.list_posts(page="2"), "page"),
    ("negative per_page", lambda p: p.list_posts(per_page=-1), "per_page"),
    ("bool per_page", lambda p: p.list_posts(per_page=True), "per_page"),
    ("update empty title", lambda p: p.update_post(1, 1, title=""), "title"),
    ("update bool editor", lambda p: p.update_post(1, True, title="t"), "editor_id"),
    ("update bad image", lambda p: p.update_post(1, 1, image_url="//evil"), "image_url"),
    ("update negative id", lambda p: p.update_post(-5, 1), "post_id"),
    ("delete str editor", lambda p: p.delete_post(1, "1"), "editor_id"),
    ("delete zero editor", lambda p: p.delete_post(1, 0), "editor_id"),
    ("comment bool post", lambda p: p.add_comment(True, 1, "Ada", "x"), "post_id"),
    ("comment empty body", lambda p: p.add_comment(1, 1, "Ada", " "), "body"),
    ("comment too long", lambda p: p.add_comment(1, 1, "Ada", "x" * 5001), "body"),
    ("comments zero post", lambda p: p.list_comments(0), "post_id"),
    ("comments no post", lambda p: p.list_comments(None), "post_id"),
]


@pytest.mark.parametrize(("case", "call", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_input_is_the_same_error_in_both_modes(posts, case, call, field):
    with pytest.raises(InvalidInput) as excinfo:
        call(posts)
    assert type(excinfo.value) is InvalidInput, case
    assert excinfo.value.status == 400
    assert excinfo.value.details == {"field": field}
    assert excinfo.value.message.startswith(f"{field}: ")


def test_user_renamed_updates_the_denormalised_names(posts):
    author, reader = new_user(), new_user()
    post = _post(posts, author, author_name="Ada")
    own = posts.add_comment(post.id, author, "Ada", "my own post")
    theirs = posts.add_comment(post.id, reader, "Bob", "hi")
    renamed = Event("user.renamed", {"user_id": author, "name": "Ada Lovelace", "old_name": "Ada"})
    posts.handle_event(renamed)
    posts.handle_event(renamed)  # a redelivery is harmless
    assert posts.get_post(post.id).author_name == "Ada Lovelace"
    names = {c.id: c.author_name for c in posts.list_comments(post.id)}
    assert names == {own.id: "Ada Lovelace", theirs.id: "Bob"}
    # other event types and malformed payloads are ignored, not errors
    posts.handle_event(Event("post.created", {"post_id": post.id}))
    posts.handle_event(Event("user.renamed", {"user_id": True, "name": "x"}))
    posts.handle_event(Event("user.renamed", {"user_id": author, "name": ""}))
    assert posts.get_post(post.id).author_name == "Ada Lovelace"


def test_post_created_reaches_the_monolith_inbox(domains):
    author, email = new_user(), unique_email()
    # email only writes to users it learnt about from user.registered
    domains.bus.deliver(
        Event("user.registered", {"user_id": author, "email": email, "name": "Ada"})
    )
    title = f"Hello inbox {author}"
    domains.posts.create_post(author, "Ada", title, "body")

    def confirmed() -> None:
        assert any(
            m.to == email and title in m.subject for m in domains.email.list_inbox(limit=200)
        )

    eventually(confirmed)


def test_health(posts):
    health = posts.health()
    assert health["status"] == "ok"
    assert health["database"] is True


def test_the_wire_refuses_what_the_client_never_sends(tmp_path):
    """Raw requests a caller other than ``client.py`` might make: the same JSON errors."""
    app = create_app(service_overrides("posts", tmp_path))
    config = app.config["BLOG"]
    token = ServiceCredentials(config.transport.internal_token).token_for("posts")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"

    for url, field in [
        ("/posts?page=abc", "page"),
        ("/posts?per_page=1.5", "per_page"),
        ("/comments", "post_id"),
        ("/comments?post=x", "post_id"),
    ]:
        response = client.get(url)
        assert response.status_code == 400, url
        assert response.get_json()["error"]["code"] == "invalid_input"
        assert response.get_json()["error"]["details"] == {"field": field}
    assert client.delete("/posts/1").get_json()["error"]["details"] == {"field": "editor_id"}
    for envelope in [
        {},
        {"id": "1", "type": "user.renamed", "occurred_at": "t", "data": []},
        {"id": 1, "type": "user.renamed", "occurred_at": "t", "data": {}},
    ]:
        response = client.post("/events", json=envelope)
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "invalid_input"
    assert app.test_client().get("/posts").status_code == 401  # no service credential
    app.extensions["blog.runtime"].close()


def test_the_event_feed_refuses_positions_the_database_cannot_hold_and_endless_waits(tmp_path):
    """``after`` past the outbox's int4 ids made PostgreSQL refuse the query (a 500), and
    ``wait=nan`` parked the request for ever: both are 400s now."""
    app = create_app(service_overrides("posts", tmp_path))
    config = app.config["BLOG"]
    token = ServiceCredentials(config.transport.internal_token).token_for("posts")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    for query in [
        "after=-1",
        "after=2147483648",
        "after=99999999999999999999",
        "wait=nan",
        "wait=inf",
        "wait=-inf",
        "after=x",
        "limit=1e3",
    ]:
        response = client.get(f"/events?{query}")
        assert response.status_code == 400, query
        assert response.get_json()["error"]["code"] == "invalid_input", query
    response = client.get("/events?after=2147483647&wait=0")
    assert response.status_code == 200
    assert response.get_json() == {"events": [], "last_position": 2147483647}
    app.extensions["blog.runtime"].close()
