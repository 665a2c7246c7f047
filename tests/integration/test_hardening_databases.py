"""Issue 12's database-specific defects on the real databases: PostgreSQL and MariaDB, for the
monolith (every domain on that database) and for extracted services running on it.

- an id past a 32-bit ``INTEGER`` made PostgreSQL refuse the query (a 500);
- a NUL in a text field made PostgreSQL refuse the insert (a 500);
- a post body over 64 KiB of UTF-8 overflowed MariaDB's ``TEXT`` (a 500);
- MariaDB's case-insensitive collation made two idempotency keys one;
- an edit racing a delete (``StaleDataError``) and fifty payments racing for one key
  (``IntegrityError``) were 500s under real concurrency;
- concurrent renames must leave one name everywhere (row locks, versions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from blog import create_app
from blog.auth.tokens import issue_token
from blog.errors import MAX_STORED_ID, InvalidInput
from blog.events import USER_RENAMED, Event
from blog.posts import PostNotFound
from tests.integration.databases import DATABASES
from tests.support import ID_ROUTES, ServiceProcess, eventually, make_config, race

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb]

PASSWORD = "correct horse battery"
CARD = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
PAST = MAX_STORED_ID + 1


@pytest.fixture(params=list(DATABASES))
def database(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """Makes fresh databases of one kind (PostgreSQL, MariaDB); all dropped at the end."""
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(DATABASES[request.param]())


@contextlib.contextmanager
def monolith(tmp_path: Path, **extra: Any) -> Iterator[Flask]:
    app = create_app(make_config(tmp_path, **extra))
    try:
        yield app
    finally:
        app.extensions["blog.runtime"].close()


def _signup(client: FlaskClient, email: str = "ada@example.com") -> dict[str, str]:
    response = client.post(
        "/api/register", json={"email": email, "name": "Ada", "password": PASSWORD}
    )
    assert response.status_code == 201, response.get_json()
    response = client.post("/api/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


# --------------------------------------------------------------------------- ids


def test_the_monolith_on_a_real_database_answers_any_id(tmp_path, database):
    with monolith(tmp_path, database_url=database()) as app:
        client = app.test_client()
        headers = _signup(client)
        for row_id in (PAST, 2**53, 2**63 - 1):
            for method, path, body, code in ID_ROUTES:
                response = client.open(
                    path.format(row_id), method=method, json=body, headers=headers
                )
                assert response.status_code == 404, (method, path, response.get_json())
                assert response.get_json()["error"]["code"] == code
        # a token for a user id no row can have (only a holder of the secret could make one)
        token = issue_token(PAST, app.config["BLOG"].auth)
        me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401, me.get_json()


def test_services_on_a_real_database_answer_any_id(tmp_path, database):
    """Each service on its own database, called through the wire client: the domain's own
    answer, no query that the database would refuse."""
    services = {
        domain: {"mode": "wire", "database_url": database()}
        for domain in ("auth", "posts", "payments")
    }
    with monolith(tmp_path, services=services) as app:
        domains = app.extensions["blog.domains"]
        domains.posts.handle_event(Event(USER_RENAMED, {"user_id": PAST, "name": "x"}))
        for call, error in [
            (lambda: domains.auth.get_user(PAST), "user_not_found"),
            (lambda: domains.auth.rename(PAST, "Ada"), "user_not_found"),
            (lambda: domains.posts.get_post(PAST), "post_not_found"),
            (lambda: domains.posts.get_post_with_comments(2**63 - 1), "post_not_found"),
            (lambda: domains.posts.list_comments(PAST), "post_not_found"),
            (lambda: domains.posts.update_post(PAST, 1, title="t"), "post_not_found"),
            (lambda: domains.posts.delete_post(PAST, 1), "post_not_found"),
            (lambda: domains.posts.add_comment(PAST, 1, "Ada", "b"), "post_not_found"),
            (lambda: domains.posts.create_post(PAST, "Ada", "t", "b"), "invalid_input"),
            (lambda: domains.payments.get_payment(PAST), "payment_not_found"),
            (lambda: domains.payments.charge(PAST, 1999, "usd", "pm_visa", "k"), "invalid_input"),
        ]:
            with pytest.raises(Exception) as excinfo:
                call()
            assert getattr(excinfo.value, "code", None) == error, repr(excinfo.value)


# --------------------------------------------------------------------------- text


def _text_cases(post_id: int) -> list[tuple[str, str, dict[str, Any], str, dict[str, str]]]:
    """(method, path, body, field, extra headers): every text field of the public API."""
    account = {"email": "eve@example.com", "name": "Eve", "password": PASSWORD}
    return [
        ("POST", "/api/register", account | {"email": "e\x00ve@example.com"}, "email", {}),
        ("POST", "/api/register", account | {"name": "E\x00ve"}, "name", {}),
        ("POST", "/api/login", {"email": "a\x00@example.com", "password": PASSWORD}, "email", {}),
        ("PATCH", "/api/me", {"name": "A\x00"}, "name", {}),
        ("POST", "/api/posts", {"title": "t\x00", "body": "b"}, "title", {}),
        ("POST", "/api/posts", {"title": "t", "body": "b\x00"}, "body", {}),
        ("POST", "/api/posts", {"title": "t", "body": "b", "image_url": "/\x00"}, "image_url", {}),
        ("PATCH", f"/api/posts/{post_id}", {"title": "t\x00"}, "title", {}),
        ("POST", f"/api/posts/{post_id}/comments", {"body": "c\x00"}, "body", {}),
        ("POST", "/api/payment", CARD | {"payment_method": "pm\x00"}, "payment_method", {}),
        ("POST", "/api/payment", CARD | {"currency": "u\x00d"}, "currency", {}),
        ("POST", "/api/payment", CARD, "idempotency_key", {"Idempotency-Key": "k\x00"}),
    ]


def test_a_nul_in_any_text_field_is_a_400_naming_it(tmp_path, database):
    """PostgreSQL refuses NUL in text; every domain refuses it first, on every database."""
    with monolith(tmp_path, database_url=database()) as app:
        client = app.test_client()
        headers = _signup(client)
        post = client.post("/api/posts", json={"title": "t", "body": "b"}, headers=headers)
        for method, path, body, field, extra in _text_cases(post.get_json()["id"]):
            merged = headers | {"Idempotency-Key": "nul"} | extra
            response = client.open(path, method=method, json=body, headers=merged)
            assert response.status_code == 400, (path, field, response.get_json())
            assert response.get_json()["error"]["details"]["field"] == field


def test_any_text_the_domains_accept_is_stored_whole(tmp_path, database):
    """The longest body, in four-byte characters (over MariaDB's 64 KiB TEXT), and names,
    titles and comments outside the BMP, come back as they were sent."""
    with monolith(tmp_path, database_url=database()) as app:
        client = app.test_client()
        headers = _signup(client)
        body = "😀" * 50_000
        post = {"title": "😀" * 200, "body": body}
        created = client.post("/api/posts", json=post, headers=headers)
        assert created.status_code == 201, created.get_json()
        post_id = created.get_json()["id"]
        comment = client.post(
            f"/api/posts/{post_id}/comments", json={"body": "𝒜" * 5000}, headers=headers
        )
        assert comment.status_code == 201, comment.get_json()
        renamed = client.patch("/api/me", json={"name": "𝒜da " * 25}, headers=headers)
        assert renamed.status_code == 200, renamed.get_json()
        detail = client.get(f"/api/posts/{post_id}").get_json()
        assert detail["post"]["body"] == body
        assert detail["comments"][0]["body"] == "𝒜" * 5000


def test_idempotency_keys_are_compared_exactly(tmp_path, database):
    """MariaDB's default collation folds case: ``order-1`` and ``ORDER-1`` must stay two keys."""
    with monolith(tmp_path, database_url=database()) as app:
        client = app.test_client()
        headers = _signup(client)
        paid = [
            client.post("/api/payment", json=CARD, headers=headers | {"Idempotency-Key": key})
            for key in ("order-1", "ORDER-1", "Order-1")
        ]
        assert [p.status_code for p in paid] == [201] * 3, [p.get_json() for p in paid]
        assert len({p.get_json()["id"] for p in paid}) == 3


def test_distinct_addresses_are_distinct_accounts(tmp_path, database):
    """MariaDB's default collation folds accents: ``josé`` and ``jose`` must stay two people."""
    with monolith(tmp_path, database_url=database()) as app:
        client = app.test_client()
        ids = []
        for email in ("jose@example.com", "jos\u00e9@example.com", "jos\u00eb@example.com"):
            response = client.post(
                "/api/register", json={"email": email, "name": "José", "password": PASSWORD}
            )
            assert response.status_code == 201, response.get_json()
            login = client.post("/api/login", json={"email": email, "password": PASSWORD})
            assert login.get_json()["user"]["email"] == email
            ids.append(login.get_json()["user"]["id"])
        assert len(set(ids)) == 3


# --------------------------------------------------------------------------- races


def test_fifty_payments_with_one_key_on_a_real_database(tmp_path, database):
    with monolith(tmp_path, database_url=database()) as app:
        headers = _signup(app.test_client())
        for method, status in (("pm_card_chargeDeclined", 402), ("pm_card_nope", 400)):
            pay = _payment(CARD | {"payment_method": method}, headers | {"Idempotency-Key": method})
            answers = race(app, [pay] * 50)
            assert sorted(a.status_code for a in answers) == [status] * 50, [
                a.get_json() for a in answers if a.status_code != status
            ]


def _payment(body: dict[str, Any], headers: dict[str, str]) -> Callable[[FlaskClient], Any]:
    return lambda c: c.post("/api/payment", json=body, headers=headers)


def _edits_against_deletes(app: Flask, path: str, headers: dict[str, str]) -> set[Any]:
    def edit(c: FlaskClient, i: int) -> tuple[str, int]:
        return "edit", c.patch(path, json={"title": f"v{i}"}, headers=headers).status_code

    def delete(c: FlaskClient) -> tuple[str, int]:
        return "delete", c.delete(path, headers=headers).status_code

    edits = [lambda c, i=i: edit(c, i) for i in range(4)]
    return set(race(app, [*edits, delete, delete]))


def _race_edits_and_deletes(app: Any) -> None:
    """Ten posts, each edited and deleted at once: every answer a 200/204 or a 404, never a
    500 (StaleDataError)."""
    client = app.test_client()
    headers = _signup(client)
    seen: set[Any] = set()
    for _ in range(10):
        post = client.post("/api/posts", json={"title": "t", "body": "b"}, headers=headers)
        seen |= _edits_against_deletes(app, f"/api/posts/{post.get_json()['id']}", headers)
    assert seen <= {("edit", 200), ("edit", 404), ("delete", 204), ("delete", 404)}, seen


def test_edits_racing_deletes_on_a_real_database(tmp_path, database):
    with monolith(tmp_path, database_url=database()) as app:
        _race_edits_and_deletes(app)


def test_edits_racing_deletes_against_a_posts_service_on_postgresql(tmp_path):
    """The posts service as a real process (gunicorn, threads) on PostgreSQL, hit through the
    gateway: its answers, not a 500 the gateway would turn into 503."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(DATABASES["postgresql"]())
        service = stack.enter_context(
            ServiceProcess("posts", tmp_path / "svc", service_database_url=url)
        )
        app = stack.enter_context(
            monolith(tmp_path, services={"posts": {"mode": "http", "url": service.url}})
        )
        _race_edits_and_deletes(app)
        domains = app.extensions["blog.domains"]
        with pytest.raises(PostNotFound):
            domains.posts.get_post(PAST)
        with pytest.raises(InvalidInput):
            domains.posts.create_post(PAST, "Ada", "t", "b")


def test_concurrent_renames_on_a_real_database_leave_one_name(tmp_path, database):
    """Row locks (``FOR UPDATE``) and the version's compare-and-set on the real thing: every
    rename gets its own version, and posts and email end at auth's name."""
    with monolith(tmp_path, database_url=database()) as app:
        client = app.test_client()
        headers = _signup(client)
        seen: list[Event] = []
        app.extensions["blog.domains"].bus.subscribe(USER_RENAMED, seen.append, consumer="t")
        post = client.post("/api/posts", json={"title": "t", "body": "b"}, headers=headers)
        answers = race(
            app,
            [
                lambda c, i=i: c.patch("/api/me", json={"name": f"N{i}"}, headers=headers)
                for i in range(12)
            ],
        )
        assert [a.status_code for a in answers] == [200] * 12
        final = client.get("/api/me", headers=headers).get_json()["name"]
        assert sorted(e.data["version"] for e in seen) == list(range(1, 13))

        def everywhere() -> None:
            detail = client.get(f"/api/posts/{post.get_json()['id']}").get_json()
            assert detail["post"]["author_name"] == final

        eventually(everywhere)
        client.post("/api/posts", json={"title": "After", "body": "b"}, headers=headers)
        inbox = client.get("/api/dev/inbox").get_json()["items"]
        assert next(m["body"] for m in inbox if "After" in m["subject"]).startswith(f"Hi {final},")
