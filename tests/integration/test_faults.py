"""Faults across real process boundaries: a dead, hung or flapping service, and the breaker.

The tutorial's cascading-failure story, run for real: the monolith keeps serving what does not
depend on the broken service, answers a clear 503 for what does, stops hammering a service that
keeps failing, and recovers by itself once it is back.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from blog import create_app
from blog.config import DEV_INTERNAL_TOKEN
from blog.transport.credentials import ServiceCredentials
from tests.conftest import AuthActions
from tests.images import image_bytes
from tests.support import ServiceProcess, eventually, free_port, make_config

FAST_BREAKER = {
    "connect_timeout_seconds": 0.5,
    "read_timeout_seconds": 1.0,
    "retries": 0,
    "breaker_failure_rate": 0.5,
    "breaker_minimum_calls": 3,
    "breaker_reset_timeout_seconds": 0.5,
}


class CountingListener:
    """A loopback socket that accepts connections and either drops or holds them, counting each.

    It stands in for a broken service: ``hold=True`` is a hung one (accepts, never answers).
    """

    def __init__(self, hold: bool = False) -> None:
        self.accepted = 0
        self._hold = hold
        self._held: list[socket.socket] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self._hold:
                self._held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self._sock.close()


def _upload(client, headers):
    return client.post(
        "/api/upload",
        data={"image": (io.BytesIO(image_bytes("JPEG", (64, 48))), "x.jpg")},
        headers=headers,
        content_type="multipart/form-data",
    )


@pytest.fixture
def images_service(tmp_path: Path) -> Iterator[ServiceProcess]:
    with ServiceProcess("images", tmp_path / "images-svc") as service:
        yield service


@pytest.fixture
def gateway_with_images(tmp_path: Path, images_service: ServiceProcess):
    config = make_config(
        tmp_path,
        services={"images": {"mode": "http", "url": images_service.url}},
        transport=FAST_BREAKER,
    )
    app = create_app(config)
    yield app
    app.extensions["blog.runtime"].close()


def test_images_down_the_rest_still_serves(gateway_with_images, images_service):
    client = gateway_with_images.test_client()
    headers = AuthActions(client).signup()
    stored = _upload(client, headers)
    assert stored.status_code == 201
    post = client.post(
        "/api/posts",
        json={"title": "t", "body": "b", "image_url": stored.get_json()["url"]},
        headers=headers,
    ).get_json()

    images_service.kill()

    assert client.get("/api/posts").status_code == 200
    detail = client.get(f"/api/posts/{post['id']}")
    assert detail.status_code == 200
    failed = _upload(client, headers)
    assert failed.status_code == 503
    error = failed.get_json()["error"]
    assert error["code"] == "images_unavailable"
    assert error["details"]["service"] == "images"
    health = client.get("/api/health").get_json()
    assert health["status"] == "degraded"
    assert health["domains"]["images"]["status"] == "down"
    assert health["domains"]["posts"]["status"] == "ok"


def test_breaker_opens_fails_fast_without_network_and_recovers(gateway_with_images, images_service):
    client = gateway_with_images.test_client()
    headers = AuthActions(client).signup()
    breaker = gateway_with_images.extensions["blog.domains"].images.transport.breaker
    assert _upload(client, headers).status_code == 201

    images_service.kill()
    for _ in range(FAST_BREAKER["breaker_minimum_calls"]):
        assert _upload(client, headers).status_code == 503
    assert breaker.state == "open"

    # While open, calls fail without touching the network: the service's port now belongs to a
    # listener that counts every connection, and none arrives.
    host, port = "127.0.0.1", images_service.port
    with socket.create_server((host, port)) as spy:
        spy.settimeout(0)
        for _ in range(20):
            failed = _upload(client, headers)
            assert failed.status_code == 503
            assert "circuit open" in failed.get_json()["error"]["message"]
        with pytest.raises(BlockingIOError):
            spy.accept()

    images_service.start()
    # After reset_timeout the breaker lets one trial call through; it succeeds and closes.
    eventually(lambda: _assert_status(_upload(client, headers), 201), timeout=15, interval=0.2)
    assert breaker.state == "closed"


def _assert_status(response, status: int) -> None:
    assert response.status_code == status, response.get_json()


def test_a_hung_service_times_out_instead_of_hanging(tmp_path):
    hung = CountingListener(hold=True)
    try:
        config = make_config(
            tmp_path,
            services={"images": {"mode": "http", "url": hung.url}},
            transport=FAST_BREAKER,
        )
        app = create_app(config)
        client = app.test_client()
        headers = AuthActions(client).signup()
        response = _upload(client, headers)
        assert response.status_code == 503
        assert "timed out" in response.get_json()["error"]["message"]
        assert hung.accepted == 1  # one attempt: an upload is never retried blindly
        app.extensions["blog.runtime"].close()
    finally:
        hung.close()


def test_auth_down_post_detail_shows_the_stored_author_name(tmp_path):
    with ServiceProcess("auth", tmp_path / "auth-svc") as auth_service:
        app = create_app(
            make_config(
                tmp_path,
                services={"auth": {"mode": "http", "url": auth_service.url}},
                transport=FAST_BREAKER,
            )
        )
        client = app.test_client()
        headers = AuthActions(client).signup(name="Ada")
        post = client.post("/api/posts", json={"title": "t", "body": "b"}, headers=headers)
        post_id = post.get_json()["id"]

        auth_service.kill()
        detail = client.get(f"/api/posts/{post_id}")
        assert detail.status_code == 200
        assert detail.get_json()["author"] == {
            "id": post.get_json()["author_id"],
            "name": "Ada",
            "source": "post",
        }
        assert client.get("/api/posts").status_code == 200
        assert (
            client.post("/api/posts", json={"title": "t", "body": "b"}, headers=headers).status_code
            == 503
        )  # verifying a token needs auth
        app.extensions["blog.runtime"].close()


def test_request_id_reaches_the_service_log(tmp_path):
    with ServiceProcess("auth", tmp_path / "auth-svc", log_level="INFO") as auth_service:
        app = create_app(
            make_config(tmp_path, services={"auth": {"mode": "http", "url": auth_service.url}})
        )
        client = app.test_client()
        response = client.post(
            "/api/register",
            json={"email": "trace@example.com", "name": "T", "password": "long enough"},
            headers={"X-Request-ID": "trace-across-the-boundary"},
        )
        assert response.status_code == 201
        assert response.headers["X-Request-ID"] == "trace-across-the-boundary"
        eventually(lambda: _assert_in("[trace-across-the-boundary]", auth_service.log()))
        app.extensions["blog.runtime"].close()


def _assert_in(needle: str, haystack: str) -> None:
    assert needle in haystack


def test_a_service_refuses_calls_without_its_own_credential(tmp_path):
    with ServiceProcess("auth", tmp_path / "auth-svc") as auth_service:
        body = {"email": "x@example.com", "name": "X", "password": "long enough"}
        credentials = ServiceCredentials(DEV_INTERNAL_TOKEN)
        refused = {
            "none": {},
            "wrong secret": {
                "Authorization": "Bearer "
                + ServiceCredentials("another-secret-entirely-0123456789abcdef").token_for("auth")
            },
            "another service's": {"Authorization": "Bearer " + credentials.token_for("images")},
            "a raw secret": {"Authorization": f"Bearer {DEV_INTERNAL_TOKEN}"},
        }
        for name, headers in refused.items():
            response = requests.post(
                auth_service.url + "/register", json=body, headers=headers, timeout=5
            )
            assert response.status_code == 401, name
            assert response.json()["error"]["code"] == "service_unauthorized"
        # nothing was written: the same email registers fine with the right credential
        ok = requests.post(
            auth_service.url + "/register",
            json=body,
            timeout=5,
            headers={"Authorization": "Bearer " + credentials.token_for("auth")},
        )
        assert ok.status_code == 201
        assert requests.get(auth_service.url + "/health", timeout=5).status_code == 200


def test_unreachable_port_is_a_fast_503(tmp_path):
    app = create_app(
        make_config(
            tmp_path,
            services={"payments": {"mode": "http", "url": f"http://127.0.0.1:{free_port()}"}},
            transport=FAST_BREAKER,
        )
    )
    client = app.test_client()
    headers = AuthActions(client).signup()
    response = client.post(
        "/api/payment",
        json={"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"},
        headers=headers | {"Idempotency-Key": "k1"},
    )
    assert response.status_code == 503
    assert response.get_json()["error"]["details"]["service"] == "payments"
    app.extensions["blog.runtime"].close()


def test_only_safe_calls_are_retried():
    """Reads (and keyed writes) are retried with backoff; a plain write is sent exactly once."""
    from blog.transport import ConnectionBroken, WireRequest
    from blog.transport.http import PooledHttpTransport
    from blog.transport.resilience import CircuitBreaker, ResilientTransport

    dropping = CountingListener()
    try:
        transport = ResilientTransport(
            PooledHttpTransport(dropping.url, connect_timeout=1, read_timeout=1),
            CircuitBreaker("probe", 30, fail_max=100),
            retries=2,
        )
        with pytest.raises(ConnectionBroken):
            transport.send(WireRequest("GET", "/thing", "probe.read", safe=True))
        eventually(lambda: _assert_equal(dropping.accepted, 3))
        with pytest.raises(ConnectionBroken):
            transport.send(WireRequest("POST", "/thing", "probe.write", safe=False, body=b"{}"))
        eventually(lambda: _assert_equal(dropping.accepted, 4))
        transport.close()
    finally:
        dropping.close()


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected
