"""Posts, comments and the aggregated post detail through the public API."""

from __future__ import annotations

import pytest

from tests.support import eventually


def _create(client, headers, **body):
    payload = {"title": "A title", "body": "Some body"} | body
    response = client.post("/api/posts", json=payload, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_and_read_a_post(client, auth):
    headers = auth.signup()
    post = _create(client, headers, title="Hello", body="World", image_url="/api/images/x.jpg")
    assert post["author_name"] == "Ada"
    assert post["image_url"] == "/api/images/x.jpg"
    detail = client.get(f"/api/posts/{post['id']}")
    assert detail.status_code == 200
    body = detail.get_json()
    assert body["post"] == post
    assert body["author"] == {"id": post["author_id"], "name": "Ada", "source": "auth"}
    assert body["comments"] == []


def test_list_is_newest_first_and_paginated(client, auth):
    headers = auth.signup()
    ids = [_create(client, headers, title=f"post {i}")["id"] for i in range(5)]
    page1 = client.get("/api/posts?per_page=2").get_json()
    assert [p["id"] for p in page1["items"]] == ids[::-1][:2]
    assert page1["total"] == 5
    page3 = client.get("/api/posts?per_page=2&page=3").get_json()
    assert [p["id"] for p in page3["items"]] == [ids[0]]
    capped = client.get("/api/posts?per_page=100000").get_json()
    assert capped["per_page"] == 100


@pytest.mark.parametrize("query", ["page=0", "page=abc", "per_page=-1"])
def test_bad_pagination_is_a_400(client, query):
    response = client.get(f"/api/posts?{query}")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"body": "no title"},
        {"title": "no body"},
        {"title": 5, "body": "x"},
        {"title": "", "body": "x"},
        {"title": "x", "body": "x", "image_url": 3},
    ],
)
def test_create_rejects_bad_fields(client, auth, body):
    response = client.post("/api/posts", json=body, headers=auth.signup())
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_input"


def test_sql_injection_strings_are_stored_verbatim(client, auth):
    headers = auth.signup()
    evil = "'); DROP TABLE posts; --"
    post = _create(client, headers, title=evil, body="1 OR 1=1; SELECT * FROM auth_users")
    assert client.get(f"/api/posts/{post['id']}").get_json()["post"]["title"] == evil
    assert client.get("/api/posts").get_json()["total"] == 1


def test_comments(client, auth):
    author = auth.signup()
    post = _create(client, author)
    reader = auth.signup(email="bob@example.com", name="Bob")
    added = client.post(f"/api/posts/{post['id']}/comments", json={"body": "Nice!"}, headers=reader)
    assert added.status_code == 201
    assert added.get_json()["author_name"] == "Bob"
    listed = client.get(f"/api/posts/{post['id']}/comments").get_json()["items"]
    assert [c["body"] for c in listed] == ["Nice!"]
    detail = client.get(f"/api/posts/{post['id']}").get_json()
    assert [c["body"] for c in detail["comments"]] == ["Nice!"]
    missing = client.post("/api/posts/999/comments", json={"body": "x"}, headers=reader)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "post_not_found"


def test_only_the_author_edits_or_deletes(client, auth):
    author = auth.signup()
    post = _create(client, author)
    other = auth.signup(email="mallory@example.com", name="Mallory")
    edit = client.patch(f"/api/posts/{post['id']}", json={"title": "pwned"}, headers=other)
    assert edit.status_code == 403
    assert edit.get_json()["error"]["code"] == "not_post_author"
    assert client.delete(f"/api/posts/{post['id']}", headers=other).status_code == 403
    assert client.get(f"/api/posts/{post['id']}").get_json()["post"]["title"] == "A title"

    edited = client.patch(f"/api/posts/{post['id']}", json={"title": "Better"}, headers=author)
    assert edited.status_code == 200
    assert edited.get_json()["title"] == "Better"
    assert client.delete(f"/api/posts/{post['id']}", headers=author).status_code == 204
    assert client.get(f"/api/posts/{post['id']}").status_code == 404


def test_unknown_post_is_a_json_404(client):
    response = client.get("/api/posts/12345")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "post_not_found"


def test_post_created_sends_a_confirmation_email(client, auth):
    headers = auth.signup()
    _create(client, headers, title="Hello inbox")

    def confirmed() -> None:
        subjects = [m["subject"] for m in client.get("/api/dev/inbox").get_json()["items"]]
        assert any("Hello inbox" in s for s in subjects)

    eventually(confirmed)
