"""Faults injected from config (``services.<domain>.faults``), through the whole gateway, over
the in-process wire: what a user of the lab sees when a service is slow, failing or gone."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from blog import create_app
from tests.conftest import AuthActions
from tests.images import image_bytes
from tests.support import make_config


def gateway(tmp_path: Path, domain: str, *faults: dict[str, Any], **extra: Any) -> Flask:
    services = {
        domain: {
            "mode": "wire",
            "database_url": f"sqlite:///{tmp_path}/{domain}-service.db",
            "faults": list(faults),
        }
    }
    return create_app(make_config(tmp_path, services=services, **extra))


@pytest.fixture
def closing() -> Any:
    apps: list[Flask] = []
    yield apps.append
    for app in apps:
        app.extensions["blog.runtime"].close()


def test_an_error_fault_fails_its_route_only_and_health_shows_it(tmp_path, closing):
    app = gateway(tmp_path, "images", {"kind": "error", "route": "upload", "status": 503})
    closing(app)
    client = app.test_client()
    headers = AuthActions(client).signup()
    response = client.post(
        "/api/upload",
        data={"image": (io.BytesIO(image_bytes("PNG", (20, 10))), "a.png")},
        headers=headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "images_unavailable"
    assert client.get("/api/images/0123456789abcdef0123456789abcdef.jpg").status_code == 404
    images = client.get("/api/health").get_json()["domains"]["images"]
    assert images["faults"] == [
        {"kind": "error", "route": "upload", "probability": 1.0, "latency_ms": 0.0, "status": 503}
    ]
    # One breaker per service, not per route: the reads that answered since closed it again.
    assert images["breaker"] == "closed"


def test_a_latency_fault_shows_in_server_timing(tmp_path, closing):
    app = gateway(
        tmp_path, "posts", {"kind": "latency", "route": "get_post_with_comments", "latency_ms": 60}
    )
    closing(app)
    client = app.test_client()
    headers = AuthActions(client).signup()
    post = client.post("/api/posts", json={"title": "t", "body": "b"}, headers=headers).get_json()
    response = client.get(f"/api/posts/{post['id']}")
    assert response.status_code == 200
    timings = dict(
        (entry.split(";")[0], entry) for entry in response.headers["Server-Timing"].split(", ")
    )
    duration = float(timings["posts.get_post_with_comments"].split("dur=")[1].split(";")[0])
    assert duration >= 60  # at least the injected delay; an upper bound would be a flaky test


def test_a_reset_after_an_unsafe_write_fails_it_once_and_the_write_stands(tmp_path, closing):
    """The lesson of never retrying an unsafe write: the service did the work, the answer was
    lost; a retry would have published the post twice."""
    app = gateway(tmp_path, "posts", {"kind": "reset", "route": "create_post"})
    closing(app)
    client = app.test_client()
    headers = AuthActions(client).signup()
    response = client.post("/api/posts", json={"title": "once", "body": "b"}, headers=headers)
    assert response.status_code == 503
    assert "reset" in response.get_json()["error"]["message"]
    titles = [p["title"] for p in client.get("/api/posts").get_json()["items"]]
    assert titles == ["once"]


def test_a_hang_waits_out_the_read_timeout(tmp_path, closing):
    app = gateway(
        tmp_path,
        "auth",
        {"kind": "hang", "route": "get_user"},
        transport={"read_timeout_seconds": 0.05, "retries": 0},
    )
    closing(app)
    client = app.test_client()
    headers = AuthActions(client).signup()
    post = client.post("/api/posts", json={"title": "t", "body": "b"}, headers=headers).get_json()
    detail = client.get(f"/api/posts/{post['id']}").get_json()
    # auth did not answer in time: the page still renders, with the post's own copy of the name
    assert detail["author"] == {"id": post["author_id"], "name": "Ada", "source": "post"}
