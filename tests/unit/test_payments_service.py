"""The in-process payments service against a SQLite file and the offline fake provider."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from blog.config import PaymentsConfig
from blog.db import create_tables, make_engine, make_session_factory, utcnow
from blog.errors import InvalidInput
from blog.events import PAYMENT_COMPLETED, Event, InlineEventBus
from blog.payments import (
    DECLINED,
    PENDING,
    SUCCEEDED,
    IdempotencyKeyReused,
    PaymentDeclined,
    PaymentNotFound,
    ProviderError,
)
from blog.payments.models import PaymentRow, metadata
from blog.payments.providers import FakePaymentProvider, ProviderResult, make_provider
from blog.payments.service import InProcessPaymentsService


class CountingProvider:
    """Wraps a provider to count calls; ``fail`` makes it raise as if the provider were down."""

    def __init__(self, inner: FakePaymentProvider | None = None) -> None:
        self.inner = inner or FakePaymentProvider()
        self.calls: list[tuple[int, str, str, str]] = []
        self.fail = False
        self._lock = threading.Lock()

    def charge(
        self, amount: int, currency: str, payment_method: str, idempotency_key: str
    ) -> ProviderResult:
        with self._lock:
            self.calls.append((amount, currency, payment_method, idempotency_key))
        if self.fail:
            raise ProviderError("the payment provider failed: APIConnectionError")
        return self.inner.charge(amount, currency, payment_method, idempotency_key)


class Harness:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = make_session_factory(engine)
        self.bus = InlineEventBus()
        self.events: list[Event] = []
        self.bus.subscribe(PAYMENT_COMPLETED, self.events.append, consumer="test")
        self.provider = CountingProvider()
        self.service = InProcessPaymentsService(self.sessions, self.bus, self.provider, "fake")

    def rows(self) -> list[PaymentRow]:
        with self.sessions() as session:
            return list(session.scalars(select(PaymentRow).order_by(PaymentRow.id)))

    def count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(PaymentRow)) or 0


@pytest.fixture()
def h(tmp_path: Path) -> Iterator[Harness]:
    engine = make_engine(f"sqlite:///{tmp_path / 'payments.db'}")
    create_tables(engine, metadata)
    yield Harness(engine)
    engine.dispose()


def test_success_settles_and_publishes_one_event_after_commit(h: Harness) -> None:
    seen_status: list[str] = []

    def check_committed(event: Event) -> None:
        # Delivered after commit: a fresh session already sees the settled row.
        seen_status.append(h.service.get_payment(event.data["payment_id"]).status)

    h.bus.subscribe(PAYMENT_COMPLETED, check_committed, consumer="check")
    payment = h.service.charge(7, 1999, "USD", "pm_card_visa", "key-1")

    assert payment.status == SUCCEEDED
    assert payment.currency == "usd"
    assert payment.provider == "fake"
    assert payment.provider_ref is not None and payment.provider_ref.startswith("pi_fake_")
    assert payment.decline_code is None
    assert h.service.get_payment(payment.id) == payment
    assert [e.data for e in h.events] == [
        {
            "payment_id": payment.id,
            "user_id": 7,
            "amount": 1999,
            "currency": "usd",
            "provider_ref": payment.provider_ref,
        }
    ]
    assert seen_status == [SUCCEEDED]


def test_declined_raises_402_and_settles_declined_without_event(h: Harness) -> None:
    with pytest.raises(PaymentDeclined) as caught:
        h.service.charge(7, 1999, "usd", "pm_card_chargeDeclinedInsufficientFunds", "key-1")

    assert caught.value.status == 402
    assert caught.value.details["decline_code"] == "insufficient_funds"
    assert caught.value.details["payment"]["status"] == DECLINED
    [row] = h.rows()
    assert (row.status, row.decline_code) == (DECLINED, "insufficient_funds")
    assert h.events == []

    # Replaying a declined key declines again without calling the provider.
    with pytest.raises(PaymentDeclined):
        h.service.charge(7, 1999, "usd", "pm_card_chargeDeclinedInsufficientFunds", "key-1")
    assert len(h.provider.calls) == 1


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
    ],
)
def test_fake_decline_codes(h: Harness, method: str, code: str) -> None:
    with pytest.raises(PaymentDeclined) as caught:
        h.service.charge(1, 500, "eur", method, "k")
    assert caught.value.details["decline_code"] == code


def test_replay_returns_same_payment_and_charges_once(h: Harness) -> None:
    first = h.service.charge(7, 1999, "usd", "pm_card_mastercard", "key-1")
    second = h.service.charge(7, 1999, "USD", "pm_card_mastercard", "key-1")

    assert second == first
    assert len(h.provider.calls) == 1
    assert len(h.events) == 1
    assert h.count() == 1


def test_same_key_with_different_request_is_rejected(h: Harness) -> None:
    h.service.charge(7, 1999, "usd", "pm_card_visa", "key-1")
    for amount, currency, method in [
        (2000, "usd", "pm_card_visa"),
        (1999, "eur", "pm_card_visa"),
        (1999, "usd", "pm_card_amex"),
    ]:
        with pytest.raises(IdempotencyKeyReused) as caught:
            h.service.charge(7, amount, currency, method, "key-1")
        assert caught.value.status == 409
    assert len(h.provider.calls) == 1


def test_same_key_for_different_users_is_independent(h: Harness) -> None:
    one = h.service.charge(1, 1999, "usd", "pm_card_visa", "shared")
    two = h.service.charge(2, 5000, "usd", "pm_card_amex", "shared")

    assert one.id != two.id
    assert one.provider_ref != two.provider_ref
    assert (two.user_id, two.amount, two.status) == (2, 5000, SUCCEEDED)
    assert len(h.events) == 2
    # The provider key is scoped per user, so the provider never replays one user's charge for
    # another.
    assert h.provider.calls[0][3] != h.provider.calls[1][3]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -100}, "amount"),
        ({"amount": 49}, "amount"),
        ({"amount": 100_000_000}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "1999"}, "amount"),
        ({"amount": 19.99}, "amount"),
        ({"currency": "us"}, "currency"),
        ({"currency": "usd1"}, "currency"),
        ({"currency": "u$d"}, "currency"),
        ({"currency": None}, "currency"),
        ({"payment_method": ""}, "payment_method"),
        ({"payment_method": "   "}, "payment_method"),
        ({"payment_method": "x" * 256}, "payment_method"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "has space"}, "idempotency_key"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
        ({"idempotency_key": "caf\u00e9"}, "idempotency_key"),
        ({"user_id": 0}, "user_id"),
        ({"user_id": "7"}, "user_id"),
    ],
)
def test_invalid_input_is_rejected_before_anything_happens(
    h: Harness, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {
        "user_id": 7,
        "amount": 1999,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "idempotency_key": "key-1",
        **kwargs,
    }
    with pytest.raises(InvalidInput) as caught:
        h.service.charge(**args)  # type: ignore[arg-type]
    assert caught.value.status == 400
    assert caught.value.message.startswith(field)
    assert h.provider.calls == []
    assert h.count() == 0


def test_unknown_payment_method_charges_nothing(h: Harness) -> None:
    with pytest.raises(InvalidInput, match="No such PaymentMethod"):
        h.service.charge(7, 1999, "usd", "pm_card_doesNotExist", "key-1")

    assert h.count() == 0
    assert h.provider.inner.charge_count == 0
    assert h.events == []
    # The key is free again once the client fixes the method.
    assert h.service.charge(7, 1999, "usd", "pm_card_visa", "key-1").status == SUCCEEDED


def test_provider_failure_leaves_pending_and_retry_settles_once(h: Harness) -> None:
    h.provider.fail = True
    with pytest.raises(ProviderError) as caught:
        h.service.charge(7, 1999, "usd", "pm_card_visa", "key-1")
    assert caught.value.status == 502
    [row] = h.rows()
    assert row.status == PENDING
    assert h.events == []

    h.provider.fail = False
    payment = h.service.charge(7, 1999, "usd", "pm_card_visa", "key-1")

    assert payment.id == row.id
    assert payment.status == SUCCEEDED
    assert h.provider.inner.charge_count == 1
    assert len(h.events) == 1
    # Both attempts used the same provider key: that is what makes the re-drive safe.
    assert len({call[3] for call in h.provider.calls}) == 1


def test_provider_idempotency_survives_a_crash_after_charging(h: Harness) -> None:
    """The provider charged but we crashed before settling: the retry replays, not re-charges."""
    payment = h.service.charge(7, 1999, "usd", "pm_card_visa", "key-1")
    with h.sessions.begin() as session:  # simulate the lost settle step
        session.execute(update(PaymentRow).values(status=PENDING, provider_ref=None))

    again = h.service.charge(7, 1999, "usd", "pm_card_visa", "key-1")

    assert again.provider_ref == payment.provider_ref
    assert h.provider.inner.charge_count == 1


def test_reconcile_pending_settles_old_pending_rows(h: Harness) -> None:
    h.provider.fail = True
    for key, method in [("a", "pm_card_visa"), ("b", "pm_card_chargeDeclined")]:
        with pytest.raises(ProviderError):
            h.service.charge(7, 1999, "usd", method, key)
    h.provider.fail = False

    assert h.service.reconcile_pending(older_than_seconds=60) == 0  # too recent: in flight

    with h.sessions.begin() as session:
        session.execute(update(PaymentRow).values(created_at=utcnow() - timedelta(minutes=5)))
    assert h.service.reconcile_pending(older_than_seconds=60) == 2

    assert {r.idempotency_key: r.status for r in h.rows()} == {"a": SUCCEEDED, "b": DECLINED}
    assert len(h.events) == 1
    assert h.service.reconcile_pending(older_than_seconds=0) == 0


def test_concurrent_same_key_charges_make_one_payment(h: Harness) -> None:
    barrier = threading.Barrier(8)

    def attempt(_: int) -> tuple[int, str | None]:
        barrier.wait()
        payment = h.service.charge(7, 1999, "usd", "pm_card_visa", "race")
        return payment.id, payment.provider_ref

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = set(pool.map(attempt, range(8)))

    assert len(results) == 1
    assert h.count() == 1
    assert h.rows()[0].status == SUCCEEDED
    assert h.provider.inner.charge_count == 1
    assert len(h.events) == 1


def test_get_payment_not_found(h: Harness) -> None:
    with pytest.raises(PaymentNotFound) as caught:
        h.service.get_payment(404)
    assert caught.value.status == 404


def test_health(h: Harness) -> None:
    assert h.service.health() == {"status": "ok", "database": True, "provider": "fake"}


def test_health_reports_a_dead_database(tmp_path: Path) -> None:
    (tmp_path / "missing-dir-is-a-file").write_text("not a directory")
    engine = make_engine(f"sqlite:///{tmp_path}/missing-dir-is-a-file/db.sqlite")
    service = InProcessPaymentsService(
        make_session_factory(engine), InlineEventBus(), FakePaymentProvider(), "fake"
    )
    assert service.health() == {"status": "down", "database": False, "provider": "fake"}
    engine.dispose()


def test_fake_provider_is_idempotent_by_key() -> None:
    fake = FakePaymentProvider()
    first = fake.charge(1999, "usd", "pm_card_visa", "k")
    assert fake.charge(1999, "usd", "pm_card_visa", "k") == first
    assert fake.charge_count == 1
    with pytest.raises(ProviderError):  # like Stripe's idempotency_error
        fake.charge(2000, "usd", "pm_card_visa", "k")


def test_make_provider_defaults_to_the_fake() -> None:
    name, provider = make_provider(PaymentsConfig())
    assert name == "fake"
    assert isinstance(provider, FakePaymentProvider)
