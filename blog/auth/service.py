"""The in-process auth service: the only code that touches ``blog.auth.models``."""

from __future__ import annotations

import re
import secrets
import unicodedata

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from blog.auth import (
    AccessToken,
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    User,
    UserNotFound,
)
from blog.auth.models import UserRow
from blog.auth.passwords import MAX_LENGTH, MIN_LENGTH, check_password, hash_password
from blog.auth.tokens import decode_token, issue_token
from blog.config import AuthConfig
from blog.db import isoformat, ping, transaction, utcnow
from blog.errors import invalid, positive_int
from blog.events import USER_REGISTERED, USER_RENAMED, Event, EventPublisher

EMAIL_MAX = 254
NAME_MAX = 100
BAD_CREDENTIALS = "the email or password is incorrect"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    return value


def _storable(value: str) -> bool:
    """Encodable as UTF-8 (no lone surrogates from JSON) and free of control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(unicodedata.category(char) == "Cc" for char in value)


def _email(value: object) -> str:
    email = _string(value, "email").strip().lower()
    if len(email) > EMAIL_MAX or not _EMAIL.fullmatch(email) or not _storable(email):
        raise invalid("email", "must be a valid email address")
    return email


def _name(value: object) -> str:
    name = _string(value, "name").strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise invalid("name", f"must be 1 to {NAME_MAX} characters")
    if not _storable(name):
        raise invalid("name", "must not contain control characters")
    return name


def _password(value: object) -> str:
    password = _string(value, "password")
    if len(password) < MIN_LENGTH:
        raise invalid("password", f"must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise invalid("password", f"must be at most {MAX_LENGTH} characters")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid("password", "must be valid Unicode text") from None
    return password


def _user_id(value: object) -> int:
    return positive_int(value, "user_id")


def _email_taken() -> EmailTaken:
    return EmailTaken(
        "email: an account with this email already exists", details={"field": "email"}
    )


def _to_user(row: UserRow) -> User:
    return User(id=row.id, email=row.email, name=row.name, created_at=isoformat(row.created_at))


class InProcessAuthService:
    """``AuthService`` backed by this domain's own tables."""

    def __init__(
        self, session_factory: sessionmaker[Session], bus: EventPublisher, config: AuthConfig
    ) -> None:
        self._session_factory = session_factory
        self._bus = bus
        self._config = config
        # Unknown emails are checked against this, so a login costs one bcrypt either way and
        # its timing does not reveal which emails have an account.
        self._dummy_hash = hash_password(secrets.token_urlsafe(16), config.bcrypt_rounds)

    def register(self, email: str, name: str, password: str) -> User:
        email, name, password = _email(email), _name(name), _password(password)
        password_hash = hash_password(password, self._config.bcrypt_rounds)  # outside the tx
        now = utcnow()
        try:
            with transaction(self._session_factory) as session:
                if session.scalar(select(UserRow.id).where(UserRow.email == email)) is not None:
                    raise _email_taken()
                row = UserRow(
                    email=email,
                    name=name,
                    password_hash=password_hash,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                session.flush()
                user = _to_user(row)
                self._bus.publish(
                    session,
                    Event(
                        USER_REGISTERED,
                        {"user_id": user.id, "email": user.email, "name": user.name},
                    ),
                )
        except IntegrityError:  # a concurrent registration won the race for the unique email
            raise _email_taken() from None
        return user

    def login(self, email: str, password: str) -> AccessToken:
        email = _string(email, "email").strip().lower()
        password = _string(password, "password")
        if len(password) > MAX_LENGTH or len(email) > EMAIL_MAX or not _storable(email):
            raise InvalidCredentials(BAD_CREDENTIALS)  # says nothing about the account
        with self._session_factory() as session:
            row = session.scalar(select(UserRow).where(UserRow.email == email))
            user, stored = (_to_user(row), row.password_hash) if row else (None, self._dummy_hash)
        if not check_password(password, stored) or user is None:
            raise InvalidCredentials(BAD_CREDENTIALS)
        return AccessToken(
            access_token=issue_token(user.id, self._config),
            token_type="Bearer",
            expires_in=self._config.jwt_ttl_seconds,
            user=user,
        )

    def verify(self, token: str) -> User:
        user_id = decode_token(token, self._config)
        with self._session_factory() as session:
            row = session.get(UserRow, user_id)
            if row is None:
                raise InvalidToken("the token's user no longer exists")
            return _to_user(row)

    def get_user(self, user_id: int) -> User:
        user_id = _user_id(user_id)
        with self._session_factory() as session:
            row = session.get(UserRow, user_id)
            if row is None:
                raise UserNotFound(f"user {user_id} does not exist")
            return _to_user(row)

    def rename(self, user_id: int, name: str) -> User:
        user_id, name = _user_id(user_id), _name(name)
        with transaction(self._session_factory) as session:
            row = session.get(UserRow, user_id)
            if row is None:
                raise UserNotFound(f"user {user_id} does not exist")
            if row.name != name:
                old_name, row.name, row.updated_at = row.name, name, utcnow()
                self._bus.publish(
                    session,
                    Event(
                        USER_RENAMED,
                        {"user_id": user_id, "name": name, "old_name": old_name},
                    ),
                )
            return _to_user(row)

    def health(self) -> dict[str, object]:
        with self._session_factory() as session:
            database = ping(session.get_bind())
        return {"status": "ok" if database else "down", "database": database}
