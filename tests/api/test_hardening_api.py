"""Issue 12's input classes through the public API, in every topology: no input makes a 500.

Out-of-range ids, deeply nested JSON, characters no database stores, addresses that are not
plain, display names that read as something else, and the races (an edit against a delete, fifty
payments with one key, concurrent renames). The database-specific halves (PostgreSQL, MariaDB)
are in ``tests/integration/test_hardening_databases.py``.
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.images import image_bytes
from tests.support import ID_ROUTES, eventually, race

PASSWORD = "correct horse battery"
CARD = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


def _post(client: FlaskClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/api/posts", json={"title": "t", "body": "b"} | body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# --------------------------------------------------------------------------- ids out of range


@pytest.mark.parametrize("row_id", [2**31, 2**32 + 1, 2**53, 2**63 - 1])
def test_an_id_no_row_can_have_is_not_found_on_every_route(client, auth, row_id):
    """Past a 32-bit INTEGER (PostgreSQL's and MariaDB's id columns): the domain's own 404."""
    headers = auth.signup()
    for method, path, body, code in ID_ROUTES:
        response = client.open(path.format(row_id), method=method, json=body, headers=headers)
        assert response.status_code == 404, (method, path, response.get_json())
        assert response.get_json()["error"]["code"] == code


@pytest.mark.parametrize("bad_id", ["0", str(2**63), str(10**30), "9" * 5000], ids=len)
def test_an_id_no_id_can_be_is_a_clean_4xx_on_every_route(client, auth, bad_id):
    headers = auth.signup()
    for method, path, body, _code in ID_ROUTES:
        response = client.open(path.format(bad_id), method=method, json=body, headers=headers)
        # 400 naming the id, or no such route at all (a path too long for an integer)
        assert 400 <= response.status_code < 500, (method, path, response.get_json())
        assert "error" in response.get_json()


# --------------------------------------------------------------------------- nested JSON


def _json_routes(app: Flask, post_id: int) -> list[tuple[str, str]]:
    """Every public route that takes a body, found from the app itself (a new one is covered)."""
    routes = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & {"POST", "PATCH", "PUT"}):
            path = re.sub(r"<int:\w+>", str(post_id), rule.rule)
            routes.append((method, re.sub(r"<[^>]+>", "x", path)))
    return routes


BODY_FIELDS = ("email", "name", "password", "title", "body", "image_url", "amount", "currency")
BODY_FIELDS += ("payment_method",)


@pytest.mark.parametrize("depth", [600, 100_000])
def test_deeply_nested_json_is_a_400_on_every_route_that_reads_a_body(app, client, auth, depth):
    """Deeper than the parser goes (100,000: a RecursionError inside ``json``), or as deep as it
    goes in every field a route reads (600): a 400, never a 500."""
    headers = auth.signup() | {"Idempotency-Key": "nested"}
    post = _post(client, headers)
    value = "[" * depth + "]" * depth
    fields = BODY_FIELDS if depth < 1000 else BODY_FIELDS[:1]  # within the 1 MiB body limit
    nested = "{" + ", ".join(f'"{name}": {value}' for name in fields) + "}"
    routes = _json_routes(app, post["id"])
    assert ("POST", "/api/posts") in routes and ("PATCH", "/api/me") in routes
    for method, path in routes:
        response = client.open(
            path, method=method, data=nested, content_type="application/json", headers=headers
        )
        assert response.status_code == 400, (method, path, response.get_json())
        assert response.get_json()["error"]["code"] == "invalid_input"


# --------------------------------------------------------------------------- unstorable text


def _bad_text_cases(nul: str) -> list[tuple[str, str, str, Any, str]]:
    """(case, method, path, body, field) for every text field of the public API."""
    card = CARD
    return [
        ("register email", "POST", "/api/register", {"email": f"a{nul}@example.com"}, "email"),
        ("register name", "POST", "/api/register", {"name": f"A{nul}da"}, "name"),
        ("login email", "POST", "/api/login", {"email": f"ada{nul}@example.com"}, "email"),
        ("rename", "PATCH", "/api/me", {"name": f"Ada{nul}"}, "name"),
        ("title", "POST", "/api/posts", {"title": f"t{nul}", "body": "b"}, "title"),
        ("body", "POST", "/api/posts", {"title": "t", "body": f"b{nul}"}, "body"),
        (
            "image_url",
            "POST",
            "/api/posts",
            {"title": "t", "body": "b", "image_url": f"/i{nul}.jpg"},
            "image_url",
        ),
        ("edited title", "PATCH", "/api/posts/{post}", {"title": f"t{nul}"}, "title"),
        ("edited body", "PATCH", "/api/posts/{post}", {"body": f"b{nul}"}, "body"),
        ("comment", "POST", "/api/posts/{post}/comments", {"body": f"c{nul}"}, "body"),
        (
            "payment method",
            "POST",
            "/api/payment",
            card | {"payment_method": f"pm_card_visa{nul}"},
            "payment_method",
        ),
        ("currency", "POST", "/api/payment", card | {"currency": f"u{nul}d"}, "currency"),
    ]


@pytest.mark.parametrize(
    "case", [c[0] for c in _bad_text_cases("\x00")], ids=[c[0] for c in _bad_text_cases("\x00")]
)
@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
def test_text_no_database_stores_is_a_400_naming_the_field(client, auth, case, bad):
    headers = auth.signup() | {"Idempotency-Key": "text"}
    post = _post(client, headers)
    [(_, method, path, body, field)] = [c for c in _bad_text_cases(bad) if c[0] == case]
    if path in ("/api/register", "/api/login"):
        body = {"email": "eve@example.com", "name": "Eve", "password": PASSWORD} | body
    response = client.open(path.format(post=post["id"]), method=method, json=body, headers=headers)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["details"]["field"] == field


def test_an_idempotency_key_with_a_nul_is_a_400_naming_it(client, auth):
    headers = auth.signup() | {"Idempotency-Key": "k\x00y"}
    response = client.post("/api/payment", json=CARD, headers=headers)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["details"]["field"] in (
        "idempotency_key",
        "Idempotency-Key",
    )


def test_a_filename_with_a_nul_is_a_400_naming_it(client, auth):
    response = client.post(
        "/api/upload",
        data={"image": (io.BytesIO(image_bytes("PNG", (64, 64))), "photo\x00.png")},
        headers=auth.signup(),
        content_type="multipart/form-data",
    )
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["details"]["field"] == "filename"


# --------------------------------------------------------------------------- plain addresses

NOT_PLAIN = [
    "Ada <ada@example.com>",
    "Ada<ada@example.com>",
    "<ada@example.com>",
    "ada(comment)@example.com",
    "ada@example.com(comment)",
    '"ada"@example.com',
    '"a b"@example.com',
    "a,b@example.com",
    "a;b@example.com",
    "ada@example.com,eve@example.com",
    "ada@[127.0.0.1]",
    "ada@127.0.0.1",
    "a%b@example.com",
    "b!a@example.com",
    "ada@example.com.",
    ".ada@example.com",
    "a..da@example.com",
    "ada@-example.com",
    "ada@example",
    "ada@exa mple.com",
    "ada@xn--invalid-.com",
    "ada\\@example.com",
    "ada:eve@example.com",
    "ada@example.com\u200b",
]


@pytest.mark.parametrize("email", NOT_PLAIN)
def test_an_address_that_is_not_plain_is_refused(client, email):
    response = client.post(
        "/api/register", json={"email": email, "name": "Ada", "password": PASSWORD}
    )
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["details"]["field"] == "email"


SPELLINGS = [
    ("Ada@Example.COM", "ada@EXAMPLE.com", "ada@example.com"),
    ("jose\u0301@example.com", "jos\u00e9@example.com", "jos\u00e9@example.com"),
    ("ada@bu\u0308cher.de", "ada@B\u00dcCHER.de", "ada@b\u00fccher.de"),
    ("ada@xn--bcher-kva.de", "ada@b\u00fccher.de", "ada@b\u00fccher.de"),
    ("Z\u00dcRICH@example.com", "zu\u0308rich@example.com", "z\u00fcrich@example.com"),
]


@pytest.mark.parametrize(("first", "second", "canonical"), SPELLINGS)
def test_two_spellings_of_one_address_are_one_account(client, first, second, canonical):
    registered = client.post(
        "/api/register", json={"email": first, "name": "Ada", "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.get_json()
    assert registered.get_json()["email"] == canonical
    again = client.post(
        "/api/register", json={"email": second, "name": "Eve", "password": PASSWORD}
    )
    assert again.status_code == 409, again.get_json()
    for spelling in (first, second, canonical):
        login = client.post("/api/login", json={"email": spelling, "password": PASSWORD})
        assert login.status_code == 200, (spelling, login.get_json())
        assert login.get_json()["user"]["id"] == registered.get_json()["id"]


def test_no_email_address_is_logged_at_info(client, auth, caplog):
    """Registration, a post, a payment and a rename: every INFO line names ids, not addresses."""
    address = "ada.private@example.com"
    blog = logging.getLogger("blog")
    caplog.set_level(logging.INFO, logger="blog")
    blog.propagate = True  # the blog logger has its own handler and does not propagate
    try:
        headers = auth.signup(email=address)
        _post(client, headers, title="Logged")
        paid = client.post("/api/payment", json=CARD, headers=headers | {"Idempotency-Key": "l"})
        assert paid.status_code == 201
        client.patch("/api/me", json={"name": "Ada L"}, headers=headers)

        def mailed() -> None:  # welcome, post confirmation, receipt: the email domain ran
            inbox = client.get("/api/dev/inbox?limit=200").get_json()["items"]
            assert len([m for m in inbox if m["to"] == address]) >= 3

        eventually(mailed, timeout=20)
    finally:
        blog.propagate = False
    logged = [r for r in caplog.records if r.levelno <= logging.INFO]
    assert logged, "nothing was logged at INFO: the test would prove nothing"
    leaks = [r.getMessage() for r in caplog.records if "private@" in r.getMessage()]
    assert leaks == []


# --------------------------------------------------------------------------- display names

BAD_NAMES = [
    "Ada\u202eevil",
    "\u202aAda\u202c",
    "\u2066Ada\u2069",
    "A\u200fda",
    "A\u200eda",
    "Ada\u061c",
    "\u200b",
    "\u200b\u200c\u200d\u2060",
    "\ufeff",
    "\u3164",
    "\u2800\u2800",
    "\u115f\u1160",
    "\u034f",
    " \u00ad ",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_display_name_that_misleads_or_shows_nothing_is_refused(client, auth, name):
    registered = client.post(
        "/api/register", json={"email": "eve@example.com", "name": name, "password": PASSWORD}
    )
    assert registered.status_code == 400, registered.get_json()
    assert registered.get_json()["error"]["details"]["field"] == "name"
    renamed = client.patch("/api/me", json={"name": name}, headers=auth.signup())
    assert renamed.status_code == 400, renamed.get_json()
    assert renamed.get_json()["error"]["details"]["field"] == "name"


@pytest.mark.parametrize("name", ["عائشة", "Zoë", "李雷", "Ada Lovelace", "O'Brien", "Ünal ✓"])
def test_ordinary_names_in_any_script_are_kept(client, name):
    registered = client.post(
        "/api/register", json={"email": "eve@example.com", "name": name, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.get_json()
    assert registered.get_json()["name"] == name


# --------------------------------------------------------------------------- races


def _edits_against_deletes(app: Flask, path: str, headers: dict[str, str]) -> list[Any]:
    def edit(c: FlaskClient, i: int) -> tuple[str, int]:
        return "edit", c.patch(path, json={"title": f"v{i}"}, headers=headers).status_code

    def delete(c: FlaskClient) -> tuple[str, int]:
        return "delete", c.delete(path, headers=headers).status_code

    edits = [lambda c, i=i: edit(c, i) for i in range(4)]
    return race(app, [*edits, delete, delete])


def test_racing_edits_and_deletes_of_one_post_never_fail(app, client, auth):
    headers = auth.signup()
    seen: set[tuple[str, int]] = set()
    for _ in range(8):
        path = f"/api/posts/{_post(client, headers)['id']}"
        seen.update(_edits_against_deletes(app, path, headers))
        assert client.get(path).status_code == 404
    assert seen <= {("edit", 200), ("edit", 404), ("delete", 204), ("delete", 404)}, seen


@pytest.mark.parametrize(
    ("payment_method", "status"),
    [("pm_card_chargeDeclined", 402), ("pm_card_unknownToTheProvider", 400)],
    ids=["declined", "refused"],
)
def test_fifty_concurrent_payments_with_one_key(app, client, auth, payment_method, status):
    """A declined card: one payment, fifty 402s that all name it. A card the provider refuses
    outright (no such payment method): fifty 400s and no payment, so the key stays usable."""
    headers = auth.signup() | {"Idempotency-Key": "one-key"}
    body = CARD | {"payment_method": payment_method}
    answers = race(
        app, [lambda c: c.post("/api/payment", json=body, headers=headers) for _ in range(50)]
    )
    assert [a.status_code for a in answers] == [status] * 50, [
        (a.status_code, a.get_json()) for a in answers if a.status_code != status
    ]
    if status == 402:
        ids = {a.get_json()["error"]["details"]["payment"]["id"] for a in answers}
        assert len(ids) == 1
        fetched = client.get(f"/api/payments/{ids.pop()}", headers=headers)
        assert fetched.get_json()["status"] == "declined"
    else:
        corrected = client.post("/api/payment", json=CARD, headers=headers)
        assert corrected.status_code == 201, corrected.get_json()


def test_concurrent_renames_leave_the_last_committed_name_everywhere(app, client, auth):
    headers = auth.signup()
    post = _post(client, headers, title="Before")
    race(
        app,
        [
            lambda c, i=i: c.patch("/api/me", json={"name": f"Name {i}"}, headers=headers)
            for i in range(10)
        ],
    )
    final = client.get("/api/me", headers=headers).get_json()["name"]

    def everywhere() -> None:
        detail = client.get(f"/api/posts/{post['id']}").get_json()
        assert detail["post"]["author_name"] == final
        _post(client, headers, title=f"After {final}")
        inbox = client.get("/api/dev/inbox?limit=200").get_json()["items"]
        greeting = [m["body"] for m in inbox if f"After {final}" in m["subject"]]
        assert greeting and greeting[0].startswith(f"Hi {final},")

    eventually(everywhere, timeout=20, interval=0.2)
