"""The error vocabulary shared by every domain, the gateway and the wire.

Each domain raises subclasses of these. The class carries the HTTP status and a stable
machine-readable ``code``; the code is what travels on the wire, so an HTTP client can raise the
very same domain error the in-process implementation would have raised.
"""

from __future__ import annotations

from typing import Any, ClassVar


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
"""The largest id any domain accepts (a signed 64-bit column)."""


def invalid(field: str, problem: str) -> InvalidInput:
    """``InvalidInput`` naming ``field``: ``"title: must be a string"``."""
    return InvalidInput(f"{field}: {problem}", details={"field": field})


def positive_int(value: object, field: str, maximum: int = MAX_ID) -> int:
    """``value`` if it is an int (never a bool) from 1 to ``maximum``; else the one error every
    domain gives for a malformed id, page or limit, in-process and over the wire alike."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise invalid(field, "must be a positive integer")
    return value


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
