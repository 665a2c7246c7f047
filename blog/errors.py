"""The error vocabulary shared by every domain, the gateway and the wire.

Each domain raises subclasses of these. The class carries the HTTP status and a stable
machine-readable ``code``; the code is what travels on the wire, so an HTTP client can raise the
very same domain error the in-process implementation would have raised.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")


class DomainError(Exception):
    """Base of every error a domain interface may raise."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(DomainError):
    """The caller sent something the domain refuses; ``details.field`` names it when one field
    is at fault. Every domain raises this one class for plain bad input, so the same mistake is
    the same error whichever domain (and whichever side of the wire) catches it."""

    status = 400
    code = "invalid_input"


MAX_ID = 2**63 - 1
"""The largest id any interface takes as *well formed* (a signed 64-bit integer): past it, or below
1, an id is invalid (400) in every domain, every mode and on every database alike."""

MAX_STORED_ID = 2**31 - 1
"""The largest id a row can have, in every domain.

Every id column is an ``INTEGER``: 64-bit on SQLite, but 32-bit on PostgreSQL and MariaDB. An id
past this is well formed but names no row (404, or 400 where it would be *stored*, such as a
post's ``author_id``), and it must never reach a query: PostgreSQL refuses to compare it with
the column (``integer out of range``, a 500). The limit is the same on SQLite on purpose: a
domain's rows move between databases (``extract``/``inline``), so none can hold an id the others
cannot, and an answer must not change with the database a domain happens to run on."""


def invalid(field: str, problem: str) -> InvalidInput:
    """``InvalidInput`` naming ``field``: ``"title: must be a string"``."""
    return InvalidInput(f"{field}: {problem}", details={"field": field})


def positive_int(value: object, field: str, maximum: int = MAX_ID) -> int:
    """``value`` if it is an int (never a bool) from 1 to ``maximum``; else the one error every
    domain gives for a malformed id, page or limit, in-process and over the wire alike."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise invalid(field, "must be a positive integer")
    return value


def storable_id(value: int) -> bool:
    """Whether a well-formed id (see :func:`positive_int`) can name a row: a lookup of one that
    cannot answers "not found" without asking the database (see ``MAX_STORED_ID``)."""
    return value <= MAX_STORED_ID


def unstorable_text(value: str) -> str | None:
    """What no database of ours can store in ``value``, or None when it is fine.

    - a lone surrogate (a ``\\ud800`` JSON escape): no UTF-8 encoding holds it, so every
      database, log line and onward call would fail on it;
    - a NUL: PostgreSQL's text types refuse it (SQLite and MariaDB would keep it, but a domain's
      rows must be movable to PostgreSQL, and the same input must get the same answer whatever
      database a domain runs on).

    Every other character is storable: the product's MariaDB databases are ``utf8mb4``.
    """
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None


def storable_text(value: str, field: str) -> str:
    """``value`` if every database can store it, else a 400 naming ``field`` (see
    :func:`unstorable_text`): every text field of every domain goes through this (or a
    stricter rule) before it reaches a query."""
    problem = unstorable_text(value)
    if problem is not None:
        raise invalid(field, problem)
    return value


TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
"""PostgreSQL: serialization failure, deadlock detected."""
TRANSIENT_MYSQL_CODES = frozenset({1205, 1213})
"""MariaDB/MySQL: lock wait timeout, deadlock found."""


def is_transient_database_error(exc: BaseException) -> bool:
    """Whether a database error is one the database asks to run again: a deadlock (InnoDB picks
    a victim among concurrent writers of one row, even under plain row locks) or a serialization
    failure. The victim's transaction was rolled back whole, so a unit of work that is one
    transaction can simply run again; answering it with a 500 would make a race the caller's
    problem. Looks at the driver's error (``exc.orig``) without importing any driver."""
    original = getattr(exc, "orig", None)
    if getattr(original, "sqlstate", None) in TRANSIENT_SQLSTATES:
        return True
    args: tuple[object, ...] = getattr(original, "args", ())
    return bool(args) and args[0] in TRANSIENT_MYSQL_CODES


TRANSIENT_ATTEMPTS = 5


def again_if_transient(work: Callable[[], T], attempts: int = TRANSIENT_ATTEMPTS) -> T:
    """Run ``work`` (one whole transaction) again when the database made it a deadlock's victim
    or failed to serialise it (see :func:`is_transient_database_error`), up to ``attempts``
    times, after a short random pause that keeps the contenders from colliding again in step.

    Only for work that is safe to repeat because it was rolled back whole: a unit of work that
    is one transaction, ideally a compare-and-set.
    """
    for attempt in range(attempts):
        try:
            return work()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient_database_error(exc):
                raise
            time.sleep(random.uniform(0, 0.01 * 2**attempt))
    raise AssertionError("unreachable")  # the loop returns or raises


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class PaymentRequired(DomainError):
    status = 402
    code = "payment_required"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"


class BadGateway(DomainError):
    """An upstream the domain depends on (Stripe, SMTP, S3) failed."""

    status = 502
    code = "bad_gateway"


class Unavailable(DomainError):
    """The domain itself cannot be reached (its service is down, slow or its breaker is open)."""

    status = 503
    code = "service_unavailable"

    def __init__(self, service: str, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message or f"the {service} service is unavailable", **kwargs)
        self.service = service
        self.details.setdefault("service", service)


GENERIC_ERRORS: tuple[type[DomainError], ...] = (
    InvalidInput,
    Unauthorized,
    PaymentRequired,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    BadGateway,
)
"""The errors any domain may raise as they are: a client rebuilds them from their code."""
