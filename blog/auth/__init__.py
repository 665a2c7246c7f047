"""The auth domain: accounts, passwords and access tokens.

Every method makes sense as a remote call: it takes and returns plain values and DTOs, never ORM
objects, so the HTTP client in ``client.py`` can implement the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blog.contract import Route
from blog.errors import Conflict, NotFound, Unauthorized, Unavailable
from blog.events import USER_REGISTERED, USER_RENAMED
from blog.manifest import BuildContext, DomainManifest, HttpService


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


ERRORS = (EmailTaken, InvalidCredentials, InvalidToken, UserNotFound)


class AuthService(Protocol):
    def register(self, email: str, name: str, password: str) -> User: ...

    def login(self, email: str, password: str) -> AccessToken: ...

    def verify(self, token: str) -> User: ...

    def get_user(self, user_id: int) -> User: ...

    def rename(self, user_id: int, name: str) -> User: ...

    def health(self) -> dict[str, object]: ...


ROUTES = (
    # Not safe: a repeat after a lost answer would say "email taken".
    Route("register", "POST", "/register", status=201),
    Route("login", "POST", "/login", safe=True),
    Route("verify", "POST", "/verify", safe=True),
    Route("get_user", "GET", "/users/{user_id}", safe=True),
    # Setting a name: a repeat leaves the same state.
    Route("rename", "PATCH", "/users/{user_id}", safe=True),
)


def _build(context: BuildContext) -> AuthService:
    from blog.auth.service import InProcessAuthService

    return InProcessAuthService(context.sessions, context.publisher, context.config.auth)


MANIFEST = DomainManifest(
    name="auth",
    interface=AuthService,
    build=_build,
    models="blog.auth.models",
    errors=ERRORS,
    unavailable=AuthUnavailable,
    extraction=HttpService(port=3001, routes=ROUTES),
    publishes=(USER_REGISTERED, USER_RENAMED),
)
