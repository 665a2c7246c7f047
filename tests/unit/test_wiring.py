"""The composition root: building has no side effects; starting is explicit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect

from blog import create_app
from blog.domains import NAMES
from blog.wiring import build_monolith, build_service
from tests.support import eventually, make_config

UNREACHABLE_BROKER = {"events": {"broker": "rabbitmq", "rabbitmq_url": "amqp://127.0.0.1:9/%2F"}}


def _wire_everything(tmp_path: Path) -> dict[str, dict[str, str]]:
    return {
        d: {"mode": "wire", "database_url": f"sqlite:///{tmp_path}/svc/{d}.db"}
        for d in ("auth", "posts", "images", "payments")
    }


@pytest.mark.parametrize("broker", ["inline", "rabbitmq"])
def test_building_touches_nothing(tmp_path: Path, broker: str) -> None:
    extra = UNREACHABLE_BROKER if broker == "rabbitmq" else {}
    threads = set(threading.enumerate())
    (tmp_path / "state").mkdir()
    config = make_config(tmp_path / "state", services=_wire_everything(tmp_path), **extra)
    app = create_app(config)
    service = build_service("posts", config)
    try:
        assert set(threading.enumerate()) == threads  # no relay, consumer or puller started
        assert not (tmp_path / "state" / "blog.db").exists()  # no table made, no file opened
        assert not (tmp_path / "svc").exists()
    finally:
        app.extensions["blog.runtime"].close()
        service.close()


def test_starting_makes_the_tables_and_the_jobs_run(tmp_path: Path) -> None:
    config = make_config(tmp_path, services=_wire_everything(tmp_path))
    runtime = build_monolith(config)
    try:
        runtime.start()
        tables = inspect(runtime.engine).get_table_names()
        assert "email_messages" in tables
        assert "event_feed_cursors" in tables  # the pullers of the extracted publishers
        assert "posts" not in tables  # posts lives in its own database now
        assert "posts" in inspect(runtime.children[1].engine).get_table_names()

        def pulling() -> None:
            names = {t.name for t in threading.enumerate()}
            assert {"feed-puller-auth", "feed-puller-posts", "feed-puller-payments"} <= names

        eventually(pulling)
        runtime.start()  # a second start is a no-op
    finally:
        runtime.close()


def test_the_first_request_starts_the_app(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path))
    try:
        assert not (tmp_path / "blog.db").exists()
        assert app.test_client().get("/api/posts").status_code == 200
        assert (tmp_path / "blog.db").exists()
    finally:
        app.extensions["blog.runtime"].close()


def test_init_db_command_creates_the_tables(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path))
    try:
        result = app.test_cli_runner().invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        assert "database ready" in result.output
        assert "posts" in inspect(app.extensions["blog.runtime"].engine).get_table_names()
    finally:
        app.extensions["blog.runtime"].close()


def test_overrides_replace_a_domain_by_any_implementation_of_its_interface(tmp_path: Path) -> None:
    class NoImages:
        def health(self) -> dict[str, object]:
            return {"status": "ok", "double": True}

    app = create_app(make_config(tmp_path), overrides={"images": NoImages()})
    try:
        health = app.test_client().get("/api/health").get_json()
        assert health["domains"]["images"] == {"mode": "inprocess", "status": "ok", "double": True}
        assert set(health["domains"]) == set(NAMES)
    finally:
        app.extensions["blog.runtime"].close()
