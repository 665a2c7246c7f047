"""Shared fixtures, in the shape of Flask's tutorial: ``app``, ``client``, ``runner``, ``auth``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from blog import create_app
from blog.config import Config
from tests.support import make_config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    app = create_app(config)
    yield app
    app.extensions["blog.runtime"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


class AuthActions:
    """Registers and logs in users through the public API, as a client would."""

    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def register(
        self,
        email: str = "ada@example.com",
        name: str = "Ada",
        password: str = "correct horse battery",
    ) -> dict[str, Any]:
        response = self._client.post(
            "/api/register", json={"email": email, "name": name, "password": password}
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def login(
        self, email: str = "ada@example.com", password: str = "correct horse battery"
    ) -> dict[str, str]:
        response = self._client.post("/api/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['access_token']}"}

    def signup(self, email: str = "ada@example.com", name: str = "Ada") -> dict[str, str]:
        """Register and log in; returns the Authorization header."""
        self.register(email=email, name=name)
        return self.login(email=email)


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)
