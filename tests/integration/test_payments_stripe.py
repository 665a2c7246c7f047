"""The Stripe provider through the real stripe SDK against a local, Stripe-shaped HTTP server.

The server stands in for api.stripe.com: it records every request and answers from a script, and
like Stripe it replays the stored response for an ``Idempotency-Key`` it has already answered.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from blog.config import PaymentsConfig
from blog.db import create_tables, make_engine, make_session_factory
from blog.errors import InvalidInput
from blog.events import PAYMENT_COMPLETED, Event, InlineEventBus
from blog.payments import (
    DECLINED,
    PENDING,
    SUCCEEDED,
    PaymentDeclined,
    ProviderError,
)
from blog.payments.models import metadata
from blog.payments.providers import StripePaymentProvider, make_provider
from blog.payments.service import InProcessPaymentsService, provider_idempotency_key

Reply = tuple[int, dict[str, Any]]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class FakeStripe:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    # Computes the reply to a new (non-replayed) request; tests swap it.
    respond: Callable[[dict[str, str]], Reply] = lambda form: (200, intent(form, "succeeded"))
    replies: dict[str, Reply] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Every PaymentIntent answered so far, by id, as it stands now (GET /v1/payment_intents/<id>).
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)

    def handle(self, recorded: Recorded) -> Reply:
        with self.lock:
            self.requests.append(recorded)
            key = recorded.headers.get("idempotency-key")
            if key and key in self.replies:
                return self.replies[key]
            reply = self._answer(recorded)
            if key and reply[0] < 500:  # Stripe does not store 5xx results
                self.replies[key] = reply
            body = reply[1].get("error", {}).get("payment_intent") or reply[1]
            if body.get("object") == "payment_intent":
                self.intents[body["id"]] = dict(body)
            return reply

    def _answer(self, recorded: Recorded) -> Reply:
        parts = recorded.path.split("?")[0].strip("/").split("/")  # v1 payment_intents <id> ...
        if len(parts) == 2:
            return self.respond(recorded.form)
        found = self.intents.get(parts[2])
        if found is None:
            return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
        if parts[3:] == ["capture"]:
            if found["status"] != "requires_capture":
                return 400, {"error": {"type": "invalid_request_error", "code": "bad_state"}}
            return 200, {**found, "status": "succeeded"}
        return 200, dict(found)

    def settle(self, intent_id: str, status: str) -> None:
        """The intent moves on at "Stripe" (a processing payment succeeds, say)."""
        with self.lock:
            self.intents[intent_id]["status"] = status


def intent(form: dict[str, str], status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"pi_{uuid.uuid4().hex[:24]}",
        "object": "payment_intent",
        "amount": int(form["amount"]),
        "currency": form["currency"],
        "payment_method": form["payment_method"],
        "status": status,
        "livemode": False,
        **extra,
    }


def card_error(form: dict[str, str]) -> Reply:
    return 402, {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
            "payment_intent": intent(form, "requires_payment_method"),
        }
    }


def missing_payment_method(form: dict[str, str]) -> Reply:
    return 400, {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "param": "payment_method",
            "message": f"No such PaymentMethod: '{form['payment_method']}'",
        }
    }


def server_error(_form: dict[str, str]) -> Reply:
    return 500, {"error": {"type": "api_error", "message": "Something went wrong on our end."}}


@pytest.fixture()
def stripe_server() -> Iterator[FakeStripe]:
    state: FakeStripe | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.do_POST()

        def do_POST(self) -> None:
            assert state is not None
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = state.handle(Recorded(self.command, self.path, headers, form))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:14]}")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        state = FakeStripe(url=f"http://127.0.0.1:{server.server_address[1]}")
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def provider(server: FakeStripe, retries: int = 0) -> StripePaymentProvider:
    return StripePaymentProvider(
        "sk_test_local", server.url, max_network_retries=retries, timeout_seconds=5
    )


def test_success_sends_a_confirmed_payment_intent_with_our_key(stripe_server: FakeStripe) -> None:
    result = provider(stripe_server).charge(1999, "usd", "pm_card_visa", "our-key-1")

    assert result.status == "succeeded"
    assert result.provider_ref is not None and result.provider_ref.startswith("pi_")
    [request] = stripe_server.requests
    assert (request.method, request.path) == ("POST", "/v1/payment_intents")
    assert request.headers["idempotency-key"] == "our-key-1"
    assert request.headers["authorization"] == "Bearer sk_test_local"
    assert request.form["amount"] == "1999"
    assert request.form["currency"] == "usd"
    assert request.form["payment_method"] == "pm_card_visa"
    assert request.form["confirm"] == "true"
    assert request.form["automatic_payment_methods[enabled]"] == "true"
    assert request.form["automatic_payment_methods[allow_redirects]"] == "never"


def test_card_error_is_a_decline(stripe_server: FakeStripe) -> None:
    stripe_server.respond = card_error

    result = provider(stripe_server).charge(1999, "usd", "pm_card_chargeDeclined", "k")

    assert result.status == "declined"
    assert result.decline_code == "generic_decline"
    assert result.message == "Your card was declined."
    assert result.provider_ref is not None and result.provider_ref.startswith("pi_")


def test_intent_needing_action_is_a_decline(stripe_server: FakeStripe) -> None:
    stripe_server.respond = lambda form: (200, intent(form, "requires_action"))

    result = provider(stripe_server).charge(1999, "usd", "pm_card_threeDSecure2Required", "k")

    assert (result.status, result.decline_code) == ("declined", "requires_action")


def test_invalid_request_is_invalid_input(stripe_server: FakeStripe) -> None:
    stripe_server.respond = missing_payment_method

    with pytest.raises(InvalidInput, match="No such PaymentMethod"):
        provider(stripe_server).charge(1999, "usd", "pm_nope", "k")


@pytest.mark.parametrize("status", [500, 401, 429])
def test_server_failures_are_provider_errors(stripe_server: FakeStripe, status: int) -> None:
    stripe_server.respond = lambda _form: (status, {"error": {"type": "api_error", "message": "x"}})

    with pytest.raises(ProviderError) as caught:
        provider(stripe_server).charge(1999, "usd", "pm_card_visa", "k")
    assert caught.value.status == 502


def test_sdk_retries_a_500_with_the_same_idempotency_key(stripe_server: FakeStripe) -> None:
    """The SDK retries 5xx (and connection errors) itself, always with our key: safe to allow."""
    stripe_server.respond = server_error

    with pytest.raises(ProviderError):
        provider(stripe_server, retries=1).charge(1999, "usd", "pm_card_visa", "k-retry")

    assert len(stripe_server.requests) == 2
    assert {r.headers["idempotency-key"] for r in stripe_server.requests} == {"k-retry"}


def test_unreachable_stripe_is_a_provider_error() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    server.server_close()  # nothing listens there any more

    unreachable = StripePaymentProvider("sk_test_local", url, max_network_retries=0)
    with pytest.raises(ProviderError):
        unreachable.charge(1999, "usd", "pm_card_visa", "k")


def test_make_provider_builds_stripe_from_config(stripe_server: FakeStripe) -> None:
    name, built = make_provider(
        PaymentsConfig(
            provider="stripe", stripe_api_key="sk_test_cfg", stripe_api_base=stripe_server.url
        )
    )
    assert name == "stripe"
    assert built.charge(1999, "usd", "pm_card_visa", "k").status == "succeeded"
    assert stripe_server.requests[0].headers["authorization"] == "Bearer sk_test_cfg"


# ---------------------------------------------------------------------- the whole service


@pytest.fixture()
def service_factory(
    tmp_path: Path, stripe_server: FakeStripe
) -> Iterator[Callable[[], tuple[InProcessPaymentsService, list[Event]]]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'payments.db'}")
    create_tables(engine, metadata)
    events: list[Event] = []
    bus = InlineEventBus()
    bus.subscribe(PAYMENT_COMPLETED, events.append, consumer="test")

    def build() -> tuple[InProcessPaymentsService, list[Event]]:
        return (
            InProcessPaymentsService(
                make_session_factory(engine), bus, provider(stripe_server), "stripe"
            ),
            events,
        )

    yield build
    engine.dispose()


def test_service_replay_reaches_stripe_once(
    stripe_server: FakeStripe,
    service_factory: Callable[[], tuple[InProcessPaymentsService, list[Event]]],
) -> None:
    service, events = service_factory()

    first = service.charge(7, 1999, "usd", "pm_card_visa", "order-42")
    second = service.charge(7, 1999, "usd", "pm_card_visa", "order-42")

    assert first == second
    assert first.status == SUCCEEDED and first.provider == "stripe"
    [request] = stripe_server.requests
    assert request.headers["idempotency-key"] == provider_idempotency_key(7, "order-42")
    assert first.provider_ref == stripe_server.replies[request.headers["idempotency-key"]][1]["id"]
    assert len(events) == 1


def test_service_decline_through_stripe(
    stripe_server: FakeStripe,
    service_factory: Callable[[], tuple[InProcessPaymentsService, list[Event]]],
) -> None:
    service, events = service_factory()
    stripe_server.respond = card_error

    with pytest.raises(PaymentDeclined) as caught:
        service.charge(7, 1999, "usd", "pm_card_chargeDeclined", "order-1")

    assert caught.value.details["decline_code"] == "generic_decline"
    assert caught.value.details["payment"]["status"] == DECLINED
    assert events == []


def test_service_outage_then_retry_settles_without_double_charge(
    stripe_server: FakeStripe,
    service_factory: Callable[[], tuple[InProcessPaymentsService, list[Event]]],
) -> None:
    service, events = service_factory()
    stripe_server.respond = server_error

    with pytest.raises(ProviderError):
        service.charge(7, 1999, "usd", "pm_card_visa", "order-9")
    assert service.get_payment(1).status == PENDING

    stripe_server.respond = lambda form: (200, intent(form, "succeeded"))
    payment = service.charge(7, 1999, "usd", "pm_card_visa", "order-9")

    assert payment.status == SUCCEEDED
    keys = [r.headers["idempotency-key"] for r in stripe_server.requests]
    assert keys == [provider_idempotency_key(7, "order-9")] * 2
    assert len(stripe_server.replies) == 1  # one PaymentIntent exists at "Stripe"
    assert len(events) == 1


# ---------------------------------------------------------------------- not settled yet (issue 12)


@pytest.mark.parametrize("status", ["processing", "requires_capture"])
def test_an_intent_not_settled_yet_is_pending_with_its_id(
    stripe_server: FakeStripe, status: str
) -> None:
    stripe_server.respond = lambda form: (200, intent(form, status))

    result = provider(stripe_server).charge(1999, "usd", "pm_card_visa", "k")

    assert result.status == "pending"
    assert result.provider_ref in stripe_server.intents


def test_retrieve_reads_where_the_intent_stands_now(stripe_server: FakeStripe) -> None:
    stripe_server.respond = lambda form: (200, intent(form, "processing"))
    ref = provider(stripe_server).charge(1999, "usd", "pm_card_visa", "k").provider_ref
    assert ref is not None
    assert provider(stripe_server).retrieve(ref).status == "pending"

    stripe_server.settle(ref, "succeeded")
    assert provider(stripe_server).retrieve(ref) == provider(stripe_server).retrieve(ref)
    assert provider(stripe_server).retrieve(ref).status == "succeeded"
    assert stripe_server.requests[-1].method == "GET"
    assert stripe_server.requests[-1].path == f"/v1/payment_intents/{ref}"

    stripe_server.settle(ref, "canceled")
    assert provider(stripe_server).retrieve(ref).status == "declined"


def test_retrieve_captures_an_authorised_intent_once(stripe_server: FakeStripe) -> None:
    stripe_server.respond = lambda form: (200, intent(form, "requires_capture"))
    ref = provider(stripe_server).charge(1999, "usd", "pm_card_visa", "k").provider_ref
    assert ref is not None

    assert provider(stripe_server).retrieve(ref).status == "succeeded"

    [capture] = [r for r in stripe_server.requests if r.path.endswith("/capture")]
    assert capture.headers["idempotency-key"] == f"{ref}-capture"


def test_retrieve_of_an_unknown_intent_is_a_provider_error(stripe_server: FakeStripe) -> None:
    with pytest.raises(ProviderError):
        provider(stripe_server).retrieve("pi_unknown")


@pytest.mark.parametrize("status", ["processing", "requires_capture"])
def test_reconcile_settles_a_stuck_payment_by_retrieving_its_intent(
    stripe_server: FakeStripe,
    service_factory: Callable[[], tuple[InProcessPaymentsService, list[Event]]],
    status: str,
) -> None:
    """Replaying the create would replay Stripe's first answer (still not settled) forever:
    reconciliation asks Stripe where that intent stands, and settles the payment from it."""
    service, events = service_factory()
    stripe_server.respond = lambda form: (200, intent(form, status))

    with pytest.raises(ProviderError):
        service.charge(7, 1999, "usd", "pm_card_visa", "order-slow")
    pending = service.get_payment(1)
    assert pending.status == PENDING
    assert pending.provider_ref in stripe_server.intents
    if status == "processing":  # settles at Stripe's pace: not yet, then succeeded
        assert service.reconcile_pending(older_than_seconds=0) == 0
        stripe_server.settle(pending.provider_ref or "", "succeeded")
    # (an authorised intent is captured by the reconciliation itself)
    assert service.reconcile_pending(older_than_seconds=0) == 1

    settled = service.get_payment(1)
    assert (settled.status, settled.provider_ref) == (SUCCEEDED, pending.provider_ref)
    creates = [r for r in stripe_server.requests if r.path == "/v1/payment_intents"]
    assert len(creates) == 1  # one PaymentIntent, never a second create
    assert len(events) == 1
    assert service.charge(7, 1999, "usd", "pm_card_visa", "order-slow") == settled


def test_a_client_retry_of_a_processing_payment_asks_stripe(
    stripe_server: FakeStripe,
    service_factory: Callable[[], tuple[InProcessPaymentsService, list[Event]]],
) -> None:
    service, _events = service_factory()
    stripe_server.respond = lambda form: (200, intent(form, "processing"))
    with pytest.raises(ProviderError):
        service.charge(7, 1999, "usd", "pm_card_visa", "order-retry")
    stripe_server.settle(service.get_payment(1).provider_ref or "", "succeeded")

    assert service.charge(7, 1999, "usd", "pm_card_visa", "order-retry").status == SUCCEEDED


def test_a_processing_payment_that_fails_at_stripe_is_declined(
    stripe_server: FakeStripe,
    service_factory: Callable[[], tuple[InProcessPaymentsService, list[Event]]],
) -> None:
    service, events = service_factory()
    stripe_server.respond = lambda form: (200, intent(form, "processing"))
    with pytest.raises(ProviderError):
        service.charge(7, 1999, "usd", "pm_card_visa", "order-fails")
    stripe_server.settle(service.get_payment(1).provider_ref or "", "requires_payment_method")

    assert service.reconcile_pending(older_than_seconds=0) == 1
    assert service.get_payment(1).status == DECLINED
    assert events == []
