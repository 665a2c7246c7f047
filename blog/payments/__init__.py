"""The payments domain: charges through a provider, never twice for one idempotency key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blog.errors import BadGateway, Conflict, InvalidInput, NotFound, PaymentRequired, Unavailable

PENDING = "pending"
SUCCEEDED = "succeeded"
DECLINED = "declined"
STATUSES = (PENDING, SUCCEEDED, DECLINED)


@dataclass(frozen=True)
class Payment:
    id: int
    user_id: int
    amount: int
    currency: str
    status: str
    payment_method: str
    idempotency_key: str
    provider: str
    provider_ref: str | None
    decline_code: str | None
    created_at: str
    updated_at: str


class PaymentsInvalidInput(InvalidInput):
    code = "invalid_input"


class PaymentDeclined(PaymentRequired):
    """The provider declined the card; ``details`` carries the payment and the decline code."""

    code = "payment_declined"


class IdempotencyKeyReused(Conflict):
    """The same idempotency key was sent earlier with a different amount, currency or method."""

    code = "idempotency_key_reused"


class PaymentNotFound(NotFound):
    code = "payment_not_found"


class ProviderError(BadGateway):
    """The provider could not be reached or failed; the payment stays pending for reconciliation."""

    code = "payment_provider_error"


class PaymentsUnavailable(Unavailable):
    code = "payments_unavailable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__("payments", message)


ERRORS = (
    PaymentsInvalidInput,
    PaymentDeclined,
    IdempotencyKeyReused,
    PaymentNotFound,
    ProviderError,
)


class PaymentsService(Protocol):
    def charge(
        self,
        user_id: int,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
    ) -> Payment: ...

    def get_payment(self, payment_id: int) -> Payment: ...

    def reconcile_pending(self, older_than_seconds: int = 60) -> int:
        """Re-drive payments left ``pending`` by a crash; returns how many were settled."""

    def health(self) -> dict[str, object]: ...
