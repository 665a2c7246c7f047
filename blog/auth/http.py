"""The auth interface served over HTTP (mounted by ``extracted/auth``); ``client.py`` is the
other end of the same wire format. Inputs pass through untouched so the service's own validation
produces exactly the errors the in-process call would.
"""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, current_app, jsonify

from blog.auth import AuthService
from blog.transport import read_json


def make_blueprint(service: AuthService) -> Blueprint:
    bp = Blueprint("auth_service", __name__)

    def body() -> dict:
        return read_json(current_app.config["BLOG"].max_json_bytes)

    @bp.post("/register")
    def register() -> tuple[Response, int]:
        data = body()
        user = service.register(data.get("email"), data.get("name"), data.get("password"))
        return jsonify(asdict(user)), 201

    @bp.post("/login")
    def login() -> Response:
        data = body()
        return jsonify(asdict(service.login(data.get("email"), data.get("password"))))

    @bp.post("/verify")
    def verify() -> Response:
        return jsonify(asdict(service.verify(body().get("token"))))

    @bp.get("/users/<int(signed=True):user_id>")
    def get_user(user_id: int) -> Response:
        return jsonify(asdict(service.get_user(user_id)))

    @bp.patch("/users/<int(signed=True):user_id>")
    def rename(user_id: int) -> Response:
        return jsonify(asdict(service.rename(user_id, body().get("name"))))

    return bp
