"""The payments interface over HTTP: the same methods, DTOs and errors as ``service.py``."""

from __future__ import annotations

from typing import Any

from blog.config import TransportConfig
from blog.payments import ERRORS, Payment, PaymentNotFound, PaymentsUnavailable
from blog.payments.http import IDEMPOTENCY_KEY_HEADER
from blog.transport import ServiceClient, ServiceCredentials


class HttpPaymentsClient:
    def __init__(
        self, base_url: str, transport: TransportConfig, credentials: ServiceCredentials
    ) -> None:
        self.transport = ServiceClient(
            "payments", base_url, transport, ERRORS, PaymentsUnavailable, credentials
        )

    def charge(
        self,
        user_id: int,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
    ) -> Payment:
        # Retried although it is a POST: it carries an idempotency key the service honours (one
        # row per user and key, the provider called with a key derived from it), so a repeat
        # after a lost response replays the first outcome instead of charging again. This is the
        # one kind of write ARCHITECTURE.md allows the transport to retry.
        key = _header_value(idempotency_key)
        response = self.transport.call(
            "POST",
            "/payment",
            json={
                "user_id": user_id,
                "amount": amount,
                "currency": currency,
                "payment_method": payment_method,
            },
            headers={IDEMPOTENCY_KEY_HEADER: key} if key is not None else None,
            idempotent=True,
        )
        return Payment(**response.json())

    def get_payment(self, payment_id: int) -> Payment:
        if not isinstance(payment_id, int) or isinstance(payment_id, bool):
            # Names no payment, as in-process; and a path segment could not carry it faithfully.
            raise PaymentNotFound(f"payment {payment_id} not found")
        response = self.transport.call("GET", f"/payments/{payment_id}", idempotent=True)
        return Payment(**response.json())

    def reconcile_pending(self, older_than_seconds: int = 60) -> int:
        # Safe to repeat: it only settles rows still pending, each by compare-and-set, so a retry
        # (even one racing a first attempt whose response was lost) settles nothing twice.
        response = self.transport.call(
            "POST", "/reconcile", json={"older_than_seconds": older_than_seconds}, idempotent=True
        )
        return int(response.json()["settled"])

    def health(self) -> dict[str, Any]:
        return self.transport.remote_health()

    def close(self) -> None:
        self.transport.close()


def _header_value(key: object) -> str | None:
    """``key`` as a header value, or None when a header could not carry it unchanged.

    HTTP strips surrounding whitespace and cannot carry control or non-ASCII characters. Such a key
    is sent as no header at all, so the service's own validation refuses it with the very error
    the in-process call raises (it accepts only visible ASCII, which a header always carries).
    """
    if isinstance(key, str) and key and key.isascii() and key.isprintable() and key == key.strip():
        return key
    return None
