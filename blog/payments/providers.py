"""Payment providers: who actually moves the money.

Every provider is idempotent by the key it is given: calling ``charge`` again with the same key
returns the first call's outcome instead of charging again. The service relies on that to re-drive
a payment left ``pending`` by a crash or a provider outage.

A charge the provider accepted but has not settled yet (Stripe's ``processing``, or
``requires_capture`` for an authorisation not captured) comes back ``pending`` with its
reference. Replaying ``charge`` would only replay that first answer (the provider's idempotency
replays the response, not the payment's current state), so such a payment is settled by
``retrieve``: asking the provider where that very charge stands now.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

import stripe

from blog.config import PaymentsConfig
from blog.errors import InvalidInput
from blog.payments import ProviderError

log = logging.getLogger(__name__)

ProviderStatus = Literal["succeeded", "declined", "pending"]


@dataclass(frozen=True)
class ProviderResult:
    status: ProviderStatus
    provider_ref: str | None
    decline_code: str | None = None
    message: str | None = None


class PaymentProvider(Protocol):
    def charge(
        self, amount: int, currency: str, payment_method: str, idempotency_key: str
    ) -> ProviderResult:
        """Charge once per ``idempotency_key``.

        Raises ``InvalidInput`` when the request itself is wrong (nothing was charged)
        and ``ProviderError`` when the outcome is unknown (retry later with the same key).
        ``pending`` (with ``provider_ref``): accepted, not settled yet; ask ``retrieve`` later.
        """
        ...

    def retrieve(self, provider_ref: str) -> ProviderResult:
        """Where the charge ``provider_ref`` stands now; one authorised but not captured is
        captured (the payment asked for a charge, not a hold). ``ProviderError`` when the
        provider cannot say (never ``InvalidInput``: the reference came from the provider)."""
        ...


class FakePaymentProvider:
    """An offline stand-in that answers like Stripe's test payment methods."""

    SUCCEEDING = frozenset({"pm_card_visa", "pm_card_mastercard", "pm_card_amex"})
    DECLINING = {
        "pm_card_chargeDeclined": "generic_decline",
        "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
        "pm_card_chargeDeclinedExpiredCard": "expired_card",
    }
    SETTLING_LATER = frozenset({"pm_card_processing"})
    """Not a Stripe test card: a charge the fake accepts as ``processing`` (as an asynchronous
    payment method would be), then reports ``succeeded`` to the next ``retrieve``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._charges: dict[str, tuple[tuple[int, str, str], ProviderResult]] = {}
        self._by_ref: dict[str, ProviderResult] = {}

    @property
    def charge_count(self) -> int:
        """How many distinct charges were attempted (replays of a key do not count)."""
        with self._lock:
            return len(self._charges)

    def charge(
        self, amount: int, currency: str, payment_method: str, idempotency_key: str
    ) -> ProviderResult:
        request = (amount, currency, payment_method)
        with self._lock:
            known = self._charges.get(idempotency_key)
            if known is not None:
                if known[0] != request:
                    # Stripe answers such a replay with an idempotency_error.
                    raise ProviderError(
                        "idempotency key reused with different parameters at the provider"
                    )
                return known[1]
            result = self._decide(payment_method)
            self._charges[idempotency_key] = (request, result)
            if result.provider_ref is not None:
                self._by_ref[result.provider_ref] = result
            return result

    def retrieve(self, provider_ref: str) -> ProviderResult:
        with self._lock:
            known = self._by_ref.get(provider_ref)
            if known is None:
                raise ProviderError(f"the payment provider knows no charge {provider_ref!r}")
            if known.status == "pending":  # settled meanwhile, as the provider would
                known = self._by_ref[provider_ref] = ProviderResult("succeeded", provider_ref)
            return known

    def _decide(self, payment_method: str) -> ProviderResult:
        ref = f"pi_fake_{uuid.uuid4().hex[:24]}"
        if payment_method in self.SUCCEEDING:
            return ProviderResult("succeeded", ref)
        if payment_method in self.SETTLING_LATER:
            return ProviderResult("pending", ref, None, "payment processing")
        decline_code = self.DECLINING.get(payment_method)
        if decline_code is not None:
            return ProviderResult("declined", ref, decline_code, "Your card was declined.")
        raise InvalidInput(f"No such PaymentMethod: '{payment_method}'")


class StripePaymentProvider:
    """Creates and confirms a Stripe PaymentIntent in one call.

    Our idempotency key is Stripe's idempotency key, so the SDK's own network retries (and any
    later re-drive of a pending payment) replay the first attempt instead of charging again.
    """

    def __init__(
        self,
        api_key: str,
        api_base: str | None = None,
        *,
        max_network_retries: int = 2,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout_seconds),
        )

    def charge(
        self, amount: int, currency: str, payment_method: str, idempotency_key: str
    ) -> ProviderResult:
        try:
            intent = self._client.v1.payment_intents.create(
                {
                    "amount": amount,
                    "currency": currency,
                    "payment_method": payment_method,
                    "confirm": True,
                    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            return _declined_from_card_error(exc)
        except stripe.InvalidRequestError as exc:
            raise InvalidInput(exc.user_message or "invalid payment request") from exc
        except stripe.StripeError as exc:
            # Connection, API, rate-limit, auth, permission and idempotency errors: the outcome is
            # unknown or our setup is wrong; either way the payment stays pending.
            raise _provider_error(exc) from exc
        return _result_from_intent(intent)

    def retrieve(self, provider_ref: str) -> ProviderResult:
        try:
            intent = self._client.v1.payment_intents.retrieve(provider_ref)
            if getattr(intent, "status", None) == "requires_capture":
                # Authorised, not captured: the payment asked for a charge. The key makes a
                # repeat of the capture (ours, or the SDK's retry) capture once.
                intent = self._client.v1.payment_intents.capture(
                    provider_ref, options={"idempotency_key": f"{provider_ref}-capture"}
                )
        except stripe.CardError as exc:
            return _declined_from_card_error(exc)
        except stripe.StripeError as exc:
            # Even "no such payment intent" is the provider's inconsistency, not the client's:
            # the payment stays pending (and is logged) rather than being dropped.
            raise _provider_error(exc) from exc
        return _result_from_intent(intent)


def _provider_error(exc: stripe.StripeError) -> ProviderError:
    log.warning("stripe call failed: %s: %s", type(exc).__name__, exc)
    return ProviderError(f"the payment provider failed: {type(exc).__name__}")


def _declined_from_card_error(exc: stripe.CardError) -> ProviderResult:
    error = exc.error
    decline_code = getattr(error, "decline_code", None) or exc.code or "card_declined"
    ref = getattr(getattr(error, "payment_intent", None), "id", None)
    return ProviderResult("declined", ref, decline_code, exc.user_message or "card declined")


def _result_from_intent(intent: stripe.PaymentIntent) -> ProviderResult:
    # StripeObjects raise AttributeError for fields the response left out, hence getattr.
    status = getattr(intent, "status", None)
    if status == "succeeded":
        return ProviderResult("succeeded", intent.id)
    if status in ("requires_action", "requires_payment_method", "canceled"):
        last_error = getattr(intent, "last_payment_error", None)
        decline_code = getattr(last_error, "decline_code", None) or status
        return ProviderResult("declined", intent.id, decline_code, f"payment {status}")
    if status in ("processing", "requires_capture") and getattr(intent, "id", None):
        # Accepted, not settled: the payment stays pending, and keeps the intent's id so that
        # reconciliation can retrieve it (replaying the create would replay this very answer).
        return ProviderResult("pending", intent.id, None, f"payment {status}")
    raise ProviderError(f"the payment provider left the payment in status {status!r}")


def make_provider(config: PaymentsConfig) -> tuple[str, PaymentProvider]:
    """Build the provider named in config; returns ``(name, provider)``."""
    if config.provider == "stripe":
        return "stripe", StripePaymentProvider(config.stripe_api_key, config.stripe_api_base)
    return "fake", FakePaymentProvider()
