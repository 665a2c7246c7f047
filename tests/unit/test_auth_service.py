"""The in-process auth service against a real SQLite file."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import unicodedata

import jwt
import pytest
from sqlalchemy import create_engine, delete, select
from sqlalchemy.orm import Session

from blog.auth import (
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    User,
    UserNotFound,
)
from blog.auth import service as service_module
from blog.auth.models import UserRow, metadata
from blog.auth.service import InProcessAuthService
from blog.config import AuthConfig
from blog.db import make_engine, make_session_factory
from blog.errors import InvalidInput
from blog.events import USER_REGISTERED, USER_RENAMED, Event, InlineEventBus

SECRET = "unit-test-jwt-secret-" + "0123456789abcdef" * 3  # >= 64 bytes, so HS512 is quiet
OTHER_SECRET = "some-other-jwt-secret-0123456789abcdef-012345678"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def auth_config() -> AuthConfig:
    return AuthConfig(bcrypt_rounds=4, jwt_secret=SECRET, jwt_ttl_seconds=600)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def bus(events: list[Event]) -> InlineEventBus:
    bus = InlineEventBus()
    for event_type in (USER_REGISTERED, USER_RENAMED):
        bus.subscribe(event_type, events.append, consumer="test")
    return bus


@pytest.fixture
def service(engine, bus, auth_config) -> InProcessAuthService:
    return InProcessAuthService(make_session_factory(engine), bus, auth_config)


@pytest.fixture
def alice(service: InProcessAuthService) -> User:
    return service.register("alice@example.com", "Alice", PASSWORD)


def _token(claims: dict, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _claims(user_id: int, **overrides) -> dict:
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + 600, "iss": "strangler-blog"}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _b64(raw: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()


# --------------------------------------------------------------------------- register


def test_register_normalises_and_publishes(service, events):
    user = service.register("  Alice@Example.COM ", "  Alice  ", PASSWORD)
    assert user.email == "alice@example.com"
    assert user.name == "Alice"
    assert user.id >= 1
    assert user.created_at.endswith("+00:00")
    assert [f.name for f in dataclasses.fields(User)] == ["id", "email", "name", "created_at"]
    assert [(e.type, e.data) for e in events] == [
        (
            USER_REGISTERED,
            {"user_id": user.id, "email": "alice@example.com", "name": "Alice", "version": 0},
        )
    ]
    assert service.get_user(user.id) == user


def test_password_is_stored_hashed(service, engine, alice):
    with Session(engine) as session:
        stored = session.scalar(select(UserRow.password_hash).where(UserRow.id == alice.id))
    assert PASSWORD not in stored
    assert stored.startswith("bcrypt-sha256$$2b$04$")


def test_event_is_delivered_after_commit(engine, auth_config):
    seen: list[User] = []
    bus = InlineEventBus()
    service = InProcessAuthService(make_session_factory(engine), bus, auth_config)
    bus.subscribe(
        USER_REGISTERED, lambda e: seen.append(service.get_user(e.data["user_id"])), consumer="test"
    )
    user = service.register("bob@example.com", "Bob", PASSWORD)
    assert seen == [user]


@pytest.mark.parametrize("email", ["alice@example.com", "ALICE@example.com", " Alice@Example.Com"])
def test_duplicate_email_is_case_insensitive(service, alice, events, email):
    events.clear()
    with pytest.raises(EmailTaken) as caught:
        service.register(email, "Another", "another password")
    assert caught.value.status == 409
    assert caught.value.message.startswith("email:")
    assert events == []


def test_duplicate_email_race_maps_integrity_error(service, alice, events, monkeypatch):
    events.clear()
    monkeypatch.setattr(Session, "scalar", lambda *_args, **_kwargs: None)  # skip the pre-check
    with pytest.raises(EmailTaken):
        service.register("alice@example.com", "Racer", PASSWORD)
    assert events == []


@pytest.mark.parametrize(
    ("email", "name", "password", "field"),
    [
        (None, "A", PASSWORD, "email"),
        (123, "A", PASSWORD, "email"),
        (["a@b.com"], "A", PASSWORD, "email"),
        ("", "A", PASSWORD, "email"),
        ("no-at-sign.com", "A", PASSWORD, "email"),
        ("a@@b.com", "A", PASSWORD, "email"),
        ("a@b@c.com", "A", PASSWORD, "email"),
        ("a@localhost", "A", PASSWORD, "email"),
        ("a b@c.com", "A", PASSWORD, "email"),
        ("@example.com", "A", PASSWORD, "email"),
        ("a@.com", "A", PASSWORD, "email"),
        ("a\x00@b.com", "A", PASSWORD, "email"),
        ("a\ud800@b.com", "A", PASSWORD, "email"),
        ("a" * 243 + "@example.com", "A", PASSWORD, "email"),
        ("a@b.com", None, PASSWORD, "name"),
        ("a@b.com", 42, PASSWORD, "name"),
        ("a@b.com", "", PASSWORD, "name"),
        ("a@b.com", "   ", PASSWORD, "name"),
        ("a@b.com", "x" * 101, PASSWORD, "name"),
        ("a@b.com", "Al\x00ice", PASSWORD, "name"),
        ("a@b.com", "Al\nice", PASSWORD, "name"),
        ("a@b.com", "A", None, "password"),
        ("a@b.com", "A", 12345678, "password"),
        ("a@b.com", "A", b"bytes password", "password"),
        ("a@b.com", "A", "", "password"),
        ("a@b.com", "A", "1234567", "password"),
        ("a@b.com", "A", "x" * 1025, "password"),
        ("a@b.com", "A", "lone \ud800 surrogate", "password"),
    ],
)
def test_register_rejects_bad_input(service, events, email, name, password, field):
    with pytest.raises(InvalidInput) as caught:
        service.register(email, name, password)
    assert caught.value.status == 400
    assert caught.value.message.startswith(f"{field}:")
    assert caught.value.details == {"field": field}
    assert events == []


def test_register_accepts_the_limits(service):
    email = "a" * 242 + "@example.com"
    assert len(email) == 254
    user = service.register(email, "x" * 100, "12345678")
    assert user.name == "x" * 100
    service.register("long@example.com", "Long", "y" * 1024)
    assert service.login("long@example.com", "y" * 1024).user.email == "long@example.com"


def test_injection_strings_are_stored_verbatim(service, alice):
    email = "o'brien+x@example.com"
    name = "Robert'); DROP TABLE auth_users; --"
    user = service.register(email, name, "'; DROP TABLE auth_users; --")
    assert (user.email, user.name) == (email, name)
    assert service.login(email, "'; DROP TABLE auth_users; --").user == user
    with pytest.raises(InvalidCredentials):
        service.login("' OR '1'='1", "' OR '1'='1")
    assert service.get_user(alice.id) == alice
    assert service.register("carol@example.com", "Carol", PASSWORD).id > user.id


# --------------------------------------------------------------------------- login


def test_login_returns_a_bearer_token(service, alice, auth_config):
    token = service.login("  ALICE@example.com", PASSWORD)
    assert (token.token_type, token.expires_in, token.user) == ("Bearer", 600, alice)
    claims = jwt.decode(token.access_token, SECRET, algorithms=["HS256"], issuer="strangler-blog")
    assert claims["sub"] == str(alice.id)
    assert claims["exp"] - claims["iat"] == auth_config.jwt_ttl_seconds
    assert service.verify(token.access_token) == alice


def test_wrong_password_and_unknown_email_look_the_same(service, alice):
    with pytest.raises(InvalidCredentials) as wrong:
        service.login("alice@example.com", PASSWORD + "!")
    with pytest.raises(InvalidCredentials) as unknown:
        service.login("nobody@example.com", PASSWORD)
    assert wrong.value.status == unknown.value.status == 401
    assert wrong.value.message == unknown.value.message


def test_unknown_email_still_checks_a_hash(service, monkeypatch):
    calls = []
    real = service_module.check_password
    monkeypatch.setattr(service_module, "check_password", lambda *a: calls.append(a) or real(*a))
    with pytest.raises(InvalidCredentials):
        service.login("nobody@example.com", PASSWORD)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("email", "password"), [(None, PASSWORD), ("a@b.com", None), (1, PASSWORD), ("a@b.com", ["x"])]
)
def test_login_rejects_non_strings(service, email, password):
    with pytest.raises(InvalidInput):
        service.login(email, password)


@pytest.mark.parametrize("password", ["x" * 1025, "", "lone \udfff surrogate"])
def test_login_with_impossible_password_fails(service, alice, password):
    with pytest.raises(InvalidCredentials):
        service.login("alice@example.com", password)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a" * 72 + "-one", "a" * 72 + "-two"),
        ("é" * 36 + "one", "é" * 36 + "two"),  # 72 bytes of two-byte characters
        ("🔑" * 18 + "one", "🔑" * 18 + "two"),
    ],
)
def test_every_byte_of_a_long_password_counts(service, first, second):
    assert first.encode()[:72] == second.encode()[:72]
    service.register("long@example.com", "Long", first)
    assert service.login("long@example.com", first).user.name == "Long"
    with pytest.raises(InvalidCredentials):
        service.login("long@example.com", second)


@pytest.mark.parametrize("password", ["pässwörd-日本語-🔑", "Пароль123", "😀😀😀😀😀😀😀😀"])
def test_non_ascii_passwords(service, password):
    service.register("uni@example.com", "Uni", password)
    assert service.login("uni@example.com", password).user.email == "uni@example.com"
    with pytest.raises(InvalidCredentials):
        service.login("uni@example.com", password[:-1])


def test_unicode_normalisation_forms_match(service):
    composed = unicodedata.normalize("NFC", "crème brûlée")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    service.register("chef@example.com", "Chef", composed)
    assert service.login("chef@example.com", decomposed).user.name == "Chef"


# --------------------------------------------------------------------------- verify


def test_verify_accepts_a_hand_made_valid_token(service, alice):
    assert service.verify(_token(_claims(alice.id))) == alice


def test_forged_token_is_rejected(service, alice):
    with pytest.raises(InvalidToken):
        service.verify(_token(_claims(alice.id), secret=OTHER_SECRET))


def test_tampered_payload_is_rejected(service, alice):
    token = service.login("alice@example.com", PASSWORD).access_token
    header, _payload, signature = token.split(".")
    forged = f"{header}.{_b64(_claims(alice.id + 1))}.{signature}"
    with pytest.raises(InvalidToken):
        service.verify(forged)


def test_expired_token_is_rejected(service, alice):
    past = int(time.time()) - 3600
    with pytest.raises(InvalidToken) as caught:
        service.verify(_token(_claims(alice.id, iat=past, exp=past + 60)))
    assert caught.value.status == 401


def test_alg_none_token_is_rejected(service, alice):
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(alice.id))}."
    with pytest.raises(InvalidToken):
        service.verify(token)


def test_other_hmac_algorithm_is_rejected(service, alice):
    with pytest.raises(InvalidToken):
        service.verify(_token(_claims(alice.id), algorithm="HS512"))


def test_wrong_issuer_is_rejected(service, alice):
    with pytest.raises(InvalidToken):
        service.verify(_token(_claims(alice.id, iss="someone-else")))


@pytest.mark.parametrize("claim", ["sub", "iat", "exp", "iss"])
def test_missing_claims_are_rejected(service, alice, claim):
    claims = _claims(alice.id)
    del claims[claim]
    with pytest.raises(InvalidToken):
        service.verify(_token(claims))


@pytest.mark.parametrize("sub", ["abc", "", "0", "-1", " 1", "1 ", "1_0", "١", "9" * 25])
def test_bad_subjects_are_rejected(service, alice, sub):
    with pytest.raises(InvalidToken):
        service.verify(_token(_claims(alice.id, sub=sub)))


def test_integer_subject_is_rejected(service, alice):
    claims = _claims(alice.id)
    claims["sub"] = alice.id
    with pytest.raises(InvalidToken):
        service.verify(jwt.api_jws.encode(json.dumps(claims).encode(), SECRET, algorithm="HS256"))


def test_token_of_a_nonexistent_user_is_rejected(service):
    with pytest.raises(InvalidToken):
        service.verify(_token(_claims(999)))


def test_a_token_verified_before_is_rejected_once_it_expires(service, alice):
    """Verified tokens are remembered, but never past their ``exp``."""
    now = int(time.time())
    token = _token(_claims(alice.id, iat=now, exp=now + 2))
    assert service.verify(token).id == alice.id
    assert service.verify(token).id == alice.id  # remembered
    time.sleep(max(0.0, now + 2.05 - time.time()))
    with pytest.raises(InvalidToken):
        service.verify(token)


def test_token_of_a_deleted_user_is_rejected(service, alice, engine):
    token = service.login("alice@example.com", PASSWORD).access_token
    assert service.verify(token).id == alice.id  # checked once, so remembered
    with Session(engine) as session, session.begin():
        session.execute(delete(UserRow).where(UserRow.id == alice.id))
    with pytest.raises(InvalidToken):
        service.verify(token)


@pytest.mark.parametrize(
    "token",
    [
        None,
        123,
        b"bytes",
        "",
        "garbage",
        "a.b.c",
        "a.b",
        "....",
        "x" * 10_000,
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",
        f"{_b64(['list'])}.{_b64({})}.c2ln",
    ],
)
def test_garbage_tokens_are_rejected(service, token):
    with pytest.raises(InvalidToken):
        service.verify(token)


# --------------------------------------------------------------------------- users


@pytest.mark.parametrize("user_id", [True, "1", 1.0, None, 0, -1, 2**64])
def test_get_user_rejects_bad_ids(service, user_id):
    with pytest.raises(InvalidInput):
        service.get_user(user_id)


def test_get_user_not_found(service):
    with pytest.raises(UserNotFound) as caught:
        service.get_user(42)
    assert caught.value.status == 404


def test_rename_updates_and_publishes(service, alice, events):
    events.clear()
    renamed = service.rename(alice.id, "  Alicia ")
    assert renamed == dataclasses.replace(alice, name="Alicia")
    assert service.get_user(alice.id).name == "Alicia"
    assert [(e.type, e.data) for e in events] == [
        (USER_RENAMED, {"user_id": alice.id, "name": "Alicia", "old_name": "Alice", "version": 1})
    ]
    service.rename(alice.id, "Alice")
    assert events[-1].data["version"] == 2  # one counter per user, bumped by every rename


def test_rename_to_the_same_name_publishes_nothing(service, alice, events):
    events.clear()
    assert service.rename(alice.id, "Alice ") == alice
    assert events == []


@pytest.mark.parametrize(("user_id", "name"), [(1, ""), (1, "x" * 101), (1, None), ("1", "A")])
def test_rename_rejects_bad_input(service, alice, events, user_id, name):
    events.clear()
    with pytest.raises(InvalidInput):
        service.rename(user_id, name)
    assert events == []
    assert service.get_user(alice.id).name == "Alice"


def test_rename_unknown_user(service, events):
    with pytest.raises(UserNotFound):
        service.rename(42, "Nobody")
    assert events == []


# --------------------------------------------------------------------------- health


def test_health_ok(service):
    assert service.health() == {"status": "ok", "database": True}


def test_health_down(tmp_path, bus, auth_config):
    (tmp_path / "not-a-dir").write_text("")
    engine = create_engine(f"sqlite:///{tmp_path}/not-a-dir/t.db")
    service = InProcessAuthService(make_session_factory(engine), bus, auth_config)
    assert service.health() == {"status": "down", "database": False}
    engine.dispose()
