"""The in-process auth service: the only code that touches ``blog.auth.models``."""

from __future__ import annotations

import secrets
import unicodedata
from typing import Any, cast

from sqlalchemy import CursorResult, Row, bindparam, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from blog.auth import (
    AccessToken,
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    User,
    UserNotFound,
)
from blog.auth.addresses import NotPlainAddress, canonical_address
from blog.auth.models import NameVersionRow, UserRow
from blog.auth.passwords import MAX_LENGTH, MIN_LENGTH, check_password, hash_password
from blog.auth.tokens import decode_token, issue_token
from blog.config import AuthConfig
from blog.db import isoformat, ping, reading, transaction, utcnow
from blog.errors import (
    Conflict,
    invalid,
    is_transient_database_error,
    positive_int,
    storable_id,
    unstorable_text,
)
from blog.events import USER_REGISTERED, USER_RENAMED, Event, EventPublisher
from blog.verified import VerifiedTokens

EMAIL_MAX = 254
NAME_MAX = 100
BAD_CREDENTIALS = "the email or password is incorrect"
RENAME_ATTEMPTS = 50
"""How often a rename that lost the race for the user's next name version starts over: each
loss means another rename of the same user committed meanwhile, so the loop always progresses."""

BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # isolates
    "\u200e\u200f\u061c"  # LRM, RLM, ALM
)
"""Characters that reorder the text around them: in a display name they make a name read as
another ("Ada\u202eevil" shows as "Adaevil" reversed), on a post and in an email alike."""

BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
"""Characters classed as letters or symbols that show nothing (Hangul fillers, the blank
braille pattern): the usual way to make an invisible name look like a real one."""


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


def _storable_or_400(value: str, field: str) -> None:
    """What no database can hold (NUL, lone surrogates) is a 400 naming the field, even where
    other malformed text gets a vaguer answer (a login)."""
    problem = unstorable_text(value)
    if problem is not None:
        raise invalid(field, problem)


def _email(value: object) -> str:
    """The canonical plain address (see ``blog.auth.addresses``), or a 400 naming ``email``."""
    text = _string(value, "email")
    _storable_or_400(text, "email")
    try:
        return canonical_address(text)
    except NotPlainAddress as exc:
        raise invalid("email", f"must be a plain address such as ada@example.com ({exc})") from None


def _login_email(value: object) -> str:
    """The spelling to look an account up by: the canonical address, or (for a string that is
    not a plain address) the old normalisation, stripped and lower-cased, so that an account
    registered before addresses were checked this strictly can still sign in."""
    text = _string(value, "email")
    _storable_or_400(text, "email")
    try:
        return canonical_address(text)
    except NotPlainAddress:
        return text.strip().lower()


def _visible(char: str) -> bool:
    """Whether ``char`` shows something on its own: not a control, format, space, separator,
    private-use or unassigned character, not a combining mark, not a blank letter."""
    return unicodedata.category(char)[0] not in "CZM" and char not in BLANK_LETTERS


def _name(value: object) -> str:
    """A display name: shown on posts, in emails and to every reader, so it must read as what it
    is. Refused (400 naming ``name``): control characters, bidi controls anywhere (they reorder
    what follows, and can make a name impersonate another), and names that show nothing (only
    spaces, format, zero-width or blank characters)."""
    name = _string(value, "name").strip()
    _storable_or_400(name, "name")
    if not 1 <= len(name) <= NAME_MAX:
        raise invalid("name", f"must be 1 to {NAME_MAX} characters")
    if not _storable(name):
        raise invalid("name", "must not contain control characters")
    if any(char in BIDI_CONTROLS for char in name):
        raise invalid("name", "must not contain bidirectional control characters")
    if not any(_visible(char) for char in name):
        raise invalid("name", "must contain at least one visible character")
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


def _not_found(user_id: int) -> UserNotFound:
    return UserNotFound(f"user {user_id} does not exist")


class _LostRace(Exception):
    """Another rename of the same user took the version this one meant to write."""


def _claim_next_name_version(session: Session, user_id: int) -> int:
    """The user's next name version, claimed in ``session``'s transaction by compare-and-set, or
    ``_LostRace`` when a concurrent rename claimed it first (it then commits first: the versions
    follow the order renames commit in, which is what makes the last committed name win
    downstream)."""
    current = session.scalar(
        select(NameVersionRow.version).where(NameVersionRow.user_id == user_id)
    )
    if current is None:
        session.add(NameVersionRow(user_id=user_id, version=1))
        session.flush()  # IntegrityError when a concurrent first rename inserted it
        return 1
    result = cast(
        CursorResult[Any],
        session.execute(
            update(NameVersionRow)
            .where(NameVersionRow.user_id == user_id, NameVersionRow.version == current)
            .values(version=current + 1)
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        raise _LostRace
    return current + 1


def _email_taken() -> EmailTaken:
    return EmailTaken(
        "email: an account with this email already exists", details={"field": "email"}
    )


_USERS = UserRow.__table__
_USER_BY_ID = select(_USERS).where(_USERS.c.id == bindparam("id"))
"""Built once: a statement built per call costs more than the query (see ``blog.db.reading``)."""


def _to_user(row: UserRow | Row[Any]) -> User:
    return User(id=row.id, email=row.email, name=row.name, created_at=isoformat(row.created_at))


class InProcessAuthService:
    """``AuthService`` backed by this domain's own tables."""

    def __init__(
        self, session_factory: sessionmaker[Session], bus: EventPublisher, config: AuthConfig
    ) -> None:
        self._session_factory = session_factory
        self._bus = bus
        self._config = config
        self._verified: VerifiedTokens[int] = VerifiedTokens()
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
                        # version 0: the name as registered, older than any rename's
                        {"user_id": user.id, "email": user.email, "name": user.name, "version": 0},
                    ),
                )
        except IntegrityError:  # a concurrent registration won the race for the unique email
            raise _email_taken() from None
        return user

    def login(self, email: str, password: str) -> AccessToken:
        email = _login_email(email)
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
        """The token's user. A token checked once is remembered until it expires (its signature
        cannot change); the user is read every time, so a deleted user's tokens stop at once."""
        user_id = self._verified.get(token) if isinstance(token, str) else None
        if user_id is None:
            decoded = decode_token(token, self._config)
            self._verified.remember(token, decoded.user_id, decoded.expires_at)
            user_id = decoded.user_id
        row = self._user_row(user_id)
        if row is None:
            raise InvalidToken("the token's user no longer exists")
        return _to_user(row)

    def get_user(self, user_id: int) -> User:
        user_id = _user_id(user_id)
        if not storable_id(user_id):
            raise _not_found(user_id)
        row = self._user_row(user_id)
        if row is None:
            raise _not_found(user_id)
        return _to_user(row)

    def _user_row(self, user_id: int) -> Row[Any] | None:
        with reading(self._session_factory) as connection:
            return connection.execute(_USER_BY_ID, {"id": user_id}).one_or_none()

    def rename(self, user_id: int, name: str) -> User:
        """Set the display name; ``user.renamed`` carries the user's name ``version``, a counter
        bumped in the same transaction, so that consumers receiving renames out of order (two
        relays, a redelivery) keep the last committed name, not the last delivered one."""
        user_id, name = _user_id(user_id), _name(name)
        if not storable_id(user_id):
            raise _not_found(user_id)
        for _ in range(RENAME_ATTEMPTS):
            try:
                return self._rename_once(user_id, name)
            except (_LostRace, IntegrityError):
                continue
            except OperationalError as exc:  # a deadlock's victim (MariaDB): run it again
                if not is_transient_database_error(exc):
                    raise
        raise Conflict("name: too many concurrent renames of this user; try again")

    def _rename_once(self, user_id: int, name: str) -> User:
        with transaction(self._session_factory) as session:
            # FOR UPDATE (PostgreSQL, MariaDB): renames of one user queue here and read the
            # committed name. SQLite has no row locks; the version's compare-and-set catches a
            # rename that committed meanwhile, and this one starts over.
            row = session.get(UserRow, user_id, with_for_update=True)
            if row is None:
                raise _not_found(user_id)
            if row.name != name:
                version = _claim_next_name_version(session, user_id)
                old_name, row.name, row.updated_at = row.name, name, utcnow()
                self._bus.publish(
                    session,
                    Event(
                        USER_RENAMED,
                        {
                            "user_id": user_id,
                            "name": name,
                            "old_name": old_name,
                            "version": version,
                        },
                    ),
                )
            return _to_user(row)

    def health(self) -> dict[str, object]:
        with self._session_factory() as session:
            database = ping(session.get_bind())
        return {"status": "ok" if database else "down", "database": database}
