"""The auth interface over HTTP: the same methods, DTOs and errors as ``service.py``."""

from __future__ import annotations

from typing import Any

from blog.auth import ERRORS, AccessToken, AuthInvalidInput, AuthUnavailable, User
from blog.config import TransportConfig
from blog.transport import ServiceClient, ServiceCredentials


class HttpAuthClient:
    def __init__(
        self, base_url: str, transport: TransportConfig, credentials: ServiceCredentials
    ) -> None:
        self.transport = ServiceClient(
            "auth", base_url, transport, ERRORS, AuthUnavailable, credentials
        )

    def register(self, email: str, name: str, password: str) -> User:
        # Not retried: a repeat after a lost response would answer "email taken".
        response = self.transport.call(
            "POST",
            "/register",
            json={"email": email, "name": name, "password": password},
            idempotent=False,
        )
        return User(**response.json())

    def login(self, email: str, password: str) -> AccessToken:
        response = self.transport.call(
            "POST", "/login", json={"email": email, "password": password}, idempotent=True
        )
        data = response.json()
        return AccessToken(**{**data, "user": User(**data["user"])})

    def verify(self, token: str) -> User:
        response = self.transport.call("POST", "/verify", json={"token": token}, idempotent=True)
        return User(**response.json())

    def get_user(self, user_id: int) -> User:
        response = self.transport.call("GET", f"/users/{_path_id(user_id)}", idempotent=True)
        return User(**response.json())

    def rename(self, user_id: int, name: str) -> User:
        # Setting a name is idempotent: repeating it leaves the same state.
        response = self.transport.call(
            "PATCH", f"/users/{_path_id(user_id)}", json={"name": name}, idempotent=True
        )
        return User(**response.json())

    def health(self) -> dict[str, Any]:
        return self.transport.remote_health()

    def close(self) -> None:
        self.transport.close()


def _path_id(user_id: object) -> int:
    """A path cannot carry a type (``True`` would travel as ``1``): refuse what the service
    would refuse, with its words, before it is lost in translation."""
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise AuthInvalidInput("user_id: must be a positive integer", details={"field": "user_id"})
    return user_id
