"""Renames delivered out of order over RabbitMQ: posts and email keep the last committed name.

Two renames of one user can reach a consumer in either order (two relays, a redelivery after a
crash, a requeue). Auth numbers each user's renames (``version`` in ``user.renamed``); posts and
email ignore a rename older than the one they hold, so the order of delivery stops mattering.
Here the monolith's posts and email consume from a real broker, and the renames are published
to it in the wrong order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pika
import pytest

from blog.events import USER_RENAMED, Event
from tests.support import IsolatedBroker, deploy, eventually, unique_email

pytestmark = pytest.mark.rabbitmq

PASSWORD = "correct horse battery"


def _publish(broker: IsolatedBroker, *events: Event) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for event in events:
            channel.basic_publish(
                broker.exchange,
                event.type,
                json.dumps(event.to_dict()).encode(),
                pika.BasicProperties(delivery_mode=2, message_id=event.id),
                mandatory=True,
            )
    finally:
        connection.close()


def _renamed(user_id: int, name: str, version: int) -> Event:
    return Event(USER_RENAMED, {"user_id": user_id, "name": name, "version": version})


def test_renames_delivered_out_of_order_leave_the_newest_name(tmp_path: Path) -> None:
    broker = IsolatedBroker()
    try:
        with deploy("posts", "inprocess", tmp_path, **broker.overrides()) as domains:
            email = unique_email()
            user = domains.auth.register(email, "Ada", PASSWORD)
            marker = domains.auth.register(unique_email(), "Marker", PASSWORD)
            post = domains.posts.create_post(user.id, user.name, "Hello", "body")
            marked = domains.posts.create_post(marker.id, marker.name, "Marker", "body")

            def welcomed() -> None:  # email knows the user: its queue is declared and consumed
                assert any(m.to == email for m in domains.email.list_inbox(limit=200))

            eventually(welcomed, timeout=30)
            # Newest first, then an older one, then a marker: once the marker is applied, the
            # older rename (queued before it) has been handled, and must have changed nothing.
            _publish(
                broker,
                _renamed(user.id, "Ada Newest", 7),
                _renamed(user.id, "Ada Older", 6),
                _renamed(marker.id, "Marker Done", 1),
            )

            def marker_applied() -> None:
                assert domains.posts.get_post(marked.id).author_name == "Marker Done"

            eventually(marker_applied, timeout=30)
            assert domains.posts.get_post(post.id).author_name == "Ada Newest"

            domains.posts.create_post(user.id, "Ada Newest", "After the renames", "body")

            def greeted_by_the_newest_name() -> None:
                mails = [
                    m
                    for m in domains.email.list_inbox(limit=200)
                    if "After the renames" in m.subject
                ]
                assert mails and mails[0].body.startswith("Hi Ada Newest,")

            eventually(greeted_by_the_newest_name, timeout=30)
    finally:
        broker.delete()
