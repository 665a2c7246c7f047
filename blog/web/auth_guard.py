"""Authentication at the edge: the gateway verifies the bearer token once per request."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request

from blog.auth import InvalidToken, User
from blog.web.context import domains

F = TypeVar("F", bound=Callable[..., Any])


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("send 'Authorization: Bearer <token>' (from POST /api/login)")
    return token.strip()


def current_user() -> User:
    user: User | None = g.get("current_user")
    if user is None:
        user = g.current_user = domains().auth.verify(bearer_token())
    return user


def login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_user()
        return view(*args, **kwargs)

    # Marked, so that the API document's security requirements come from the guard itself and
    # cannot disagree with it.
    wrapper.blog_login_required = True  # type: ignore[attr-defined]
    return cast(F, wrapper)


def requires_login(view: Callable[..., Any]) -> bool:
    return bool(getattr(view, "blog_login_required", False))
