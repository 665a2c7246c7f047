"""The payments domain: charges through a provider, never twice for one idempotency key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blog.contract import Route
from blog.errors import BadGateway, Conflict, NotFound, PaymentRequired, Unavailable
from blog.events import PAYMENT_COMPLETED
from blog.manifest import BuildContext, DomainManifest, HttpService

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
        """Settle payments left ``pending``: re-drive the charge of those the provider never
        answered (a crash, an outage), and retrieve from the provider those it took but had not
        settled (``processing``, ``requires_capture``); returns how many were settled."""

    def health(self) -> dict[str, object]: ...


IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"

ROUTES = (
    # Safe although it is a POST: it carries an idempotency key the service honours (one row
    # per user and key, the provider called with a key derived from it), so a repeat after a
    # lost answer replays the first outcome instead of charging again: the one kind of write
    # ARCHITECTURE.md lets the transport retry.
    Route(
        "charge",
        "POST",
        "/payment",
        safe=True,
        status=201,
        headers={"idempotency_key": IDEMPOTENCY_KEY_HEADER},
    ),
    Route("get_payment", "GET", "/payments/{payment_id}", safe=True),
    # Safe: it settles only rows still pending, each by compare-and-set.
    Route("reconcile_pending", "POST", "/reconcile", safe=True, envelope="settled"),
)


def _build(context: BuildContext) -> PaymentsService:
    from blog.payments.providers import make_provider
    from blog.payments.service import InProcessPaymentsService

    provider_name, provider = make_provider(context.config.payments)
    return InProcessPaymentsService(context.sessions, context.publisher, provider, provider_name)


MANIFEST = DomainManifest(
    name="payments",
    interface=PaymentsService,
    build=_build,
    models="blog.payments.models",
    errors=ERRORS,
    unavailable=PaymentsUnavailable,
    extraction=HttpService(port=3004, routes=ROUTES),
    publishes=(PAYMENT_COMPLETED,),
)
