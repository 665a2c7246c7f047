"""``flask --app blog extract|inline posts`` on SQLite: the data moves with the flag, keeps its ids,
survives an interrupted run, refuses a conflict, and no event is lost on the way back."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, insert, inspect, select

from blog.config import load_config
from blog.domains import manifest
from blog.events import POST_CREATED, Event
from blog.feed import cursors
from tests.integration.migration import PASSWORD, monolith, run_cli, write_config

POSTS = manifest("posts").metadata()


@pytest.fixture
def dbs(config_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """The monolith's database and the posts service's, as the config file names them."""
    config = load_config(config_path)
    service_url = config.services["posts"].database_url
    assert service_url is not None
    mono, service = create_engine(config.database_url), create_engine(service_url)
    yield mono, service
    mono.dispose()
    service.dispose()


def rows(engine: Engine, table: str) -> list[dict[str, Any]]:
    if not inspect(engine).has_table(table):
        return []
    t = POSTS.tables[table]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.id))]


def signup(client: FlaskClient, email: str = "ada@example.com") -> dict[str, str]:
    response = client.post(
        "/api/register", json={"email": email, "name": "Ada", "password": PASSWORD}
    )
    assert response.status_code == 201, response.get_json()
    response = client.post("/api/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def seed(config_path: Path) -> int:
    """Two posts, three comments, written through the in-process monolith; returns the user id."""
    with monolith(config_path) as app:
        client = app.test_client()
        headers = signup(client)
        for n in (1, 2):
            post = client.post(
                "/api/posts", json={"title": f"Post {n}", "body": "text"}, headers=headers
            ).get_json()
            for c in range(n):  # one comment on the first post, two on the second
                response = client.post(
                    f"/api/posts/{post['id']}/comments", json={"body": f"c{c}"}, headers=headers
                )
                assert response.status_code == 201, response.get_json()
        return client.get("/api/me", headers=headers).get_json()["id"]


def inbox_subjects(app: Flask) -> list[str]:
    return [m["subject"] for m in app.test_client().get("/api/dev/inbox").get_json()["items"]]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def test_extract_moves_the_rows_and_flips_the_flag_keeping_comments(
    config_path: Path, dbs: tuple[Engine, Engine]
) -> None:
    original = config_path.read_text()
    seed(config_path)
    mono, service = dbs
    before = {table: rows(mono, table) for table in ("posts", "comments")}
    assert (len(before["posts"]), len(before["comments"])) == (2, 3)

    result = run_cli(config_path, "extract", "posts")

    assert result.exit_code == 0, result.output
    assert re.search(r"posts\s+2\s+0\s+2", result.output), result.output
    assert re.search(r"comments\s+3\s+0\s+3", result.output), result.output
    assert "make services" in result.output
    assert {t: rows(service, t) for t in ("posts", "comments")} == before  # same ids, values
    assert rows(mono, "posts") == rows(mono, "comments") == []
    # Exactly one line of the commented file changed: the flag.
    changed = [
        (old, new)
        for old, new in zip(
            original.splitlines(), config_path.read_text().splitlines(), strict=True
        )
        if old != new
    ]
    assert changed == [("    mode: inprocess", "    mode: http")]
    assert load_config(config_path).mode("posts") == "http"
    assert "# One entry per domain." in config_path.read_text()

    again = run_cli(config_path, "extract", "posts")
    assert again.exit_code != 0
    assert "already 'http'" in again.output


def test_a_rerun_after_a_partial_copy_is_idempotent(
    config_path: Path, dbs: tuple[Engine, Engine]
) -> None:
    seed(config_path)
    mono, service = dbs
    # An earlier run that died after copying the posts and one comment.
    POSTS.create_all(service)
    with service.begin() as dst:
        dst.execute(insert(POSTS.tables["posts"]), rows(mono, "posts"))
        dst.execute(insert(POSTS.tables["comments"]), rows(mono, "comments")[:1])

    result = run_cli(config_path, "extract", "posts")

    assert result.exit_code == 0, result.output
    assert re.search(r"posts\s+0\s+2\s+2", result.output), result.output
    assert re.search(r"comments\s+2\s+1\s+3", result.output), result.output
    assert [r["id"] for r in rows(service, "comments")] == [1, 2, 3]
    assert rows(mono, "posts") == []


def test_a_conflicting_row_is_refused_and_nothing_changes(
    config_path: Path, dbs: tuple[Engine, Engine]
) -> None:
    original = config_path.read_text()
    seed(config_path)
    mono, service = dbs
    posts_before, comments_before = rows(mono, "posts"), rows(mono, "comments")
    POSTS.create_all(service)
    with service.begin() as dst:
        dst.execute(insert(POSTS.tables["posts"]), [{**posts_before[0], "title": "Other"}])

    result = run_cli(config_path, "extract", "posts")

    assert result.exit_code == 1
    assert "posts id=1: differs in title" in result.output
    assert "nothing was changed" in result.output
    assert (rows(mono, "posts"), rows(mono, "comments")) == (posts_before, comments_before)
    assert [r["title"] for r in rows(service, "posts")] == ["Other"]
    assert rows(service, "comments") == []
    assert config_path.read_text() == original


def test_inline_brings_everything_back_and_delivers_pending_events(
    config_path: Path, dbs: tuple[Engine, Engine]
) -> None:
    original = config_path.read_text()
    author_id = seed(config_path)
    mono, service = dbs
    before = {table: rows(mono, table) for table in ("posts", "comments")}
    assert run_cli(config_path, "extract", "posts").exit_code == 0

    # While extracted, the service stored a post and its event, and the monolith never pulled it.
    now = datetime.now(UTC)
    new_post = {
        **before["posts"][0],
        "id": 3,
        "title": "Written while extracted",
        "created_at": now,
        "updated_at": now,
    }
    event = Event(
        POST_CREATED,
        {"post_id": 3, "title": new_post["title"], "author_id": author_id, "author_name": "Ada"},
    )
    POSTS.create_all(service)
    with service.begin() as conn:
        conn.execute(insert(POSTS.tables["posts"]), [new_post])
        conn.execute(
            insert(POSTS.tables["posts_outbox"]),
            [
                {
                    "event_id": event.id,
                    "type": event.type,
                    "payload": json.dumps(event.to_dict()),
                    "created_at": now,
                }
            ],
        )

    result = run_cli(config_path, "inline", "posts")

    assert result.exit_code == 0, result.output
    assert "Delivered 1 event(s)" in result.output
    assert re.search(r"posts\s+3\s+0\s+3", result.output), result.output
    assert config_path.read_text() == original  # back to inprocess, byte for byte
    assert rows(service, "posts") == rows(service, "comments") == []
    assert len(rows(service, "posts_outbox")) == 1  # the outbox stays with its writer
    with mono.connect() as conn:
        position = conn.execute(
            select(cursors.c.position).where(cursors.c.source == "posts-service")
        ).scalar()
    assert position == 1
    with monolith(config_path) as app:
        client = app.test_client()
        assert [p["id"] for p in client.get("/api/posts").get_json()["items"]] == [3, 2, 1]
        detail = client.get("/api/posts/2").get_json()
        assert [c["id"] for c in detail["comments"]] == [c["id"] for c in before["comments"][1:]]
        assert "Your post 'Written while extracted' is published" in inbox_subjects(app)
        # The monolith writes on after the copied ids.
        headers = {"Authorization": login(client)}
        created = client.post("/api/posts", json={"title": "t", "body": "b"}, headers=headers)
        assert created.get_json()["id"] == 4

    again = run_cli(config_path, "inline", "posts")
    assert again.exit_code != 0
    assert "already 'inprocess'" in again.output


def login(client: FlaskClient) -> str:
    response = client.post("/api/login", json={"email": "ada@example.com", "password": PASSWORD})
    return f"Bearer {response.get_json()['access_token']}"


def test_email_is_not_extracted_by_moving_tables(config_path: Path) -> None:
    result = run_cli(config_path, "extract", "email")
    assert result.exit_code == 2
    assert "RabbitMQ consumer" in result.output
