"""Registration, login and the caller's own account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from flask import Blueprint, Response, jsonify
from msgspec import Meta

from blog.auth import AccessToken, User, UserNotFound
from blog.web.auth_guard import current_user, login_required
from blog.web.context import domains
from blog.web.inputs import field, json_body, path_id
from blog.web.openapi import documented

bp = Blueprint("accounts", __name__)


# Only what the schema can say exactly: the rest (a valid address, a name not blank once trimmed
# and free of control characters) answers 400 naming the field.
Name = Annotated[str, Meta(min_length=1, description="Shown on posts.", examples=["Ada"])]


@dataclass(frozen=True)
class Registration:
    email: Annotated[str, Meta(min_length=1, examples=["ada@example.com"])]
    name: Name
    password: Annotated[str, Meta(min_length=8, max_length=1024, examples=["correct horse"])]


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str


@dataclass(frozen=True)
class Rename:
    name: Name


@dataclass(frozen=True)
class PublicProfile:
    """What anyone may see of a user: never the email."""

    id: int
    name: str
    created_at: str


@bp.post("/register")
@documented("Create an account", body=Registration, response=User, status=201, errors=(409, 503))
def register() -> tuple[Response, int]:
    body = json_body()
    user = domains().auth.register(
        email=field(body, "email", str),
        name=field(body, "name", str),
        password=field(body, "password", str),
    )
    return jsonify(user), 201


@bp.post("/login")
@documented(
    "Exchange email and password for a bearer token",
    body=Credentials,
    response=AccessToken,
    errors=(401, 503),
)
def login() -> Response:
    body = json_body()
    token = domains().auth.login(
        email=field(body, "email", str), password=field(body, "password", str)
    )
    return jsonify(token)


@bp.get("/me")
@login_required
@documented("The caller's own account", response=User, errors=(503,))
def me() -> Response:
    return jsonify(current_user())


@bp.patch("/me")
@login_required
@documented("Change the caller's display name", body=Rename, response=User, errors=(503,))
def rename_me() -> Response:
    body = json_body()
    user = domains().auth.rename(current_user().id, field(body, "name", str))
    return jsonify(user)


@bp.get("/users/<int:user_id>")
@documented("A user's public profile", response=PublicProfile, errors=(400, 503))
def public_profile(user_id: int) -> Response:
    user = domains().auth.get_user(path_id(user_id, "user_id", UserNotFound, "user"))
    return jsonify({"id": user.id, "name": user.name, "created_at": user.created_at})
