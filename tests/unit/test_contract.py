"""The wire contract: route tables, the generic client over a mock transport, and the services'
API documents. (Both ends against each other, in every mode, is tests/contract.)"""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from openapi_spec_validator import validate

from blog.auth import AccessToken, AuthUnavailable, EmailTaken, User
from blog.contract import operations, remote
from blog.domains import MANIFESTS, manifest
from blog.errors import Conflict, InvalidInput
from blog.payments import PaymentsUnavailable
from blog.posts import UNSET, Comment, PostPage
from blog.transport import ConnectFailed, WireRequest, WireResponse, request_id_var
from blog.transport.credentials import ServiceCredentials
from blog.wiring import build_service
from tests.support import make_config

USER = {"id": 7, "email": "ada@example.com", "name": "Ada", "created_at": "2026-01-01T00:00:00"}
POST = {
    "id": 3,
    "title": "T",
    "body": "B",
    "author_id": 7,
    "author_name": "Ada",
    "image_url": None,
    "created_at": "c",
    "updated_at": "u",
}


class MockTransport:
    """httpx's MockTransport, ours: a function from request to response."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[WireRequest] = []

    def send(self, request: WireRequest) -> WireResponse:
        self.sent.append(request)
        outcome = self.answer(request) if callable(self.answer) else self.answer
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def describe(self) -> dict[str, Any]:
        return {"url": "mock://"}

    def close(self) -> None:
        pass


def json_response(status: int, body: Any) -> WireResponse:
    return WireResponse(status, {"content-type": "application/json"}, json.dumps(body).encode())


def client(domain: str, answer: Any) -> tuple[Any, MockTransport]:
    transport = MockTransport(answer)
    return remote(manifest(domain), transport, ServiceCredentials("s" * 40)), transport


# --------------------------------------------------------------------------- the tables


@pytest.mark.parametrize("m", MANIFESTS, ids=lambda m: m.name)
def test_every_route_is_an_interface_method_and_every_method_has_a_route(m):
    methods = {
        name
        for name, _ in inspect.getmembers(m.interface, inspect.isfunction)
        if not name.startswith("_") and name != "health"
    }
    routed = {op.route.method for op in operations(m)}
    assert routed <= methods
    # email takes events from its queue only; every other method travels
    assert methods - routed == ({"handle_event"} if m.name == "email" else set())


@pytest.mark.parametrize("m", MANIFESTS, ids=lambda m: m.name)
def test_error_codes_are_unique_within_a_domain(m):
    codes = [cls.code for cls in m.errors]
    assert len(codes) == len(set(codes))


# --------------------------------------------------------------------------- the client


def test_a_call_goes_out_as_the_route_says():
    posts, transport = client("posts", json_response(200, {"items": []}))
    token = request_id_var.set("req-1")
    try:
        assert posts.list_comments(42) == []
    finally:
        request_id_var.reset(token)
    (sent,) = transport.sent
    assert (sent.method, sent.path, sent.operation, sent.safe) == (
        "GET",
        "/comments?post=42",
        "posts.list_comments",
        True,
    )
    assert sent.headers["X-Request-ID"] == "req-1"
    assert sent.headers["Authorization"].startswith("Bearer ")
    assert sent.body is None


def test_arguments_left_out_stay_out_and_the_far_side_applies_the_defaults():
    posts, transport = client("posts", json_response(200, POST))
    posts.update_post(3, 7, title="New")
    posts.update_post(3, 7, image_url=UNSET)
    posts.update_post(3, 7, image_url=None)
    bodies = [json.loads(sent.body or b"") for sent in transport.sent]
    assert bodies == [
        {"editor_id": 7, "title": "New"},
        {"editor_id": 7},
        {"editor_id": 7, "image_url": None},  # null clears the image; absent leaves it alone
    ]
    assert transport.sent[0].path == "/posts/3"
    assert transport.sent[0].method == "PATCH"


def test_the_answer_becomes_the_same_dtos():
    page = {"items": [POST], "page": 1, "per_page": 20, "total": 1}
    posts, transport = client("posts", json_response(200, page))
    result = posts.list_posts(page=1, per_page=20)
    assert isinstance(result, PostPage)
    assert result.items[0].title == "T"
    assert transport.sent[0].path == "/posts?per_page=20"  # page=1 is the default: left out

    auth, _ = client(
        "auth",
        json_response(
            200, {"access_token": "t", "token_type": "Bearer", "expires_in": 1, "user": USER}
        ),
    )
    token = auth.login("ada@example.com", "pw")
    assert isinstance(token, AccessToken) and isinstance(token.user, User)

    comment = {
        "id": 1,
        "post_id": 3,
        "author_id": 7,
        "author_name": "A",
        "body": "b",
        "created_at": "c",
    }
    posts, _ = client("posts", json_response(201, comment))
    assert posts.add_comment(3, 7, "A", "b") == Comment(**comment)


def test_a_header_argument_travels_as_a_header_only_when_a_header_can_carry_it():
    payments, transport = client("payments", json_response(500, {}))
    for key in ("order-1", " padded", "naïve", ""):
        with pytest.raises(PaymentsUnavailable):  # the answer (a 500) does not matter here
            payments.charge(1, 100, "usd", "pm_card_visa", key)
    keys = [sent.headers.get("Idempotency-Key") for sent in transport.sent]
    assert keys == ["order-1", None, None, None]


@pytest.mark.parametrize("bad", [True, "7", 7.0, None])
def test_a_malformed_id_is_refused_before_it_would_lose_its_type(bad):
    posts, transport = client("posts", json_response(200, POST))
    with pytest.raises(InvalidInput) as caught:
        posts.get_post(bad)
    assert caught.value.message == "post_id: must be a positive integer"
    assert transport.sent == []


def test_errors_come_back_as_the_same_domain_errors():
    auth, _ = client("auth", json_response(409, {"error": {"code": "email_taken", "message": "m"}}))
    with pytest.raises(EmailTaken, match="m"):
        auth.register("a@b.c", "A", "pw")
    auth, _ = client("auth", json_response(409, {"error": {"code": "mystery", "message": "m"}}))
    with pytest.raises(Conflict):  # an unknown code: the generic error of its status
        auth.register("a@b.c", "A", "pw")
    for answer in (
        json_response(500, {"error": {"code": "internal_error", "message": "boom"}}),
        json_response(401, {"error": {"code": "service_unauthorized", "message": "no"}}),
        WireResponse(502, {}, b"<html>proxy</html>"),
        ConnectFailed("could not connect (ConnectionRefusedError)"),
    ):
        auth, _ = client("auth", answer)
        with pytest.raises(AuthUnavailable) as caught:
            auth.get_user(7)
        assert caught.value.status == 503
        assert caught.value.details == {"service": "auth"}


def test_a_method_without_a_route_says_so():
    email, transport = client("email", json_response(200, {}))
    with pytest.raises(TypeError, match="no route"):
        email.handle_event(object())
    assert transport.sent == []


def test_health_never_raises():
    auth, _ = client("auth", ConnectFailed("could not connect"))
    health = auth.health()
    assert health["status"] == "down" and health["url"] == "mock://"
    auth, _ = client("auth", json_response(200, {"service": "auth", "status": "ok"}))
    assert auth.health() == {"status": "ok", "url": "mock://"}


# --------------------------------------------------------------------------- API documents


@pytest.mark.parametrize("name", ["auth", "posts", "images", "payments", "email"])
def test_each_service_serves_a_valid_openapi_31_document(tmp_path, name):
    runtime = build_service(name, make_config(tmp_path))
    try:
        response = runtime.app.test_client().get("/openapi.json")  # public: no credential
        assert response.status_code == 200
        document = response.get_json()
        validate(document)
        assert document["openapi"].startswith("3.1")
        routes = {op.route.method for op in operations(manifest(name))}
        documented = {
            spec["operationId"]
            for path in document["paths"].values()
            for spec in path.values()
            if spec["operationId"] != "health"
        }
        assert documented == routes
    finally:
        runtime.close()


def test_the_document_says_what_the_route_table_says(tmp_path):
    runtime = build_service("payments", make_config(tmp_path))
    try:
        document = runtime.app.test_client().get("/openapi.json").get_json()
    finally:
        runtime.close()
    charge = document["paths"]["/payment"]["post"]
    assert charge["x-safe-to-retry"] is True
    assert {"name": "Idempotency-Key", "in": "header", "required": True} | {
        "schema": {"type": "string"}
    } in charge["parameters"]
    assert charge["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Payment"
    }
    assert set(charge["requestBody"]["content"]["application/json"]["schema"]["required"]) == {
        "user_id",
        "amount",
        "currency",
        "payment_method",
    }
    assert charge["security"] == [{"serviceToken": []}]
    assert "402" in charge["responses"] and "409" in charge["responses"]


def test_what_json_cannot_carry_is_refused_as_the_service_would():
    posts, transport = client("posts", json_response(201, POST))
    with pytest.raises(InvalidInput) as caught:
        posts.create_post(1, "Ada", "\ud800", "body")
    assert caught.value.message == "title: must be valid Unicode text"
    assert transport.sent == []


def test_an_answer_that_is_not_the_promised_dto_is_an_unavailable_service():
    auth, _ = client("auth", json_response(200, {"unexpected": True}))
    with pytest.raises(AuthUnavailable, match=r"unreadable answer to auth\.get_user"):
        auth.get_user(7)


def test_only_answers_that_say_the_service_is_failing_count_against_it():
    """The breaker counts (and a safe call retries) what says the *service* cannot answer; one
    request's 500, or any 4xx, is an answer, and must not let one caller switch a domain off."""
    from blog.contract import failure_detector

    failing = failure_detector(manifest("payments"))
    assert failing(WireResponse(503, {}, b"<html>bad gateway</html>"))
    assert failing(WireResponse(500, {}, b""))  # not even our JSON: a crash, a proxy
    assert failing(json_response(503, {"error": {"code": "service_unavailable", "message": ""}}))
    assert failing(json_response(401, {"error": {"code": "service_unauthorized", "message": ""}}))
    assert not failing(json_response(500, {"error": {"code": "internal_error", "message": ""}}))
    assert not failing(json_response(502, {"error": {"code": "payment_provider_error"}}))
    assert not failing(json_response(404, {"error": {"code": "payment_not_found"}}))
    assert not failing(json_response(400, {"error": {"code": "invalid_input"}}))
