"""The in-process payments service: the only code that touches ``models.py``.

A charge is a small state machine, ``pending`` → ``succeeded`` | ``declined``, built so that no
idempotency key is ever charged twice:

1. the ``pending`` row is committed *before* the provider is called, so a crash in between leaves
   a row that a retry (or ``reconcile_pending``) re-drives with the same provider key;
2. the provider is idempotent by key, so re-driving replays the first outcome;
3. settling is a compare-and-set on ``status = 'pending'``, so of two concurrent settlers only one
   publishes ``payment.completed``;
4. a charge the provider accepted but has not settled (``processing``, ``requires_capture``)
   keeps the provider's reference on the pending row, and is settled by *retrieving* it from the
   provider, since replaying the charge would only replay the provider's first answer.
"""

from __future__ import annotations

import hashlib
import logging
import math
import unicodedata
from dataclasses import asdict
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Row, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from blog.db import isoformat, ping, reading, transaction, utcnow
from blog.errors import (
    Conflict,
    InvalidInput,
    again_if_transient,
    invalid,
    positive_int,
    storable_id,
    unstorable_text,
)
from blog.events import PAYMENT_COMPLETED, Event, EventPublisher
from blog.payments import (
    DECLINED,
    PENDING,
    SUCCEEDED,
    IdempotencyKeyReused,
    Payment,
    PaymentDeclined,
    PaymentNotFound,
    ProviderError,
)
from blog.payments.models import PaymentRow
from blog.payments.providers import PaymentProvider, ProviderResult

log = logging.getLogger(__name__)


# Stripe refuses charges below about 0.50 in most currencies and above 8 digits of minor units.
MIN_AMOUNT = 50
MAX_AMOUNT = 99_999_999
MAX_TEXT = 255
MAX_RECONCILE_AGE = 10 * 365 * 24 * 3600
"""Ten years: an age past it selects nothing a cutoff of ten years would not (and a date computed
from a huge, infinite or NaN age overflows)."""
CLAIM_ATTEMPTS = 100
"""How often a charge looks for its key's row again after losing the insert to a concurrent
request whose row was then dropped (the provider refused that request): each loss means another
request made progress, so the loop ends; the bound only guards against a bug."""


def provider_idempotency_key(user_id: int, idempotency_key: str) -> str:
    """The key sent to the provider, scoped to the user.

    Client keys are unique per user only, while a provider's keys are global to the account: two
    users who both send key "abc" must not replay each other's charge at the provider.
    """
    digest = hashlib.sha256(f"{user_id}:{idempotency_key}".encode()).hexdigest()
    return f"blog-pay-{digest}"


class InProcessPaymentsService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        bus: EventPublisher,
        provider: PaymentProvider,
        provider_name: str,
    ) -> None:
        self._sessions = session_factory
        self._bus = bus
        self._provider = provider
        self._provider_name = provider_name

    # ------------------------------------------------------------------ interface

    def charge(
        self,
        user_id: int,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
    ) -> Payment:
        currency = _validate(user_id, amount, currency, payment_method, idempotency_key)
        payment = self._find_or_insert(user_id, amount, currency, payment_method, idempotency_key)
        if (payment.amount, payment.currency, payment.payment_method) != (
            amount,
            currency,
            payment_method,
        ):
            raise IdempotencyKeyReused(
                "this idempotency key was already used with a different amount, currency or "
                "payment method",
                details={"payment_id": payment.id},
            )
        return self._drive(payment)

    def get_payment(self, payment_id: int) -> Payment:
        """Any other int is "not found" (the answer this method always gave); an id past what a
        row can hold (``blog.errors.MAX_STORED_ID``) reaches no query."""
        if isinstance(payment_id, bool) or not isinstance(payment_id, int):
            raise invalid("payment_id", "must be a positive integer")
        if payment_id >= 1 and storable_id(payment_id):
            with reading(self._sessions) as connection:
                row = connection.execute(_PAYMENT_BY_ID, {"id": payment_id}).one_or_none()
            if row is not None:
                return _to_dto(row)
        raise PaymentNotFound(f"payment {payment_id} not found")

    def health(self) -> dict[str, object]:
        with self._sessions() as session:
            database = ping(session.get_bind())
        return {
            "status": "ok" if database else "down",
            "database": database,
            "provider": self._provider_name,
        }

    # ------------------------------------------------------------------ operations

    def reconcile_pending(self, older_than_seconds: float = 60, *, limit: int = 500) -> int:
        """Settle payments left pending; returns how many settled.

        One the provider never answered (a crash, an outage) is charged again with its key; one
        it took but had not settled (``processing``, ``requires_capture``: its reference is on
        the row) is retrieved from the provider, since a replayed charge would only replay that
        first answer. Only rows older than ``older_than_seconds`` are touched, so a charge still
        in flight in a request is left to that request.
        """
        if (
            isinstance(older_than_seconds, bool)
            or not isinstance(older_than_seconds, int | float)
            or not math.isfinite(older_than_seconds)
            or not 0 <= older_than_seconds <= MAX_RECONCILE_AGE
        ):
            raise invalid(
                "older_than_seconds", f"must be a number of seconds from 0 to {MAX_RECONCILE_AGE}"
            )
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        with self._sessions() as session:
            rows = session.scalars(
                select(PaymentRow)
                .where(PaymentRow.status == PENDING, PaymentRow.created_at < cutoff)
                .order_by(PaymentRow.id)
                .limit(limit)
            )
            pending = [_to_dto(row) for row in rows]
        settled = 0
        for payment in pending:
            try:
                self._drive(payment)
            except PaymentDeclined:
                settled += 1
            except (ProviderError, InvalidInput) as exc:
                log.warning("reconcile: payment %s not settled: %s", payment.id, exc.message)
            else:
                settled += 1
        log.info("reconcile: %d of %d pending payments settled", settled, len(pending))
        return settled

    # ------------------------------------------------------------------ steps

    def _find_or_insert(
        self,
        user_id: int,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
    ) -> Payment:
        """The key's payment row, inserted ``pending`` when there is none yet.

        Concurrent requests with one key race for the insert; a loser continues with the
        winner's row. That row may be gone already: when the provider refuses the request itself
        (an unknown payment method) the winner drops it, so that the key can be used again with
        a corrected request. The loser then starts over (and gets the same refusal), rather
        than failing on the unique constraint it lost (a 500).
        """
        for _ in range(CLAIM_ATTEMPTS):
            payment = self._find(user_id, idempotency_key)
            if payment is None:
                payment = again_if_transient(
                    lambda: self._insert_pending(
                        user_id, amount, currency, payment_method, idempotency_key
                    )
                )
            if payment is not None:
                return payment
        raise Conflict(
            "idempotency_key: concurrent requests with this key keep racing; retry",
            details={"field": "idempotency_key"},
        )

    def _find(self, user_id: int, idempotency_key: str) -> Payment | None:
        with self._sessions() as session:
            row = session.scalars(
                select(PaymentRow).where(
                    PaymentRow.user_id == user_id,
                    PaymentRow.idempotency_key == idempotency_key,
                )
            ).one_or_none()
            return None if row is None else _to_dto(row)

    def _insert_pending(
        self,
        user_id: int,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
    ) -> Payment | None:
        """Commit the intent to charge before charging, so a crash leaves a trace. None when a
        concurrent request with the same key won the insert and its row is gone already."""
        now = utcnow()
        row = PaymentRow(
            user_id=user_id,
            amount=amount,
            currency=currency,
            payment_method=payment_method,
            idempotency_key=idempotency_key,
            status=PENDING,
            provider=self._provider_name,
            provider_ref=None,
            decline_code=None,
            created_at=now,
            updated_at=now,
        )
        try:
            with transaction(self._sessions) as session:
                session.add(row)
                session.flush()
                payment = _to_dto(row)
        except IntegrityError:
            # A concurrent request with the same key won the insert: continue with its row.
            return self._find(user_id, idempotency_key)
        return payment

    def _drive(self, payment: Payment) -> Payment:
        """Return a settled payment, or charge a pending one (again) with its provider key."""
        if payment.status == SUCCEEDED:
            return payment
        if payment.status == DECLINED:
            raise _declined(payment)
        if payment.provider != self._provider_name:
            raise ProviderError(
                f"payment {payment.id} is pending at provider {payment.provider!r}, "
                f"not {self._provider_name!r}; it cannot be settled here"
            )
        try:
            if payment.provider_ref is not None:
                # The provider took this charge already and said it was not settled: ask it where
                # the charge stands (a replayed create would replay that first answer).
                result = self._provider.retrieve(payment.provider_ref)
            else:
                result = self._provider.charge(
                    payment.amount,
                    payment.currency,
                    payment.payment_method,
                    provider_idempotency_key(payment.user_id, payment.idempotency_key),
                )
        except InvalidInput:
            # The provider refused the request itself: nothing was charged, so drop the row and
            # let the client correct it.
            again_if_transient(lambda: self._discard_pending(payment.id))
            raise
        except ProviderError:
            log.warning("payment %s left pending: the provider failed", payment.id)
            raise
        if result.status == "pending":
            again_if_transient(lambda: self._remember_ref(payment.id, result.provider_ref))
            log.info("payment %s left pending: %s at the provider", payment.id, result.message)
            raise ProviderError(
                f"the payment provider has not settled the payment yet ({result.message}); "
                "retry later with the same Idempotency-Key",
                details={"payment_id": payment.id},
            )
        # Fifty requests with one key on MariaDB: the losers' inserts and this UPDATE lock the
        # same index records in different orders, and InnoDB may roll one back (error 1213).
        settled = again_if_transient(lambda: self._settle(payment.id, result))
        if settled.status == DECLINED:
            raise _declined(settled)
        return settled

    def _settle(self, payment_id: int, result: ProviderResult) -> Payment:
        """Compare-and-set the outcome; only the settler that wins publishes the event."""
        with transaction(self._sessions) as session:
            won = (
                cast(
                    CursorResult[Any],
                    session.execute(
                        update(PaymentRow)
                        .where(PaymentRow.id == payment_id, PaymentRow.status == PENDING)
                        .values(
                            status=SUCCEEDED if result.status == "succeeded" else DECLINED,
                            provider_ref=result.provider_ref,
                            decline_code=result.decline_code,
                            updated_at=utcnow(),
                        )
                        .execution_options(synchronize_session=False)
                    ),
                ).rowcount
                == 1
            )
            row = session.get(PaymentRow, payment_id)
            if row is None:
                raise PaymentNotFound(f"payment {payment_id} not found")
            payment = _to_dto(row)
            if won:
                log.info(
                    "payment %s %s (ref=%s, decline_code=%s)",
                    payment.id,
                    payment.status,
                    payment.provider_ref,
                    payment.decline_code,
                )
                if payment.status == SUCCEEDED:
                    self._bus.publish(session, _completed_event(payment))
        return payment

    def _remember_ref(self, payment_id: int, provider_ref: str | None) -> None:
        """Keep the provider's reference of a charge it has not settled, for ``retrieve``."""
        if provider_ref is None:
            return
        with transaction(self._sessions) as session:
            session.execute(
                update(PaymentRow)
                .where(PaymentRow.id == payment_id, PaymentRow.status == PENDING)
                .values(provider_ref=provider_ref, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )

    def _discard_pending(self, payment_id: int) -> None:
        with transaction(self._sessions) as session:
            session.execute(
                delete(PaymentRow)
                .where(PaymentRow.id == payment_id, PaymentRow.status == PENDING)
                .execution_options(synchronize_session=False)
            )


# ---------------------------------------------------------------------- helpers


def _validate(
    user_id: Any, amount: Any, currency: Any, payment_method: Any, idempotency_key: Any
) -> str:
    """Check every argument; returns the normalised (lowercase) currency. Each refusal is a 400
    naming its field; nothing a database would refuse (a NUL, a lone surrogate, a user id past
    what a row can hold) gets past."""
    positive_int(user_id, "user_id")
    if not storable_id(user_id):
        raise invalid("user_id", "is beyond the ids this service can store")
    if not _is_int(amount) or not MIN_AMOUNT <= amount <= MAX_AMOUNT:
        raise invalid(
            "amount", f"must be an integer number of minor units from {MIN_AMOUNT} to {MAX_AMOUNT}"
        )
    if not (
        isinstance(currency, str)
        and len(currency) == 3
        and currency.isascii()
        and currency.isalpha()
    ):
        raise invalid("currency", "must be a 3-letter ISO 4217 code such as 'usd'")
    if not (
        isinstance(payment_method, str)
        and payment_method.strip()
        and len(payment_method) <= MAX_TEXT
    ):
        raise invalid("payment_method", f"must be 1 to {MAX_TEXT} characters")
    problem = unstorable_text(payment_method)
    if problem is not None:
        raise invalid("payment_method", problem)
    if any(unicodedata.category(char) == "Cc" for char in payment_method):
        raise invalid("payment_method", "must not contain control characters")
    if not (
        isinstance(idempotency_key, str)
        and 1 <= len(idempotency_key) <= MAX_TEXT
        and all("!" <= char <= "~" for char in idempotency_key)
    ):
        raise invalid(
            "idempotency_key", f"must be 1 to {MAX_TEXT} visible ASCII characters (no spaces)"
        )
    return currency.lower()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_PAYMENTS = PaymentRow.__table__
_PAYMENT_BY_ID = select(_PAYMENTS).where(_PAYMENTS.c.id == bindparam("id"))
"""Built once: a statement built per call costs more than the query (see ``blog.db.reading``)."""


def _to_dto(row: PaymentRow | Row[Any]) -> Payment:
    return Payment(
        id=row.id,
        user_id=row.user_id,
        amount=row.amount,
        currency=row.currency,
        status=row.status,
        payment_method=row.payment_method,
        idempotency_key=row.idempotency_key,
        provider=row.provider,
        provider_ref=row.provider_ref,
        decline_code=row.decline_code,
        created_at=isoformat(row.created_at),
        updated_at=isoformat(row.updated_at),
    )


def _declined(payment: Payment) -> PaymentDeclined:
    return PaymentDeclined(
        f"the payment was declined ({payment.decline_code})",
        details={"payment": asdict(payment), "decline_code": payment.decline_code},
    )


def _completed_event(payment: Payment) -> Event:
    return Event(
        type=PAYMENT_COMPLETED,
        data={
            "payment_id": payment.id,
            "user_id": payment.user_id,
            "amount": payment.amount,
            "currency": payment.currency,
            "provider_ref": payment.provider_ref,
        },
    )
