"""The auth domain: accounts, passwords and access tokens.

Every method makes sense as a remote call: it takes and returns plain values and DTOs, never ORM
objects, so the HTTP client in ``client.py`` can implement the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blog.errors import Conflict, InvalidInput, NotFound, Unauthorized, Unavailable


@dataclass(frozen=True)
class User:
    """A user's public fields: what any other domain or client may see (never the hash)."""

    id: int
    email: str
    name: str
    created_at: str


@dataclass(frozen=True)
class AccessToken:
    access_token: str
    token_type: str
    expires_in: int
    user: User


class AuthInvalidInput(InvalidInput):
    code = "invalid_input"


class EmailTaken(Conflict):
    code = "email_taken"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class InvalidToken(Unauthorized):
    code = "invalid_token"


class UserNotFound(NotFound):
    code = "user_not_found"


class AuthUnavailable(Unavailable):
    code = "auth_unavailable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__("auth", message)


ERRORS = (AuthInvalidInput, EmailTaken, InvalidCredentials, InvalidToken, UserNotFound)


class AuthService(Protocol):
    def register(self, email: str, name: str, password: str) -> User: ...

    def login(self, email: str, password: str) -> AccessToken: ...

    def verify(self, token: str) -> User: ...

    def get_user(self, user_id: int) -> User: ...

    def rename(self, user_id: int, name: str) -> User: ...

    def health(self) -> dict[str, object]: ...
