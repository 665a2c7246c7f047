"""``extract auth`` onto a PostgreSQL service database and ``inline`` back: the real auth service
runs on the moved rows, and its next insert proves the serial sequence was moved on too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, select

from blog import create_app
from blog.config import load_config
from blog.domains import manifest
from tests.integration.databases import postgres_database
from tests.integration.migration import PASSWORD, monolith, run_cli, write_config
from tests.support import ServiceProcess, eventually

pytestmark = pytest.mark.postgres

USERS = manifest("auth").metadata().tables["auth_users"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards whatever happened."""
    with postgres_database() as url:
        yield url


def register(client: FlaskClient, email: str) -> int:
    response = client.post(
        "/api/register", json={"email": email, "name": "Ada", "password": PASSWORD}
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def login(client: FlaskClient, email: str) -> None:
    response = client.post("/api/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()


def user_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(select(USERS.c.id).order_by(USERS.c.id)))


def test_auth_moves_to_postgresql_and_back(tmp_path: Path, pg_url: str) -> None:
    config_path = write_config(
        tmp_path,
        **{"database_url: sqlite:///instance/auth-service.db": f"database_url: {pg_url}"},
    )
    with monolith(config_path) as app:
        ids = [register(app.test_client(), f"user{n}@example.com") for n in range(3)]

    result = run_cli(config_path, "extract", "auth")
    assert result.exit_code == 0, result.output
    assert "auth_users       3              0                   3" in result.output

    pg = create_engine(pg_url)
    sqlite = create_engine(load_config(config_path).database_url)
    try:
        assert user_ids(pg) == ids
        assert user_ids(sqlite) == []

        with ServiceProcess("auth", tmp_path / "svc", service_database_url=pg_url) as service:
            config = load_config(
                config_path, overrides={"services": {"auth": {"url": service.url}}}
            )
            app = create_app(config)
            try:
                assert app.extensions["blog.domains"].modes["auth"] == "http"
                client = app.test_client()
                login(client, "user0@example.com")  # a moved row, served by the service
                # Without the sequence reset PostgreSQL would hand out id 1 again: a 500.
                assert register(client, "late@example.com") == max(ids) + 1
                login(client, "late@example.com")

                def welcomed() -> None:  # user.registered came over the service's event feed
                    inbox = client.get("/api/dev/inbox").get_json()["items"]
                    assert "late@example.com" in [m["to"] for m in inbox]

                eventually(welcomed, timeout=20)
            finally:
                app.extensions["blog.runtime"].close()

        result = run_cli(config_path, "inline", "auth")
        assert result.exit_code == 0, result.output
        assert "auth_users       4              0                   4" in result.output
        assert user_ids(pg) == []
        assert user_ids(sqlite) == [*ids, max(ids) + 1]
        with monolith(config_path) as app:
            client = app.test_client()
            login(client, "late@example.com")
            assert register(client, "later@example.com") == max(ids) + 2
    finally:
        pg.dispose()
        sqlite.dispose()
