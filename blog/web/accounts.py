"""Registration, login and the caller's own account."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, jsonify

from blog.web.auth_guard import current_user, login_required
from blog.web.context import domains
from blog.web.inputs import field, json_body

bp = Blueprint("accounts", __name__)


@bp.post("/register")
def register() -> tuple[Response, int]:
    body = json_body()
    user = domains().auth.register(
        email=field(body, "email", str),
        name=field(body, "name", str),
        password=field(body, "password", str),
    )
    return jsonify(asdict(user)), 201


@bp.post("/login")
def login() -> Response:
    body = json_body()
    token = domains().auth.login(
        email=field(body, "email", str), password=field(body, "password", str)
    )
    return jsonify(asdict(token))


@bp.get("/me")
@login_required
def me() -> Response:
    return jsonify(asdict(current_user()))


@bp.patch("/me")
@login_required
def rename_me() -> Response:
    body = json_body()
    user = domains().auth.rename(current_user().id, field(body, "name", str))
    return jsonify(asdict(user))


@bp.get("/users/<int:user_id>")
def public_profile(user_id: int) -> Response:
    user = domains().auth.get_user(user_id)
    return jsonify({"id": user.id, "name": user.name, "created_at": user.created_at})
