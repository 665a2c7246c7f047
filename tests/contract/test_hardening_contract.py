"""Issue 12's input classes against each domain's interface, in-process, over the in-process wire
and against a real service process (gunicorn): the same clean answer everywhere, never a 500.

Then raw requests to every route of every extracted service (what a caller other than our client
could send): nested JSON and ids no row can have are a 4xx there too.
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from blog.auth import UserNotFound
from blog.contract import JsonCodec, operations
from blog.domains import manifest
from blog.errors import MAX_STORED_ID, InvalidInput
from blog.events import USER_RENAMED, Event
from blog.payments import PENDING, SUCCEEDED, PaymentDeclined, PaymentNotFound, ProviderError
from blog.posts import NotPostAuthor, Post, PostNotFound
from blog.transport.credentials import ServiceCredentials
from tests.images import image_bytes
from tests.support import ServiceProcess, deploy, eventually, make_config, unique_email

PASSWORD = "correct horse battery"
PAST = MAX_STORED_ID + 1
"""The first id no row can have on PostgreSQL or MariaDB (a 32-bit INTEGER column)."""
MODES = ["inprocess", "wire", "http"]
_ids = itertools.count(random.randrange(10**6, 10**8, 10**4))


def _race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at once, each in its own thread; returns each one's result or exception."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _deployed(domain: str, request: pytest.FixtureRequest, factory: Any) -> Iterator[Any]:
    with deploy(domain, request.param, factory.mktemp(domain)) as built:
        yield built


@pytest.fixture(scope="module", params=MODES)
def auth_domains(request, tmp_path_factory):
    yield from _deployed("auth", request, tmp_path_factory)


@pytest.fixture(scope="module", params=MODES)
def posts_domains(request, tmp_path_factory):
    yield from _deployed("posts", request, tmp_path_factory)


@pytest.fixture(scope="module", params=MODES)
def payments_domains(request, tmp_path_factory):
    yield from _deployed("payments", request, tmp_path_factory)


@pytest.fixture(scope="module", params=MODES)
def images_domains(request, tmp_path_factory):
    yield from _deployed("images", request, tmp_path_factory)


# --------------------------------------------------------------------------- auth


def test_auth_ids_no_row_can_have_are_not_found(auth_domains):
    auth = auth_domains.auth
    for call in (lambda: auth.get_user(PAST), lambda: auth.rename(2**63 - 1, "Ada")):
        with pytest.raises(UserNotFound):
            call()
    with pytest.raises(InvalidInput) as excinfo:
        auth.get_user(2**63)
    assert excinfo.value.details == {"field": "user_id"}


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
def test_auth_text_no_database_stores_is_refused_naming_the_field(auth_domains, bad):
    auth = auth_domains.auth
    user = auth.register(unique_email(), "Ada", PASSWORD)
    for field, call in [
        ("email", lambda: auth.register(f"a{bad}@example.com", "Ada", PASSWORD)),
        ("name", lambda: auth.register(unique_email(), f"A{bad}", PASSWORD)),
        ("email", lambda: auth.login(f"a{bad}@example.com", PASSWORD)),
        ("name", lambda: auth.rename(user.id, f"A{bad}")),
    ]:
        with pytest.raises(InvalidInput) as excinfo:
            call()
        assert excinfo.value.details == {"field": field}


def test_auth_keeps_one_spelling_of_an_address(auth_domains):
    auth = auth_domains.auth
    local = unique_email().split("@")[0]
    # decomposed é, an upper-case A-label: stored composed, with the Unicode label
    user = auth.register(f"{local}e\u0301@XN--BCHER-KVA.de", "Ada", PASSWORD)
    assert user.email == f"{local}\u00e9@b\u00fccher.de"
    assert auth.login(f"{local.upper()}\u00c9@bu\u0308cher.DE", PASSWORD).user == user
    for not_plain in (f"Ada <{local}@example.com>", f"{local}(x)@example.com", "a,b@example.com"):
        with pytest.raises(InvalidInput) as excinfo:
            auth.register(not_plain, "Ada", PASSWORD)
        assert excinfo.value.details == {"field": "email"}


def test_auth_concurrent_renames_carry_versions_in_commit_order(auth_domains):
    """Every committed rename gets its own version, and the highest carries the name auth
    ends up with: what lets posts and email keep the last committed name."""
    auth, bus = auth_domains.auth, auth_domains.bus
    user = auth.register(unique_email(), "Ada", PASSWORD)
    seen: list[Event] = []
    bus.subscribe(USER_RENAMED, seen.append, consumer=f"test-{user.id}")
    results = _race([lambda i=i: auth.rename(user.id, f"Name {i}") for i in range(12)])
    assert [r for r in results if isinstance(r, Exception)] == []
    final = auth.get_user(user.id).name

    def all_delivered() -> list[Event]:  # over the wire, events come through the feed
        mine = [e for e in seen if e.data["user_id"] == user.id]
        assert len(mine) == len(results)
        return mine

    mine = eventually(all_delivered)
    assert sorted(e.data["version"] for e in mine) == list(range(1, len(results) + 1))
    assert max(mine, key=lambda e: e.data["version"]).data["name"] == final


# --------------------------------------------------------------------------- posts


def _new_post(posts: Any, author: int | None = None) -> Post:
    return posts.create_post(author or next(_ids), "Ada", "A title", "A body")


def test_posts_ids_no_row_can_have_are_not_found(posts_domains):
    posts = posts_domains.posts
    mine = _new_post(posts)
    for call in (
        lambda: posts.get_post(PAST),
        lambda: posts.get_post_with_comments(2**63 - 1),
        lambda: posts.list_comments(PAST),
        lambda: posts.update_post(PAST, mine.author_id, title="x"),
        lambda: posts.delete_post(PAST, mine.author_id),
        lambda: posts.add_comment(PAST, 1, "Bob", "x"),
    ):
        with pytest.raises(PostNotFound):
            call()
    with pytest.raises(NotPostAuthor):  # an editor id no user can have owns nothing
        posts.update_post(mine.id, PAST, title="x")
    for field, call in (
        ("author_id", lambda: posts.create_post(PAST, "Ada", "t", "b")),
        ("author_id", lambda: posts.add_comment(mine.id, PAST, "Ada", "b")),
    ):
        with pytest.raises(InvalidInput) as excinfo:
            call()
        assert excinfo.value.details == {"field": field}
    posts.handle_event(Event(USER_RENAMED, {"user_id": PAST, "name": "x", "version": 1}))


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
def test_posts_text_no_database_stores_is_refused_naming_the_field(posts_domains, bad):
    posts = posts_domains.posts
    mine = _new_post(posts)
    for field, call in [
        ("title", lambda: posts.create_post(1, "Ada", f"t{bad}", "b")),
        ("body", lambda: posts.create_post(1, "Ada", "t", f"b{bad}")),
        ("author_name", lambda: posts.create_post(1, f"A{bad}", "t", "b")),
        ("image_url", lambda: posts.create_post(1, "Ada", "t", "b", f"/i{bad}.jpg")),
        ("title", lambda: posts.update_post(mine.id, mine.author_id, title=f"t{bad}")),
        ("body", lambda: posts.update_post(mine.id, mine.author_id, body=f"b{bad}")),
        ("body", lambda: posts.add_comment(mine.id, 1, "Bob", f"c{bad}")),
        ("author_name", lambda: posts.add_comment(mine.id, 1, f"B{bad}", "c")),
    ]:
        with pytest.raises(InvalidInput) as excinfo:
            call()
        assert excinfo.value.details == {"field": field}


def _renamed(user_id: int, name: str, version: int | None) -> Event:
    data: dict[str, Any] = {"user_id": user_id, "name": name, "old_name": "Ada"}
    if version is not None:
        data["version"] = version
    return Event(USER_RENAMED, data)


def test_posts_ignore_a_rename_older_than_the_one_they_hold(posts_domains):
    posts = posts_domains.posts
    post = _new_post(posts)
    author = post.author_id
    comment = posts.add_comment(post.id, author, "Ada", "mine")
    posts.handle_event(_renamed(author, "Third", 3))
    posts.handle_event(_renamed(author, "First", 1))  # delivered late: older
    posts.handle_event(_renamed(author, "Second", 2))
    posts.handle_event(_renamed(author, "Legacy", None))  # from before versions: older still
    assert posts.get_post(post.id).author_name == "Third"
    assert [c.author_name for c in posts.list_comments(post.id)] == ["Third"]
    assert comment.author_name == "Ada"
    posts.handle_event(_renamed(author, "Fourth", 4))
    posts.handle_event(_renamed(author, "Fourth", 4))  # a redelivery is harmless
    assert posts.get_post(post.id).author_name == "Fourth"


def test_posts_unversioned_renames_still_apply_in_delivery_order(posts_domains):
    """Events published before versions existed keep the old rule: the last delivered wins."""
    posts = posts_domains.posts
    post = _new_post(posts)
    posts.handle_event(_renamed(post.author_id, "Old one", None))
    posts.handle_event(_renamed(post.author_id, "Old two", None))
    assert posts.get_post(post.id).author_name == "Old two"


def test_posts_concurrent_renames_delivered_in_any_order_end_at_the_newest(posts_domains):
    posts = posts_domains.posts
    post = _new_post(posts)
    versions = list(range(1, 21))
    random.shuffle(versions)
    results = _race(
        [lambda v=v: posts.handle_event(_renamed(post.author_id, f"V{v}", v)) for v in versions]
    )
    assert [r for r in results if r is not None] == []
    assert posts.get_post(post.id).author_name == "V20"


def _edits_against_deletes(posts: Any, post: Post) -> list[Any]:
    edits = [
        lambda i=i: posts.update_post(post.id, post.author_id, title=f"v{i}") for i in range(4)
    ]
    deletes = [lambda: posts.delete_post(post.id, post.author_id)] * 2
    return _race([*edits, *deletes])


def test_posts_racing_edits_and_deletes_are_clean_answers(posts_domains):
    posts = posts_domains.posts
    for _ in range(6):
        post = _new_post(posts)
        results = _edits_against_deletes(posts, post)
        for result in results:
            assert result is None or isinstance(result, Post | PostNotFound), repr(result)
        assert sum(r is None for r in results) == 1  # one delete wins, the other is a 404
        with pytest.raises(PostNotFound):
            posts.get_post(post.id)


# --------------------------------------------------------------------------- payments


def _charge(payments: Any, user_id: int, key: str, method: str = "pm_card_visa") -> Any:
    return payments.charge(user_id, 1999, "usd", method, key)


def test_payments_ids_no_row_can_have(payments_domains):
    payments = payments_domains.payments
    with pytest.raises(PaymentNotFound):
        payments.get_payment(PAST)
    with pytest.raises(InvalidInput) as excinfo:
        _charge(payments, PAST, "k")
    assert excinfo.value.details == {"field": "user_id"}


@pytest.mark.parametrize("bad", ["\x00", "\ud800", "\x07"], ids=["nul", "surrogate", "bell"])
def test_payments_text_no_database_stores_is_refused_naming_the_field(payments_domains, bad):
    with pytest.raises(InvalidInput) as excinfo:
        _charge(payments_domains.payments, next(_ids), "k", method=f"pm_card_visa{bad}")
    assert excinfo.value.details == {"field": "payment_method"}


@pytest.mark.parametrize("age", [1e300, float("inf"), float("nan"), -1, 10**12])
def test_payments_reconcile_refuses_an_age_no_date_can_take(payments_domains, age):
    with pytest.raises(InvalidInput) as excinfo:
        payments_domains.payments.reconcile_pending(older_than_seconds=age)
    assert excinfo.value.details == {"field": "older_than_seconds"}


def test_payments_fifty_concurrent_charges_of_a_refused_card(payments_domains):
    payments, user_id = payments_domains.payments, next(_ids)
    results = _race([lambda: _charge(payments, user_id, "k", "pm_card_nope") for _ in range(50)])
    assert all(type(r) is InvalidInput for r in results), {repr(r) for r in results}
    assert _charge(payments, user_id, "k").status == SUCCEEDED  # no row left: the key is free


def test_payments_fifty_concurrent_charges_of_a_declined_card(payments_domains):
    payments, user_id = payments_domains.payments, next(_ids)
    declined = "pm_card_chargeDeclined"
    results = _race([lambda: _charge(payments, user_id, "k", declined) for _ in range(50)])
    assert all(isinstance(r, PaymentDeclined) for r in results), {repr(r) for r in results}
    assert len({r.details["payment"]["id"] for r in results}) == 1


def test_payments_a_charge_still_processing_is_settled_by_retrieving_it(payments_domains):
    payments, user_id = payments_domains.payments, next(_ids)
    with pytest.raises(ProviderError) as excinfo:
        _charge(payments, user_id, "slow", "pm_card_processing")
    payment_id = excinfo.value.details["payment_id"]
    pending = payments.get_payment(payment_id)
    assert pending.status == PENDING
    assert pending.provider_ref  # kept, so the provider can be asked about that very charge
    assert payments.reconcile_pending(older_than_seconds=0) >= 1
    settled = payments.get_payment(payment_id)
    assert (settled.status, settled.provider_ref) == (SUCCEEDED, pending.provider_ref)


def test_payments_a_retry_of_a_processing_charge_asks_where_it_stands(payments_domains):
    payments, user_id = payments_domains.payments, next(_ids)
    with pytest.raises(ProviderError):
        _charge(payments, user_id, "slow-retry", "pm_card_processing")
    assert _charge(payments, user_id, "slow-retry", "pm_card_processing").status == SUCCEEDED


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
def test_images_a_filename_no_database_stores_is_refused_naming_it(images_domains, bad):
    with pytest.raises(InvalidInput) as excinfo:
        images_domains.images.upload(image_bytes("PNG", (32, 32)), filename=f"a{bad}.png")
    assert excinfo.value.details == {"field": "filename"}


# --------------------------------------------------------------------------- raw service routes


class RawService:
    """A real service process, called with raw HTTP as any holder of the credential could."""

    def __init__(self, domain: str, tmp_path: Path) -> None:
        self.domain = domain
        self.process = ServiceProcess(domain, tmp_path)
        self.process.start()
        config = make_config(tmp_path)
        self.token = ServiceCredentials(config.transport.internal_token).token_for(domain)

    def send(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        parts = urlsplit(self.process.url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": "raw"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return response.status, json.loads(data) if data else None

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module", params=["auth", "posts", "payments", "images"])
def raw_service(request, tmp_path_factory):
    service = RawService(request.param, tmp_path_factory.mktemp(f"raw-{request.param}"))
    try:
        yield service
    finally:
        service.stop()


def _routes(domain: str, value: str) -> list[tuple[str, str, bool]]:
    """(verb, path with every placeholder and integer query set to ``value``, takes JSON)."""
    found = []
    for op in operations(manifest(domain)):
        path = op.path_template
        for param in op.params:
            path = path.replace("{" + param.name + "}", value)
        query = [f"{p.wire_name}={value}" for p in op.params if p.where == "query" and p.integer]
        if query:
            path += "?" + "&".join(query)
        found.append((op.route.verb, path, op.has_body and type(op.codec) is JsonCodec))
    return found


def test_raw_nested_json_is_a_clean_answer_on_every_json_route(raw_service):
    """Deeper than the parser goes: a 400. As deep as it goes, in an event's data (which the
    service converts to an Event and hands on) and in every other field: never a 500."""
    too_deep = b'{"event": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    deep = "[" * 900 + "]" * 900
    parseable = (
        '{"id": "e1", "type": "user.renamed", "occurred_at": "t", '
        f'"data": {{"user_id": 1, "name": "x", "deep": {deep}}}, "token": {deep}, '
        f'"title": {deep}, "older_than_seconds": {deep}, "user_id": {deep}}}'
    ).encode()
    routes = _routes(raw_service.domain, "1")
    assert routes
    for verb, path, takes_json in routes:
        if not takes_json:
            continue
        status, answer = raw_service.send(verb, path, too_deep)
        assert status == 400, (verb, path, answer)
        assert answer["error"]["code"] == "invalid_input", answer
        status, answer = raw_service.send(verb, path, parseable)
        assert status < 500, (verb, path, answer)


@pytest.mark.parametrize("value", [str(PAST), str(2**63 - 1), str(2**63), "9" * 40, "-1", "0"])
def test_raw_integers_out_of_range_are_never_a_500(raw_service, value):
    """Every path id and integer query parameter (pages too) at once, on every route: a 404 or
    400 for an id, an empty page for a page past the last."""
    for verb, path, takes_json in _routes(raw_service.domain, value):
        body = b"{}" if takes_json else None
        status, answer = raw_service.send(verb, path, body)
        assert status < 500, (verb, path, answer)
