"""The auth interface behaves the same in-process and over HTTP (a real gunicorn process)."""

from __future__ import annotations

import pytest

from blog.auth import (
    AccessToken,
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    User,
    UserNotFound,
)
from blog.errors import InvalidInput
from tests.support import deploy, eventually, unique_email

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module", params=["inprocess", "wire", "http"])
def domains(request, tmp_path_factory):
    with deploy("auth", request.param, tmp_path_factory.mktemp("auth")) as built:
        yield built


@pytest.fixture
def auth(domains):
    return domains.auth


def test_register_login_verify(auth):
    email = unique_email()
    user = auth.register(email.upper(), "Ada", PASSWORD)
    assert isinstance(user, User)
    assert (user.email, user.name) == (email, "Ada")
    token = auth.login(email, PASSWORD)
    assert isinstance(token, AccessToken)
    assert token.user == user
    assert auth.verify(token.access_token) == user
    assert auth.get_user(user.id) == user


def test_errors_are_the_domain_errors(auth):
    email = unique_email()
    auth.register(email, "Ada", PASSWORD)
    with pytest.raises(EmailTaken):
        auth.register(email, "Other", PASSWORD)
    with pytest.raises(InvalidCredentials):
        auth.login(email, "wrong password")
    with pytest.raises(InvalidToken):
        auth.verify("not-a-token")
    with pytest.raises(UserNotFound):
        auth.get_user(10**9)
    with pytest.raises(InvalidInput) as excinfo:
        auth.register(unique_email(), "Ada", "short")
    assert excinfo.value.details == {"field": "password"}
    with pytest.raises(InvalidInput):
        auth.register(42, "Ada", PASSWORD)  # type: ignore[arg-type]


def test_rename_and_its_event_reach_the_monolith(domains):
    email = unique_email()
    user = domains.auth.register(email, "Ada", PASSWORD)
    renamed = domains.auth.rename(user.id, "Ada Lovelace")
    assert renamed.name == "Ada Lovelace"
    assert domains.auth.get_user(user.id).name == "Ada Lovelace"

    def welcomed() -> None:  # user.registered crossed the boundary and reached email
        assert any(m.to == email for m in domains.email.list_inbox(limit=200))

    eventually(welcomed)


def test_health(auth):
    health = auth.health()
    assert health["status"] == "ok"
    assert health["database"] is True


@pytest.mark.parametrize("bad_id", [True, "1", -1, 0, 2**63])
def test_bad_user_ids_are_refused_alike(auth, bad_id):
    with pytest.raises(InvalidInput) as excinfo:
        auth.get_user(bad_id)
    assert excinfo.value.details == {"field": "user_id"}
