"""The API's envelope: JSON errors everywhere, request ids, health."""

from __future__ import annotations

import logging

import pytest


def test_unknown_route_is_a_json_404(client):
    response = client.get("/api/nowhere")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_a_json_405_with_allow(client):
    response = client.delete("/api/register")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ("[1, 2, 3]", "application/json", 400),
        ("email=a@b.c", "application/x-www-form-urlencoded", 415),
    ],
)
def test_malformed_bodies(client, data, content_type, status):
    response = client.post("/api/register", data=data, content_type=content_type)
    assert response.status_code == status
    assert "error" in response.get_json()


def test_oversized_json_is_a_413(client):
    response = client.post(
        "/api/register", data="[" + "1," * 600_000 + "1]", content_type="application/json"
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_unexpected_errors_are_a_json_500(app, client, monkeypatch):
    def explode(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["blog.domains"].posts, "list_posts", explode)
    response = client.get("/api/posts")
    assert response.status_code == 500
    assert response.get_json()["error"] == {
        "code": "internal_error",
        "message": "something went wrong on our side",
    }


def test_request_id_is_taken_or_made_and_logged(client, caplog):
    caplog.set_level(logging.INFO, logger="blog")
    logging.getLogger("blog").propagate = True
    try:
        response = client.get("/api/posts", headers={"X-Request-ID": "trace-123"})
        assert response.headers["X-Request-ID"] == "trace-123"
        made = client.get("/api/posts", headers={"X-Request-ID": "bad id with spaces!"})
        assert made.headers["X-Request-ID"] != "bad id with spaces!"
        assert len(made.headers["X-Request-ID"]) == 32
    finally:
        logging.getLogger("blog").propagate = False
    assert any(getattr(r, "request_id", None) == "trace-123" for r in caplog.records)


def test_health_reports_every_domain(client, modes):
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert set(body["domains"]) == {"auth", "posts", "images", "payments", "email"}
    for name, state in body["domains"].items():
        assert state["mode"] == modes[name]
        if modes[name] != "inprocess":
            assert state["breaker"] == "closed"


def test_server_timing_names_every_domain_call_and_its_mode(client, auth, modes):
    headers = auth.signup()
    post = client.post("/api/posts", json={"title": "t", "body": "b"}, headers=headers).get_json()
    response = client.get(f"/api/posts/{post['id']}")
    entries = {}
    for entry in response.headers["Server-Timing"].split(", "):
        name, *params = entry.split(";")
        entries[name] = dict(p.split("=", 1) for p in params)
    for call in ("posts.get_post_with_comments", "auth.get_user"):
        domain = call.split(".")[0]
        assert entries[call]["desc"] == f'"{modes[domain]}"'
        assert float(entries[call]["dur"]) >= 0
        if modes[domain] == "inprocess":
            assert "service" not in entries[call]
        else:  # the service's own time for the call: inside the call's, never more
            assert 0 < float(entries[call]["service"]) <= float(entries[call]["dur"])
    assert float(entries["total"]["dur"]) >= float(entries["posts.get_post_with_comments"]["dur"])
