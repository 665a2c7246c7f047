"""The event feed retries an event a consumer could not take yet, instead of skipping it."""

from __future__ import annotations

import time

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
