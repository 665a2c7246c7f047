"""Registration, login and tokens through the public API."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from blog.config import DEV_JWT_SECRET
from tests.support import eventually


def test_register_returns_public_fields_only(client):
    response = client.post(
        "/api/register",
        json={"email": "  Ada@Example.COM ", "name": "Ada", "password": "correct horse"},
    )
    assert response.status_code == 201
    user = response.get_json()
    assert user["email"] == "ada@example.com"
    assert user["name"] == "Ada"
    assert set(user) == {"id", "email", "name", "created_at"}
    assert "hash" not in json.dumps(user)


def test_duplicate_email_is_a_conflict_whatever_the_case(client, auth):
    auth.register(email="ada@example.com")
    response = client.post(
        "/api/register",
        json={"email": "ADA@example.com", "name": "Other", "password": "another password"},
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "email_taken"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Ada", "password": "long enough"}, "email"),
        ({"email": "ada@example.com", "password": "long enough"}, "name"),
        ({"email": "ada@example.com", "name": "Ada"}, "password"),
        ({"email": 42, "name": "Ada", "password": "long enough"}, "email"),
        ({"email": "ada@example.com", "name": ["Ada"], "password": "long enough"}, "name"),
        ({"email": "ada@example.com", "name": "Ada", "password": 12345678}, "password"),
    ],
)
def test_register_rejects_missing_and_mistyped_fields(client, body, field):
    response = client.post("/api/register", json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["message"]


def test_register_rejects_short_password_and_bad_email(client):
    short = client.post(
        "/api/register", json={"email": "ada@example.com", "name": "Ada", "password": "short"}
    )
    assert short.status_code == 400
    assert "password" in short.get_json()["error"]["message"]
    bad = client.post(
        "/api/register", json={"email": "not-an-email", "name": "Ada", "password": "long enough"}
    )
    assert bad.status_code == 400
    assert "email" in bad.get_json()["error"]["message"]


def test_login_returns_a_bearer_token_that_works(client, auth):
    auth.register()
    response = client.post(
        "/api/login", json={"email": "ada@example.com", "password": "correct horse battery"}
    )
    assert response.status_code == 200
    token = response.get_json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] > 0
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.status_code == 200
    assert me.get_json()["email"] == "ada@example.com"


def test_wrong_password_and_unknown_email_look_the_same(client, auth):
    auth.register()
    wrong = client.post("/api/login", json={"email": "ada@example.com", "password": "nope nope"})
    unknown = client.post("/api/login", json={"email": "bob@example.com", "password": "nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda uid: jwt.encode(
                {
                    "sub": str(uid),
                    "iss": "strangler-blog",
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 600,
                },
                "some-other-secret-that-is-long-enough-0123456789",
                algorithm="HS256",
            ),
            id="forged",
        ),
        pytest.param(
            lambda uid: jwt.encode(
                {
                    "sub": str(uid),
                    "iss": "strangler-blog",
                    "iat": int(time.time()) - 7200,
                    "exp": int(time.time()) - 3600,
                },
                DEV_JWT_SECRET,
                algorithm="HS256",
            ),
            id="expired",
        ),
        pytest.param(
            lambda uid: (
                _b64({"alg": "none", "typ": "JWT"})
                + "."
                + _b64(
                    {
                        "sub": str(uid),
                        "iss": "strangler-blog",
                        "iat": int(time.time()),
                        "exp": int(time.time()) + 600,
                    }
                )
                + "."
            ),
            id="alg-none",
        ),
        pytest.param(lambda uid: "not.a.token", id="garbage"),
    ],
)
def test_bad_tokens_are_refused(client, auth, make_token):
    user = auth.register()
    response = client.get("/api/me", headers={"Authorization": f"Bearer {make_token(user['id'])}"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_writes_need_a_bearer_token(client):
    for method, path in [
        ("post", "/api/posts"),
        ("post", "/api/upload"),
        ("post", "/api/payment"),
        ("patch", "/api/me"),
    ]:
        response = getattr(client, method)(path, json={})
        assert response.status_code == 401, path
        assert response.get_json()["error"]["code"] == "invalid_token"


def test_rename_changes_the_name_everywhere(client, auth):
    headers = auth.signup()
    created = client.post("/api/posts", json={"title": "Hello", "body": "World"}, headers=headers)
    post_id = created.get_json()["id"]
    renamed = client.patch("/api/me", json={"name": "Ada Lovelace"}, headers=headers)
    assert renamed.status_code == 200
    assert renamed.get_json()["name"] == "Ada Lovelace"

    def renamed_everywhere() -> None:  # the post's copy follows the user.renamed event
        detail = client.get(f"/api/posts/{post_id}").get_json()
        assert detail["post"]["author_name"] == "Ada Lovelace"
        assert detail["author"]["name"] == "Ada Lovelace"

    eventually(renamed_everywhere)


def test_public_profile_hides_the_email(client, auth):
    user = auth.register()
    profile = client.get(f"/api/users/{user['id']}")
    assert profile.status_code == 200
    assert profile.get_json() == {"id": user["id"], "name": "Ada", "created_at": user["created_at"]}
    assert client.get("/api/users/9999").status_code == 404
