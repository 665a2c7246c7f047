"""The event feed retries an event a consumer could not take yet, instead of skipping it."""

from __future__ import annotations

import time

from sqlalchemy import select

from blog.events import USER_REGISTERED, Event
from tests.support import eventually, make_config, start_threaded_service


def test_an_event_that_arrives_before_its_dependency_is_delivered_again(tmp_path):
    from blog.wiring import build_monolith

    posts_service = start_threaded_service("posts", tmp_path)
    monolith = build_monolith(
        make_config(tmp_path, services={"posts": {"mode": "http", "url": posts_service.url}})
    )
    monolith.start()
    domains = monolith.registry
    try:
        # post.created reaches email through posts' feed before email knows its author
        domains.posts.create_post(author_id=7, author_name="Ada", title="Early", body="b")

        time.sleep(0.5)  # the puller pulls it and email refuses it (unknown recipient)
        assert domains.email.list_inbox() == []
        domains.bus.deliver(
            Event(
                type=USER_REGISTERED, data={"user_id": 7, "email": "ada@example.com", "name": "Ada"}
            )
        )

        def confirmed() -> None:
            subjects = [m.subject for m in domains.email.list_inbox()]
            assert any("Early" in s for s in subjects), subjects

        eventually(confirmed)
    finally:
        monolith.close()
        posts_service.stop()


def _feed_position(monolith, service: str) -> int:
    from blog.feed import cursors

    with monolith.engine.connect() as connection:
        found = connection.execute(
            select(cursors.c.position).where(cursors.c.source == f"{service}-service")
        ).scalar()
    return found or 0


def test_a_refused_event_survives_a_monolith_restart(tmp_path):
    """Issue 12, item 7: an event a consumer refused is kept in the monolith's database, not in
    the puller's memory, and delivered after a restart."""
    from blog.wiring import build_monolith

    posts_service = start_threaded_service("posts", tmp_path)
    config = make_config(tmp_path, services={"posts": {"mode": "http", "url": posts_service.url}})
    first = build_monolith(config)
    first.start()
    try:
        first.registry.posts.create_post(author_id=7, author_name="Ada", title="Early", body="b")

        def passed() -> None:  # the puller took it, and email refused it (unknown recipient)
            assert _feed_position(first, "posts") >= 1

        eventually(passed)
        assert first.registry.email.list_inbox() == []
    finally:
        first.close()  # the monolith restarts while the event waits for its author

    second = build_monolith(config)
    second.start()
    try:
        second.registry.bus.deliver(
            Event(
                type=USER_REGISTERED, data={"user_id": 7, "email": "ada@example.com", "name": "Ada"}
            )
        )

        def confirmed() -> None:
            subjects = [m.subject for m in second.registry.email.list_inbox()]
            assert any("Early" in s for s in subjects), subjects

        eventually(confirmed, timeout=20)
    finally:
        second.close()
        posts_service.stop()


def test_a_rename_sent_while_posts_is_down_reaches_posts_once_it_is_back(tmp_path):
    """Issue 12, item 7: ``user.renamed`` handed to a remote posts service that is down is kept
    in the monolith's database and delivered once posts is back, across a monolith restart."""
    from blog.wiring import build_monolith

    posts_service = start_threaded_service("posts", tmp_path)
    first = build_monolith(
        make_config(tmp_path, services={"posts": {"mode": "http", "url": posts_service.url}})
    )
    first.start()
    try:
        domains = first.registry
        user = domains.auth.register("ada@example.com", "Ada", "correct horse battery")
        post = domains.posts.create_post(
            author_id=user.id, author_name=user.name, title="Hello", body="b"
        )
        posts_service.stop()  # posts goes down...
        domains.auth.rename(user.id, "Grace")  # ...and misses the rename
    finally:
        first.close()

    posts_again = start_threaded_service("posts", tmp_path)  # same database, another port
    second = build_monolith(
        make_config(tmp_path, services={"posts": {"mode": "http", "url": posts_again.url}})
    )
    second.start()
    try:

        def renamed() -> None:
            assert second.registry.posts.get_post(post.id).author_name == "Grace"

        eventually(renamed, timeout=20)
    finally:
        second.close()
        posts_again.stop()
