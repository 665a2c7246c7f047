"""The payments interface behaves the same in-process and over HTTP (a real gunicorn process),
and a charge retried after a lost response is still charged once."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from dataclasses import asdict
from urllib.parse import urlsplit

import pytest

from blog.errors import InvalidInput
from blog.events import Event
from blog.payments import (
    IdempotencyKeyReused,
    Payment,
    PaymentDeclined,
    PaymentNotFound,
)
from blog.wiring import connect
from tests.support import deploy, eventually, make_config, unique_email

CARD = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
_user_ids = itertools.count(1000)


@pytest.fixture(scope="module", params=["inprocess", "wire", "http"])
def domains(request, tmp_path_factory):
    with deploy("payments", request.param, tmp_path_factory.mktemp("payments")) as built:
        yield built


@pytest.fixture
def payments(domains):
    return domains.payments


@pytest.fixture
def user_id() -> int:
    """A user of this test alone: the module shares one service (and database) per mode."""
    return next(_user_ids)


def _charge(payments, user_id: int, key: str, **overrides) -> Payment:
    card = CARD | overrides
    return payments.charge(user_id, card["amount"], card["currency"], card["payment_method"], key)


def _register(domains, user_id: int) -> str:
    """Tell the email domain who ``user_id`` is, as auth's ``user.registered`` would."""
    email = unique_email("payer")
    domains.bus.deliver(
        Event(type="user.registered", data={"user_id": user_id, "email": email, "name": "Ada"})
    )
    return email


def _receipts(domains, email: str) -> list:
    return [
        m
        for m in domains.email.list_inbox(limit=200)
        if m.to == email and m.subject.startswith("Your receipt")
    ]


def test_a_charge_succeeds_and_can_be_read_back(payments, user_id):
    payment = _charge(payments, user_id, "order-1")
    assert isinstance(payment, Payment)
    assert (payment.user_id, payment.amount, payment.currency) == (user_id, 1999, "usd")
    assert (payment.status, payment.provider, payment.decline_code) == ("succeeded", "fake", None)
    assert payment.idempotency_key == "order-1"
    assert payment.provider_ref
    assert payments.get_payment(payment.id) == payment
    assert _charge(payments, user_id, "order-1", currency="USD") == payment  # normalised


def test_a_declined_card_is_payment_declined_with_its_details(payments, user_id):
    with pytest.raises(PaymentDeclined) as excinfo:
        _charge(payments, user_id, "declined", payment_method="pm_card_chargeDeclined")
    error = excinfo.value
    assert error.message == "the payment was declined (generic_decline)"
    assert error.details["decline_code"] == "generic_decline"
    assert error.details["payment"]["status"] == "declined"
    stored = payments.get_payment(error.details["payment"]["id"])
    assert error.details == {"payment": asdict(stored), "decline_code": "generic_decline"}
    with pytest.raises(PaymentDeclined) as replayed:  # the key replays the decline, too
        _charge(payments, user_id, "declined", payment_method="pm_card_chargeDeclined")
    assert replayed.value.details == error.details


def test_a_replayed_key_returns_the_same_payment_and_charges_once(domains, user_id):
    email = _register(domains, user_id)
    first = _charge(domains.payments, user_id, "same-key")
    assert _charge(domains.payments, user_id, "same-key") == first
    eventually(lambda: _assert_receipts(domains, email, 1))
    time.sleep(0.3)  # give a (wrong) second receipt the time to arrive before counting
    _assert_receipts(domains, email, 1)


def test_a_reused_key_with_other_parameters_is_refused(payments, user_id):
    first = _charge(payments, user_id, "reused")
    with pytest.raises(IdempotencyKeyReused) as excinfo:
        _charge(payments, user_id, "reused", amount=5000)
    assert excinfo.value.details == {"payment_id": first.id}
    other_user = _charge(payments, next(_user_ids), "reused", amount=5000)  # keys are per user
    assert other_user.id != first.id


@pytest.mark.parametrize(
    ("overrides", "key", "field"),
    [
        ({"amount": 0}, "k", "amount"),
        ({"amount": True}, "k", "amount"),
        ({"amount": "1999"}, "k", "amount"),
        ({"amount": 19.99}, "k", "amount"),
        ({"currency": "dollars"}, "k", "currency"),
        ({"currency": 840}, "k", "currency"),
        ({"payment_method": ""}, "k", "payment_method"),
        ({}, "", "idempotency_key"),
        ({}, " padded ", "idempotency_key"),
        ({}, "clé", "idempotency_key"),
        ({}, 42, "idempotency_key"),
    ],
)
def test_invalid_inputs_are_the_services_own_errors(payments, user_id, overrides, key, field):
    with pytest.raises(InvalidInput) as excinfo:
        _charge(payments, user_id, key, **overrides)
    assert excinfo.value.message.startswith(f"{field}: ")
    assert excinfo.value.details == {"field": field}  # named, as every domain names it


def test_an_unknown_payment_method_is_invalid_and_leaves_no_payment(payments, user_id):
    with pytest.raises(InvalidInput) as excinfo:
        _charge(payments, user_id, "bogus", payment_method="pm_bogus")
    assert excinfo.value.message == "No such PaymentMethod: 'pm_bogus'"
    # the row was discarded, so the key is free for the corrected request
    assert _charge(payments, user_id, "bogus").status == "succeeded"


@pytest.mark.parametrize("payment_id", [10**9, 0, -1, 2**63])
def test_an_unknown_payment_is_payment_not_found(payments, payment_id):
    with pytest.raises(PaymentNotFound) as excinfo:
        payments.get_payment(payment_id)
    assert excinfo.value.message == f"payment {payment_id} not found"


@pytest.mark.parametrize("payment_id", [True, "1", 1.0, None])
def test_a_malformed_payment_id_is_the_same_error_as_in_every_domain(payments, payment_id):
    with pytest.raises(InvalidInput) as excinfo:
        payments.get_payment(payment_id)
    assert excinfo.value.message == "payment_id: must be a positive integer"
    assert excinfo.value.details == {"field": "payment_id"}


def test_reconcile_pending_settles_nothing_when_nothing_is_pending(payments, user_id):
    _charge(payments, user_id, "settled")
    assert payments.reconcile_pending(older_than_seconds=0) == 0
    assert payments.reconcile_pending() == 0


def test_a_completed_payment_reaches_the_monolith_as_a_receipt(domains, user_id):
    email = _register(domains, user_id)
    payment = _charge(domains.payments, user_id, "receipt")
    receipts = eventually(lambda: _assert_receipts(domains, email, 1))
    assert receipts[0].subject == f"Your receipt for payment #{payment.id}: 19.99 USD"
    assert payment.provider_ref in receipts[0].body


def test_health(payments):
    health = payments.health()
    assert health["status"] == "ok"
    assert health["database"] is True
    assert health["provider"] == "fake"


def _assert_receipts(domains, email: str, count: int) -> list:
    found = _receipts(domains, email)
    assert len(found) == count, found
    return found


# ------------------------------------------------------------ a retried charge, for real (http)


class LossyProxy:
    """A loopback TCP proxy that, once armed, swallows the next response and cuts the connection.

    That is the failure an idempotency key exists for: the service did the work and committed it,
    but the caller never heard back, so it cannot tell "not charged" from "charged" and retries.
    """

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.armed = threading.Event()
        self.connections = 0
        self.dropped = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="lossy-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self._upstream, timeout=10)
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, is_response: bool) -> None:
        try:
            while data := source.recv(65536):
                if is_response and self.armed.is_set():
                    self.armed.clear()
                    self.dropped += 1
                    break  # the service answered; the caller will never see it
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.mark.parametrize("domains", ["http"], indirect=True)
def test_a_charge_retried_after_a_lost_response_charges_once(domains, user_id, tmp_path):
    config = make_config(tmp_path)
    assert config.transport.retries >= 1
    proxy = LossyProxy(domains.payments.health()["instances"][0]["url"])
    client = connect("payments", config, proxy.url)
    try:
        email = _register(domains, user_id)
        proxy.armed.set()
        payment = _charge(client, user_id, "lost-response")
        assert proxy.dropped == 1  # the first answer really was lost...
        assert proxy.connections == 2  # ...and the transport retried on a fresh connection
        assert payment.status == "succeeded"
        # the retry replayed the first charge: the same row, the same provider charge
        assert domains.payments.get_payment(payment.id) == payment
        assert _charge(domains.payments, user_id, "lost-response") == payment
        eventually(lambda: _assert_receipts(domains, email, 1))
        time.sleep(0.3)  # give a (wrong) second receipt the time to arrive before counting
        _assert_receipts(domains, email, 1)
    finally:
        client.close()
        proxy.close()
