"""Internals stay internal (issue 12, item 10): what the edge tells an anonymous caller, what a
service's 401 says, the internal call graph in ``Server-Timing``, and the service credentials
(long enough in production, one per service)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask

from blog import create_app
from blog.config import Config, ConfigError, load_config
from blog.serving import free_port
from blog.timing import server_timing, service_seconds
from blog.transport.credentials import SERVICE_TOKEN_ISSUER, ServiceCredentials
from blog.wiring import build_monolith, build_service
from tests.support import config_overrides

STRONG = {
    "BLOG_SECRET_KEY": "s" * 40,
    "BLOG_JWT_SECRET": "j" * 40,
    "BLOG_INTERNAL_TOKEN": "m" * 40,
}
PER_SERVICE = {
    f"BLOG_INTERNAL_TOKEN_{domain.upper()}": domain * 10
    for domain in ("auth", "posts", "images", "payments", "email")
}
"""A secret of its own for every service: ``authauth...`` for auth, ``imagesimages...``."""


def _config(tmp_path: Path, environ: Mapping[str, str], **extra: Any) -> Config:
    empty = tmp_path / "empty-config.yaml"
    empty.write_text("{}\n")
    return load_config(empty, overrides=config_overrides(tmp_path, **extra), environ=environ)


@pytest.fixture
def down_images() -> dict[str, Any]:
    """images extracted at a port nothing listens on: /api/health has an error text, an
    instance URL and a breaker to tell about."""
    return {"images": {"mode": "http", "url": f"http://127.0.0.1:{free_port()}"}}


def _app(config: Config) -> Iterator[Flask]:
    app = create_app(config)
    try:
        yield app
    finally:
        app.extensions["blog.runtime"].close()


@pytest.fixture
def production_app(tmp_path: Path, down_images: dict[str, Any]) -> Iterator[Flask]:
    config = _config(tmp_path, STRONG | PER_SERVICE, env="production", services=down_images)
    yield from _app(config)


# --------------------------------------------------------------------------- /api/health


def test_anonymous_health_in_production_says_only_up_or_down(production_app: Flask) -> None:
    response = production_app.test_client().get("/api/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["domains"]["images"] == {"status": "down"}
    assert body["domains"]["posts"] == {"status": "up"}
    text = response.get_data(as_text=True)
    for leak in ("127.0.0.1", "breaker", "unavailable", "instances", "mode", "error"):
        assert leak not in text, leak


def test_health_details_need_the_internal_credential_in_production(
    production_app: Flask,
) -> None:
    monolith = ServiceCredentials(STRONG["BLOG_INTERNAL_TOKEN"])
    client = production_app.test_client()
    detailed = client.get(
        "/api/health", headers={"Authorization": f"Bearer {monolith.token_for('monolith')}"}
    ).get_json()
    images = detailed["domains"]["images"]
    assert images["mode"] == "http"
    assert images["status"] == "down"
    assert "breaker" in images and "instances" in images
    # a service's token (here images', which decodes hostile files) does not open the details
    images_token = ServiceCredentials(PER_SERVICE["BLOG_INTERNAL_TOKEN_IMAGES"])
    for token in (images_token.token_for("monolith"), "not-a-jwt"):
        shown = client.get("/api/health", headers={"Authorization": f"Bearer {token}"})
        assert shown.get_json()["domains"]["images"] == {"status": "down"}


def test_health_shows_everything_outside_production(
    tmp_path: Path, down_images: dict[str, Any]
) -> None:
    for app in _app(_config(tmp_path, {}, services=down_images)):
        images = app.test_client().get("/api/health").get_json()["domains"]["images"]
        assert images["mode"] == "http"
        assert "breaker" in images and "error" in images


# --------------------------------------------------------------------------- Server-Timing


def test_server_timing_is_not_sent_in_production(production_app: Flask) -> None:
    response = production_app.test_client().get("/api/posts")
    assert response.status_code == 200
    assert "Server-Timing" not in response.headers


def test_server_timing_in_production_when_config_turns_it_on(tmp_path: Path) -> None:
    config = _config(tmp_path, STRONG, env="production", server_timing=True)
    for app in _app(config):
        response = app.test_client().get("/api/posts")
        assert "posts.list_posts" in response.headers["Server-Timing"]


def test_server_timing_is_sent_outside_production_unless_turned_off(tmp_path: Path) -> None:
    for app in _app(_config(tmp_path, {})):
        assert "total;dur=" in app.test_client().get("/api/posts").headers["Server-Timing"]
    for app in _app(_config(tmp_path, {}, server_timing=False)):
        assert "Server-Timing" not in app.test_client().get("/api/posts").headers


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("total;dur=0.153", 0.000153),
        ('db;dur=2, total;desc="all";dur=12.5', 0.0125),
        (None, None),
        ("", None),
        ("total", None),
        ("total;dur=", None),
        ("total;dur=abc", None),
        ("total;dur=nan", None),
        ("total;dur=inf", None),
        ("total;dur=-1", None),
        ("app;dur=3", None),
    ],
)
def test_a_services_own_time_is_read_from_its_server_timing_and_nothing_else(
    header: str | None, seconds: float | None
) -> None:
    assert service_seconds(header) == (pytest.approx(seconds) if seconds is not None else None)


def test_an_extracted_calls_entry_carries_the_services_own_time() -> None:
    header = server_timing(
        [
            ("auth.get_user", "http", 0.0005, 0.000153),
            ("posts.get_post", "inprocess", 0.0002, None),
        ],
        0.001,
    )
    assert header == (
        'auth.get_user;dur=0.500;desc="http";service=0.153, '
        'posts.get_post;dur=0.200;desc="inprocess", total;dur=1.000'
    )


# --------------------------------------------------------------------------- a service's 401


def _token(secret: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": SERVICE_TOKEN_ISSUER, "aud": "auth", "iat": now, "exp": now + 60}
    return jwt.encode({**payload, **claims}, secret, algorithm="HS256")


def test_a_refused_service_credential_does_not_say_why(tmp_path: Path) -> None:
    runtime = build_service("auth", _config(tmp_path, {}))
    secret = load_config(environ={}).transport.internal_token
    try:
        client = runtime.app.test_client()
        refused = {
            "expired": _token(secret, iat=int(time.time()) - 600, exp=int(time.time()) - 300),
            "another audience": _token(secret, aud="payments"),
            "another issuer": _token(secret, iss="somebody"),
            "wrong signature": _token("x" * 40),
            "not a JWT": "garbage",
        }
        messages = set()
        for name, token in refused.items():
            response = client.get("/users/1", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, name
            error = response.get_json()["error"]
            assert error["code"] == "service_unauthorized"
            messages.add(error["message"])
        # one message for every reason: the JWT library's reason stays in the service's log
        assert messages == {"the service credential was refused"}
    finally:
        runtime.close()


# --------------------------------------------------------------------------- the credentials


def test_production_needs_a_long_internal_credential(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BLOG_INTERNAL_TOKEN: must be at least 32 bytes"):
        _config(
            tmp_path,
            STRONG | {"BLOG_INTERNAL_TOKEN": "short-but-not-the-default"},
            env="production",
        )
    with pytest.raises(ConfigError, match="BLOG_INTERNAL_TOKEN_IMAGES: must be at least 32 bytes"):
        _config(tmp_path, STRONG | {"BLOG_INTERNAL_TOKEN_IMAGES": "short"}, env="production")
    assert _config(tmp_path, STRONG | PER_SERVICE, env="production").env == "production"


def test_production_refuses_the_shared_fallback_for_an_extracted_service(
    tmp_path: Path, down_images: dict[str, Any]
) -> None:
    config = _config(tmp_path, STRONG, env="production", services=down_images)
    with pytest.raises(ConfigError, match="BLOG_INTERNAL_TOKEN_IMAGES"):
        build_monolith(config)
    with pytest.raises(ConfigError, match="BLOG_INTERNAL_TOKEN_IMAGES"):
        build_service("images", config)
    # outside production the shared BLOG_INTERNAL_TOKEN stands in for every service
    build_monolith(_config(tmp_path, {}, services=down_images)).close()


def test_production_refuses_one_secret_shared_by_two_services(tmp_path: Path) -> None:
    same = PER_SERVICE | {"BLOG_INTERNAL_TOKEN_AUTH": PER_SERVICE["BLOG_INTERNAL_TOKEN_IMAGES"]}
    with pytest.raises(ConfigError, match="BLOG_INTERNAL_TOKEN_AUTH, BLOG_INTERNAL_TOKEN_IMAGES"):
        _config(tmp_path, STRONG | same, env="production")


@pytest.mark.parametrize("victim", ["auth", "payments"])
def test_a_token_minted_with_the_images_secret_is_refused(tmp_path: Path, victim: str) -> None:
    """The images service decodes hostile files: whoever takes it over holds its secret, and
    that secret must not open auth or payments."""
    (tmp_path / "images").mkdir()
    (tmp_path / victim).mkdir()
    # each service process holds its own secret only
    images = build_service(
        "images",
        _config(tmp_path / "images", {"BLOG_INTERNAL_TOKEN_IMAGES": "i" * 40}),
    )
    target = build_service(
        victim,
        _config(tmp_path / victim, {f"BLOG_INTERNAL_TOKEN_{victim.upper()}": victim[0] * 40}),
    )
    try:
        held_by_images = images.credentials
        assert held_by_images is not None
        client = target.app.test_client()
        path = "/users/1" if victim == "auth" else "/payments/1"
        forged = {
            # what someone who took over images could make: its secret, the victim's audience...
            "images' secret": ServiceCredentials({victim: "i" * 40}).token_for(victim),
            # ...or a genuine token of images' own
            "images' own token": held_by_images.token_for("images"),
        }
        for name, token in forged.items():
            response = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, name
        with pytest.raises(KeyError):
            held_by_images.token_for(victim)  # images holds no secret but its own
        # the monolith, which holds every service's secret, still gets in
        monolith = ServiceCredentials({victim: victim[0] * 40, "images": "i" * 40})
        response = client.get(
            path, headers={"Authorization": f"Bearer {monolith.token_for(victim)}"}
        )
        assert response.status_code == 404  # past the credential: no such user or payment
    finally:
        images.close()
        target.close()
