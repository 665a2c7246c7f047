"""Rate limits at the edge (issue 12, item 6): login per account and per address, register per
address, writes per user; a 429 in the API's error shape with Retry-After; one count across app
instances through Redis, and a per-process count (said at start) when Redis is away."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from blog import create_app
from blog.config import ConfigError
from blog.web.limits import LIMITED, rate_limited
from tests.images import image_bytes
from tests.support import TEST_RATE_LIMITS, free_port, make_config, require_service

PASSWORD = "correct horse battery"
REDIS_START = "redis-server --daemonize yes"


def _app(tmp_path: Path, **limits: Any) -> Flask:
    return create_app(make_config(tmp_path, rate_limits={**TEST_RATE_LIMITS, **limits}))


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        app.extensions["blog.runtime"].close()


def _from(address: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": address}}


def _register(client: FlaskClient, email: str, address: str = "10.0.0.1") -> None:
    body = {"email": email, "name": "Ada", "password": PASSWORD}
    assert client.post("/api/register", json=body, **_from(address)).status_code == 201


def _login(client: FlaskClient, email: str, address: str, password: str = PASSWORD) -> Any:
    return client.post("/api/login", json={"email": email, "password": password}, **_from(address))


def _assert_too_many(response: Any, says: str, window: int = 60) -> int:
    """A 429 in the error shape, with a Retry-After within the limit's window."""
    assert response.status_code == 429, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "too_many_requests"
    assert says in error["message"]
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window
    assert error["details"]["retry_after"] == retry_after
    assert f"try again in {retry_after} s" in error["message"]
    return retry_after


def test_login_is_limited_per_account_whatever_the_address(tmp_path, apps):
    app = _app(tmp_path, login_per_account="3 per minute")
    apps.append(app)
    client = app.test_client()
    _register(client, "ada@example.com")
    _register(client, "bob@example.com")
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # a password guessed from 3 addresses
        assert _login(client, "ada@example.com", address, "wrong password").status_code == 401
    # the 4th try, even from a new address and with the right password, even spelled otherwise
    _assert_too_many(
        _login(client, " ADA@example.com", "10.0.0.4"), "too many login attempts for this account"
    )
    assert _login(client, "bob@example.com", "10.0.0.4").status_code == 200  # others are fine


def test_login_is_limited_per_address(tmp_path, apps):
    app = _app(tmp_path, login_per_address="3 per minute")
    apps.append(app)
    client = app.test_client()
    for n in range(3):  # one address tries three accounts
        assert _login(client, f"user{n}@example.com", "10.0.0.9").status_code == 401
    _assert_too_many(
        _login(client, "user9@example.com", "10.0.0.9"), "too many login attempts from this address"
    )
    assert _login(client, "user9@example.com", "10.0.0.10").status_code == 401  # another address


def test_register_is_limited_per_address(tmp_path, apps):
    app = _app(tmp_path, register_per_address="2 per hour")
    apps.append(app)
    client = app.test_client()
    _register(client, "one@example.com", "10.0.1.1")
    _register(client, "two@example.com", "10.0.1.1")
    body = {"email": "three@example.com", "name": "C", "password": PASSWORD}
    refused = client.post("/api/register", json=body, **_from("10.0.1.1"))
    retry_after = _assert_too_many(refused, "from this address", window=3600)
    assert retry_after > 3000  # the oldest of the two leaves the hour's window in about an hour
    assert client.post("/api/register", json=body, **_from("10.0.1.2")).status_code == 201


def _token(client: FlaskClient, email: str) -> dict[str, str]:
    _register(client, email)
    body = _login(client, email, "10.0.0.1").get_json()
    return {"Authorization": f"Bearer {body['access_token']}"}


def test_writes_are_limited_per_user_across_every_kind_of_write(tmp_path, apps):
    app = _app(tmp_path, writes_per_user="5 per minute")
    apps.append(app)
    client = app.test_client()
    ada, bob = _token(client, "ada@example.com"), _token(client, "bob@example.com")
    post = client.post("/api/posts", json={"title": "t", "body": "b"}, headers=ada)
    assert post.status_code == 201
    post_id = post.get_json()["id"]
    writes = [
        client.post(f"/api/posts/{post_id}/comments", json={"body": "c"}, headers=ada),
        client.patch("/api/me", json={"name": "Ada L"}, headers=ada),
        client.post(
            "/api/upload",
            data={"image": (io.BytesIO(image_bytes(size=(64, 48))), "a.jpg")},
            headers=ada,
            content_type="multipart/form-data",
        ),
        client.post(
            "/api/payment",
            json={"amount": 500, "currency": "usd", "payment_method": "pm_card_visa"},
            headers={**ada, "Idempotency-Key": uuid.uuid4().hex},
        ),
    ]
    assert [w.status_code for w in writes] == [201, 200, 201, 201]
    _assert_too_many(
        client.patch(f"/api/posts/{post_id}", json={"title": "t2"}, headers=ada),
        "too many writes",
    )
    _assert_too_many(client.delete(f"/api/posts/{post_id}", headers=ada), "too many writes")
    # reads are not limited, and another user has a budget of their own
    assert client.get(f"/api/posts/{post_id}").status_code == 200
    assert client.get("/api/me", headers=ada).status_code == 200
    assert (
        client.post("/api/posts", json={"title": "t", "body": "b"}, headers=bob).status_code == 201
    )
    # a write without a valid token is still a 401, counted by address
    assert client.post("/api/posts", json={"title": "t", "body": "b"}).status_code == 401


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    require_service("Redis", 6379, REDIS_START)
    import redis

    prefix = f"blog-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis(host="127.0.0.1", port=6379)
    for key in client.scan_iter(match=f"*{prefix}*"):
        client.delete(key)
    client.close()


def test_two_app_instances_share_one_count_through_redis(tmp_path, apps, redis_prefix):
    """Two workers (or two monolith processes) behind one balancer: an attacker spreading guesses
    over them still meets one limit."""
    import redis

    limits = {
        "storage_url": "redis://127.0.0.1:6379/0",
        "key_prefix": redis_prefix,
        "login_per_account": "3 per minute",
    }
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, second = _app(tmp_path / "one", **limits), _app(tmp_path / "two", **limits)
    apps.extend([first, second])
    one, two = first.test_client(), second.test_client()
    for client in (one, two, one):
        assert _login(client, "ada@example.com", "10.0.0.1", "guess").status_code == 401
    _assert_too_many(_login(two, "ada@example.com", "10.0.0.2"), "for this account")
    _assert_too_many(_login(one, "ada@example.com", "10.0.0.3"), "for this account")
    keys = redis.Redis(host="127.0.0.1", port=6379).keys(f"*{redis_prefix}*")
    assert keys, "the count lives in Redis"
    assert not any(b"ada@example.com" in key for key in keys)  # the account as a digest only


def test_without_redis_each_process_counts_in_memory_and_says_so_at_start(tmp_path, apps, caplog):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    app = _app(tmp_path, storage_url=nowhere, login_per_account="2 per minute")
    apps.append(app)
    client = app.test_client()
    logging.getLogger("blog").propagate = True
    try:
        with caplog.at_level(logging.WARNING):
            assert client.get("/api/posts").status_code == 200  # starting: said once
            assert client.get("/api/posts").status_code == 200
        said = {(r.levelno, r.getMessage()) for r in caplog.records if r.name == "blog.web.limits"}
        assert len(said) == 1
        ((level, message),) = said
        assert level == logging.WARNING
        assert "cannot be reached" in message and "memory" in message
    finally:
        logging.getLogger("blog").propagate = False
    for _ in range(2):
        assert _login(client, "ada@example.com", "10.0.0.1", "guess").status_code == 401
    _assert_too_many(_login(client, "ada@example.com", "10.0.0.1"), "for this account")


def test_a_wrong_limit_stops_start_up_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"rate_limits\.writes_per_user: 'lots' is not a rate"):
        make_config(tmp_path, rate_limits={"writes_per_user": "lots"})
    with pytest.raises(ConfigError, match=r"rate_limits\.storage_url: 'mongodb://x'"):
        make_config(tmp_path, rate_limits={"storage_url": "mongodb://x"})


def test_every_write_of_the_api_is_limited_and_documented(tmp_path, apps):
    app = _app(tmp_path)
    apps.append(app)
    writes = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and (rule.methods or set()) & {"POST", "PATCH", "DELETE"}
    }
    assert writes == set(LIMITED)
    assert all(rate_limited(app.view_functions[endpoint]) for endpoint in writes)
    document = app.test_client().get("/api/openapi.json").get_json()
    assert "429" in document["paths"]["/api/login"]["post"]["responses"]
    assert "429" in document["paths"]["/api/upload"]["post"]["responses"]
    assert "429" not in document["paths"]["/api/posts"]["get"]["responses"]


def test_limits_can_be_turned_off(tmp_path, apps):
    app = _app(tmp_path, enabled=False, login_per_account="1 per minute")
    apps.append(app)
    client = app.test_client()
    for _ in range(3):
        assert _login(client, "ada@example.com", "10.0.0.1").status_code == 401
