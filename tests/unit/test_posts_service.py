"""The in-process posts service against a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from blog.config import PostsConfig
from blog.db import make_engine, make_session_factory
from blog.errors import InvalidInput
from blog.events import POST_CREATED, USER_REGISTERED, USER_RENAMED, Event, InlineEventBus
from blog.posts import (
    UNSET,
    Comment,
    NotPostAuthor,
    Post,
    PostNotFound,
)
from blog.posts import service as service_module
from blog.posts.models import CommentRow, PostRow, metadata
from blog.posts.service import InProcessPostsService

ALICE, BOB = 1, 2
DROP = "'); DROP TABLE posts; --"


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def bus(events: list[Event]) -> InlineEventBus:
    bus = InlineEventBus()
    bus.subscribe(POST_CREATED, events.append, consumer="test")
    return bus


@pytest.fixture
def service(engine, bus) -> InProcessPostsService:
    config = PostsConfig(per_page_default=3, per_page_max=5)
    return InProcessPostsService(make_session_factory(engine), bus, config)


@pytest.fixture
def post(service: InProcessPostsService) -> Post:
    return service.create_post(ALICE, "Alice", "Hello", "First post", "/images/a.jpg")


def _count(engine, model) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


# --------------------------------------------------------------------------- create / get


def test_create_post_returns_a_dto_and_publishes(service, events):
    post = service.create_post(ALICE, " Alice ", "  Hello  ", "Body\n\twith lines\n", None)
    assert isinstance(post, Post)
    assert (post.title, post.body, post.author_id, post.author_name, post.image_url) == (
        "Hello",
        "Body\n\twith lines\n",
        ALICE,
        "Alice",
        None,
    )
    assert post.created_at == post.updated_at
    assert post.created_at.endswith("+00:00")
    assert [(e.type, e.data) for e in events] == [
        (
            POST_CREATED,
            {"post_id": post.id, "title": "Hello", "author_id": ALICE, "author_name": "Alice"},
        )
    ]
    assert service.get_post(post.id) == post


def test_post_created_is_delivered_after_commit(engine):
    seen: list[Post] = []
    bus = InlineEventBus()
    service = InProcessPostsService(make_session_factory(engine), bus, PostsConfig())
    bus.subscribe(
        POST_CREATED, lambda e: seen.append(service.get_post(e.data["post_id"])), consumer="test"
    )
    post = service.create_post(ALICE, "Alice", "Hi", "Body")
    assert seen == [post]


@pytest.mark.parametrize(
    "image_url",
    [
        None,
        "/images/abc.jpg",
        "http://example.com/a.png",
        "HTTPS://cdn.example.com/a.png?x=1",
        "/" + "a" * 2047,
    ],
)
def test_create_post_accepts_image_urls(service, image_url):
    assert service.create_post(ALICE, "Alice", "T", "B", image_url).image_url == image_url


def test_create_post_accepts_the_limits(service):
    post = service.create_post(ALICE, "A" * 100, "T" * 200, "B" * 50_000)
    assert (len(post.title), len(post.body), len(post.author_name)) == (200, 50_000, 100)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"author_id": True}, "author_id"),
        ({"author_id": "1"}, "author_id"),
        ({"author_id": None}, "author_id"),
        ({"author_id": 0}, "author_id"),
        ({"author_id": 2**64}, "author_id"),
        ({"author_name": ""}, "author_name"),
        ({"author_name": "  "}, "author_name"),
        ({"author_name": "x" * 101}, "author_name"),
        ({"author_name": 5}, "author_name"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"title": None}, "title"),
        ({"title": ["t"]}, "title"),
        ({"title": "line\nbreak"}, "title"),
        ({"title": "nul\x00"}, "title"),
        ({"title": "\ud800"}, "title"),
        ({"body": ""}, "body"),
        ({"body": " \n\t "}, "body"),
        ({"body": "b" * 50_001}, "body"),
        ({"body": {"x": 1}}, "body"),
        ({"body": "nul\x00byte"}, "body"),
        ({"image_url": "javascript:alert(1)"}, "image_url"),
        ({"image_url": "data:image/png;base64,AAAA"}, "image_url"),
        ({"image_url": "//evil.example.com/a.png"}, "image_url"),
        ({"image_url": "/\\evil.example.com/a.png"}, "image_url"),
        ({"image_url": "ftp://example.com/a.png"}, "image_url"),
        ({"image_url": "images/a.png"}, "image_url"),
        ({"image_url": "http://"}, "image_url"),
        ({"image_url": "/a b.png"}, "image_url"),
        ({"image_url": "http://[::1/a.png"}, "image_url"),
        ({"image_url": "/" + "a" * 2048}, "image_url"),
        ({"image_url": ""}, "image_url"),
        ({"image_url": 42}, "image_url"),
    ],
)
def test_create_post_rejects_bad_input(service, events, kwargs, field):
    args = {"author_id": ALICE, "author_name": "Alice", "title": "T", "body": "B", **kwargs}
    with pytest.raises(InvalidInput) as caught:
        service.create_post(**args)
    assert caught.value.status == 400
    assert caught.value.message.startswith(f"{field}:")
    assert caught.value.details == {"field": field}
    assert events == []


def test_injection_strings_are_stored_verbatim(service, engine):
    post = service.create_post(ALICE, "Robert'); DROP TABLE posts; --", DROP, f"{DROP}\n' OR 1=1")
    comment = service.add_comment(post.id, BOB, DROP, "'; DELETE FROM comments; --")
    assert service.get_post(post.id) == post
    assert (post.title, post.body) == (DROP, f"{DROP}\n' OR 1=1")
    assert service.list_comments(post.id) == [comment]
    assert comment.body == "'; DELETE FROM comments; --"
    assert service.create_post(BOB, "Bob", "Still here", "Yes").id == post.id + 1
    assert _count(engine, PostRow) == 2


@pytest.mark.parametrize("post_id", [True, "1", 1.5, None, 0, -3, 2**63])
def test_get_post_rejects_bad_ids(service, post_id):
    with pytest.raises(InvalidInput):
        service.get_post(post_id)


def test_get_missing_post(service):
    with pytest.raises(PostNotFound) as caught:
        service.get_post(404)
    assert caught.value.status == 404


# --------------------------------------------------------------------------- list


def test_list_posts_newest_first_and_paginated(service):
    posts = [service.create_post(ALICE, "Alice", f"Post {i}", "B") for i in range(7)]
    newest_first = list(reversed(posts))
    first = service.list_posts()
    assert (first.page, first.per_page, first.total) == (1, 3, 7)  # per_page_default
    assert first.items == newest_first[:3]
    assert service.list_posts(page=2).items == newest_first[3:6]
    assert service.list_posts(page=3).items == newest_first[6:]
    assert service.list_posts(page=4).items == []
    assert service.list_posts(page=4).total == 7


def test_list_posts_caps_per_page(service):
    for i in range(7):
        service.create_post(ALICE, "Alice", f"Post {i}", "B")
    page = service.list_posts(per_page=1000)
    assert (page.per_page, len(page.items), page.total) == (5, 5, 7)
    assert len(service.list_posts(page=2, per_page=5).items) == 2


def test_list_posts_breaks_ties_by_id(service, monkeypatch):
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(service_module, "utcnow", lambda: moment)
    ids = [service.create_post(ALICE, "Alice", f"Post {i}", "B").id for i in range(3)]
    assert [p.id for p in service.list_posts().items] == ids[::-1]


def test_list_posts_far_beyond_the_end(service, post):
    page = service.list_posts(page=10**15, per_page=5)
    assert (page.items, page.total) == ([], 1)


def test_list_posts_empty(service):
    page = service.list_posts()
    assert (page.items, page.total, page.page) == ([], 0, 1)


@pytest.mark.parametrize(
    ("page", "per_page"),
    [
        (0, None),
        (-1, None),
        (True, None),
        ("1", None),
        (1.0, None),
        (1, 0),
        (1, -5),
        (1, False),
        (1, "10"),
    ],
)
def test_list_posts_rejects_bad_paging(service, page, per_page):
    with pytest.raises(InvalidInput):
        service.list_posts(page=page, per_page=per_page)


# --------------------------------------------------------------------------- update / delete


def test_author_updates_a_post(service, post):
    updated = service.update_post(post.id, ALICE, title=" New title ", body="New body")
    assert (updated.title, updated.body, updated.image_url) == (
        "New title",
        "New body",
        "/images/a.jpg",
    )
    assert updated.updated_at > post.updated_at
    assert updated.created_at == post.created_at
    assert service.get_post(post.id) == updated


def test_update_image_url_unset_none_and_value(service, post):
    assert service.update_post(post.id, ALICE, image_url=UNSET).image_url == "/images/a.jpg"
    assert service.update_post(post.id, ALICE, title="T").image_url == "/images/a.jpg"
    assert service.update_post(post.id, ALICE, image_url=None).image_url is None
    assert service.get_post(post.id).image_url is None
    url = "https://cdn.example.com/b.png"
    assert service.update_post(post.id, ALICE, image_url=url).image_url == url


def test_update_without_changes_keeps_updated_at(service, post):
    assert service.update_post(post.id, ALICE) == post
    assert service.update_post(post.id, ALICE, title="Hello", body="First post") == post


def test_someone_else_cannot_edit_or_delete(service, post):
    with pytest.raises(NotPostAuthor) as caught:
        service.update_post(post.id, BOB, title="Hijacked")
    assert caught.value.status == 403
    with pytest.raises(NotPostAuthor):
        service.delete_post(post.id, BOB)
    assert service.get_post(post.id) == post


def test_update_or_delete_missing_post(service):
    with pytest.raises(PostNotFound):
        service.update_post(404, ALICE, title="x")
    with pytest.raises(PostNotFound):
        service.delete_post(404, ALICE)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": 1}, "title"),
        ({"body": "b" * 50_001}, "body"),
        ({"image_url": "javascript:x"}, "image_url"),
        ({"editor_id": True}, "editor_id"),
        ({"post_id": "1"}, "post_id"),
    ],
)
def test_update_rejects_bad_input(service, post, kwargs, field):
    args = {"post_id": post.id, "editor_id": ALICE, **kwargs}
    with pytest.raises(InvalidInput) as caught:
        service.update_post(args.pop("post_id"), args.pop("editor_id"), **args)
    assert caught.value.details == {"field": field}
    assert service.get_post(post.id) == post


def test_delete_removes_the_post_and_its_comments(service, post, engine):
    other = service.create_post(BOB, "Bob", "Other", "B")
    service.add_comment(post.id, BOB, "Bob", "Nice")
    service.add_comment(post.id, ALICE, "Alice", "Thanks")
    kept = service.add_comment(other.id, ALICE, "Alice", "Kept")
    service.delete_post(post.id, ALICE)
    with pytest.raises(PostNotFound):
        service.get_post(post.id)
    with pytest.raises(PostNotFound):
        service.list_comments(post.id)
    assert _count(engine, CommentRow) == 1
    assert service.list_comments(other.id) == [kept]


# --------------------------------------------------------------------------- comments


def test_comments_are_listed_oldest_first(service, post):
    first = service.add_comment(post.id, BOB, " Bob ", "First!")
    second = service.add_comment(post.id, ALICE, "Alice", "Second\nline")
    assert isinstance(first, Comment)
    assert (first.post_id, first.author_id, first.author_name, first.body) == (
        post.id,
        BOB,
        "Bob",
        "First!",
    )
    assert service.list_comments(post.id) == [first, second]


def test_comment_limits(service, post):
    assert len(service.add_comment(post.id, BOB, "Bob", "c" * 5000).body) == 5000
    with pytest.raises(InvalidInput):
        service.add_comment(post.id, BOB, "Bob", "c" * 5001)


def test_comment_on_missing_post(service):
    with pytest.raises(PostNotFound):
        service.add_comment(404, BOB, "Bob", "Hello?")
    with pytest.raises(PostNotFound):
        service.list_comments(404)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((None, BOB, "Bob", "x"), "post_id"),
        ((1, False, "Bob", "x"), "author_id"),
        ((1, BOB, "", "x"), "author_name"),
        ((1, BOB, "Bob", ""), "body"),
        ((1, BOB, "Bob", "   "), "body"),
        ((1, BOB, "Bob", 7), "body"),
    ],
)
def test_add_comment_rejects_bad_input(service, post, args, field):
    with pytest.raises(InvalidInput) as caught:
        service.add_comment(*args)
    assert caught.value.details == {"field": field}
    assert service.list_comments(post.id) == []


# --------------------------------------------------------------------------- events


def test_user_renamed_updates_posts_and_comments(service, bus, post):
    bus.subscribe(USER_RENAMED, service.handle_event, consumer="posts")
    other = service.create_post(BOB, "Bob", "Bob's", "B")
    mine = service.add_comment(other.id, ALICE, "Alice", "Hi Bob")
    theirs = service.add_comment(post.id, BOB, "Bob", "Hi Alice")
    event = Event(USER_RENAMED, {"user_id": ALICE, "name": "Alicia", "old_name": "Alice"})
    for _ in range(2):  # a redelivery changes nothing
        bus.deliver(event)
        assert service.get_post(post.id).author_name == "Alicia"
        assert service.get_post(post.id).updated_at == post.updated_at
        assert service.get_post(other.id).author_name == "Bob"
        assert service.list_comments(other.id)[0].author_name == "Alicia"
        assert service.list_comments(other.id)[0].id == mine.id
        assert service.list_comments(post.id) == [theirs]


@pytest.mark.parametrize(
    "event",
    [
        Event(USER_REGISTERED, {"user_id": ALICE, "name": "Zed", "email": "z@example.com"}),
        Event("something.else", {}),
        Event(USER_RENAMED, {"user_id": "1", "name": "Zed"}),
        Event(USER_RENAMED, {"user_id": ALICE, "name": ""}),
        Event(USER_RENAMED, {"name": "Zed"}),
    ],
)
def test_other_or_malformed_events_change_nothing(service, post, event):
    service.handle_event(event)
    assert service.get_post(post.id) == post


def test_health(service):
    assert service.health() == {"status": "ok", "database": True}


def test_health_down(tmp_path, bus):
    (tmp_path / "not-a-dir").write_text("")
    engine = create_engine(f"sqlite:///{tmp_path}/not-a-dir/t.db")
    service = InProcessPostsService(make_session_factory(engine), bus, PostsConfig())
    assert service.health() == {"status": "down", "database": False}
    engine.dispose()
