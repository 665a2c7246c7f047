"""The transport seam, layer by layer, with transports that need no network: the breaker, the
retry policy, injected faults and the in-process wire."""

from __future__ import annotations

import random
import threading

import pytest
from flask import Flask, request

from blog.config import FaultConfig
from blog.transport import (
    CircuitOpen,
    ConnectFailed,
    ConnectionBroken,
    ServerFailed,
    TimedOut,
    TransportError,
    WireRequest,
    WireResponse,
    request_id_var,
)
from blog.transport.faults import FaultInjectingTransport
from blog.transport.resilience import CircuitBreaker, ResilientTransport
from blog.transport.wire import WireTransport

OK = WireResponse(200, {"content-type": "application/json"}, b"{}")


def get(safe: bool = True, operation: str = "probe.read") -> WireRequest:
    return WireRequest("GET" if safe else "POST", "/thing", operation, safe)


class ScriptedTransport:
    """Answers (or raises) what it is told, in order, and counts the calls."""

    def __init__(self, *outcomes: WireResponse | TransportError) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[WireRequest] = []

    def send(self, request: WireRequest) -> WireResponse:
        self.sent.append(request)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, TransportError):
            raise outcome
        return outcome

    def describe(self) -> dict[str, object]:
        return {"url": "scripted://"}

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resilient(inner: ScriptedTransport, retries: int = 2, fail_max: int = 3) -> ResilientTransport:
    return ResilientTransport(
        inner,
        CircuitBreaker("probe", 30.0, fail_max=fail_max),
        retries=retries,
        sleep=lambda _seconds: None,
    )


# --------------------------------------------------------------------------- the breaker


def test_breaker_opens_after_fail_max_failures_in_a_row_and_a_success_resets_the_count():
    breaker = CircuitBreaker("probe", 30, fail_max=3)
    for _ in range(2):
        breaker.failed(breaker.admit())
    breaker.succeeded(breaker.admit())
    assert breaker.consecutive_failures == 0
    for _ in range(3):
        breaker.failed(breaker.admit())
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        breaker.admit()


def test_breaker_lets_one_trial_through_after_the_reset_timeout():
    clock = Clock()
    breaker = CircuitBreaker("probe", 30, fail_max=1, clock=clock)
    breaker.failed(breaker.admit())
    clock.now += 29.9
    with pytest.raises(CircuitOpen):
        breaker.admit()
    clock.now += 0.2
    assert breaker.state == "half-open"
    trial = breaker.admit()
    assert trial is True
    with pytest.raises(CircuitOpen, match="trial"):
        breaker.admit()  # only one call probes a service that may still be down
    breaker.failed(trial)
    assert breaker.state == "open"  # the trial failed: open again, for a whole reset timeout
    clock.now += 30
    breaker.succeeded(breaker.admit())
    assert breaker.state == "closed"
    assert breaker.admit() is False


def test_the_service_breaker_opens_on_a_failure_rate_over_enough_calls():
    clock = Clock()
    breaker = CircuitBreaker(
        "probe", 30, failure_rate=0.5, window_seconds=10, minimum_calls=10, clock=clock
    )
    for _ in range(9):  # all failing, but too few calls to judge the service by
        breaker.failed(breaker.admit())
    assert breaker.state == "closed"
    breaker.succeeded(breaker.admit())  # 9 of 10 failed: the rate is over the threshold...
    breaker.failed(breaker.admit())  # ...and the next failure opens it
    assert breaker.state == "open"
    assert breaker.window() == (11, 10)


def test_a_failure_rate_under_the_threshold_keeps_it_closed_and_old_calls_leave_the_window():
    clock = Clock()
    breaker = CircuitBreaker(
        "probe", 30, failure_rate=0.5, window_seconds=10, minimum_calls=4, clock=clock
    )
    for _ in range(10):
        breaker.succeeded(breaker.admit())
        breaker.succeeded(breaker.admit())
        breaker.failed(breaker.admit())  # one call in three fails: under half
    assert breaker.state == "closed"
    clock.now += 11  # the window moves on
    assert breaker.window() == (0, 0)
    for _ in range(3):
        breaker.failed(breaker.admit())
    assert breaker.state == "closed"  # three calls are fewer than the minimum
    breaker.failed(breaker.admit())
    assert breaker.state == "open"


def test_an_abandoned_trial_frees_the_half_open_slot():
    clock = Clock()
    breaker = CircuitBreaker("probe", 1, fail_max=1, clock=clock)
    breaker.failed(breaker.admit())
    clock.now += 2
    breaker.abandoned(breaker.admit())
    assert breaker.admit() is True


def test_concurrent_calls_through_one_breaker_overlap():
    """pybreaker holds its lock for the whole call, so eight 0.3 s calls took 2.4 s; ours must
    overlap: the lock guards only the bookkeeping."""
    gate = threading.Barrier(8, timeout=5)

    class Slow(ScriptedTransport):
        def send(self, request: WireRequest) -> WireResponse:
            gate.wait()  # returns only when all eight calls are inside the transport at once
            return OK

    transport = resilient(Slow(OK))
    results: list[WireResponse] = []
    threads = [
        threading.Thread(target=lambda: results.append(transport.send(get()))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8  # a serializing breaker would have broken the barrier


# --------------------------------------------------------------------------- retries


def test_a_safe_call_is_retried_and_an_unsafe_one_is_not():
    broken = ConnectionBroken("reset")
    inner = ScriptedTransport(broken, broken, OK)
    assert resilient(inner).send(get(safe=True)) is OK
    assert len(inner.sent) == 3

    inner = ScriptedTransport(broken, OK)
    with pytest.raises(ConnectionBroken):
        resilient(inner).send(get(safe=False))
    assert len(inner.sent) == 1  # it may have happened: never twice


def test_an_unsafe_call_that_never_left_may_be_tried_again():
    inner = ScriptedTransport(ConnectFailed("refused"), OK)
    assert resilient(inner).send(get(safe=False)) is OK
    assert len(inner.sent) == 2


def test_a_failing_answer_is_retried_then_raised_with_the_answer():
    failing = WireResponse(500, {}, b"")
    inner = ScriptedTransport(failing)
    with pytest.raises(ServerFailed) as caught:
        resilient(inner, retries=2).send(get())
    assert caught.value.response is failing
    assert len(inner.sent) == 3


def test_a_domain_answer_is_not_a_failure_even_as_a_5xx():
    bad_gateway = WireResponse(502, {}, b'{"error": {"code": "payment_provider_error"}}')
    inner = ScriptedTransport(bad_gateway)
    transport = ResilientTransport(
        inner,
        CircuitBreaker("probe", 30, fail_max=1),
        retries=2,
        is_failure=lambda response: b"payment_provider_error" not in response.content,
        sleep=lambda _s: None,
    )
    assert transport.send(get()) is bad_gateway
    assert len(inner.sent) == 1
    assert transport.breaker.state == "closed"


def test_an_open_breaker_fails_fast_without_sending():
    inner = ScriptedTransport(ConnectionBroken("reset"))
    transport = resilient(inner, retries=0, fail_max=2)
    for _ in range(2):
        with pytest.raises(ConnectionBroken):
            transport.send(get())
    with pytest.raises(CircuitOpen):
        transport.send(get())
    assert len(inner.sent) == 2
    assert transport.describe()["breaker"] == "open"


def test_backoff_grows_and_is_jittered():
    slept: list[float] = []
    inner = ScriptedTransport(ConnectionBroken("reset"))
    transport = ResilientTransport(
        inner, CircuitBreaker("probe", 30, fail_max=100), retries=3, sleep=slept.append
    )
    with pytest.raises(ConnectionBroken):
        transport.send(get())
    assert len(slept) == 3
    assert 0.05 <= slept[0] < 0.1 and 0.1 <= slept[1] < 0.15 and 0.2 <= slept[2] < 0.25


# --------------------------------------------------------------------------- faults


def faulty(*faults: FaultConfig, inner: ScriptedTransport | None = None) -> FaultInjectingTransport:
    return FaultInjectingTransport(
        inner or ScriptedTransport(OK),
        faults,
        read_timeout=5.0,
        rng=random.Random(7),
        sleep=lambda _s: None,
    )


def test_an_error_fault_answers_without_reaching_the_service():
    inner = ScriptedTransport(OK)
    transport = faulty(FaultConfig(kind="error", status=503), inner=inner)
    response = transport.send(get())
    assert response.status == 503
    assert b"injected_fault" in response.content
    assert inner.sent == []


def test_a_reset_fault_lets_the_work_happen_and_loses_the_answer():
    inner = ScriptedTransport(OK)
    with pytest.raises(ConnectionBroken, match="injected"):
        faulty(FaultConfig(kind="reset"), inner=inner).send(get(safe=False))
    assert len(inner.sent) == 1


def test_hang_and_latency_faults_wait():
    slept: list[float] = []
    transport = FaultInjectingTransport(
        ScriptedTransport(OK),
        [FaultConfig(kind="latency", latency_ms=40), FaultConfig(kind="hang", route="upload")],
        read_timeout=2.5,
        sleep=slept.append,
    )
    assert transport.send(get(operation="images.get")) is OK
    with pytest.raises(TimedOut):
        transport.send(get(operation="images.upload"))
    assert slept == [0.04, 0.04, 2.5]


def test_a_fault_applies_to_its_route_with_its_probability():
    transport = faulty(FaultConfig(kind="error", route="get_post", probability=0.3))
    statuses = [transport.send(get(operation="posts.get_post")).status for _ in range(1000)]
    assert 200 < statuses.count(503) < 400  # about 30 %, with a fixed seed
    assert transport.send(get(operation="posts.list_posts")).status == 200
    assert transport.describe()["faults"][0]["route"] == "get_post"


# --------------------------------------------------------------------------- the wire


def wsgi_app() -> Flask:
    app = Flask("probe")

    @app.post("/echo")
    def echo() -> tuple[dict[str, object], int, dict[str, str]]:
        request_id_var.set("set-by-the-service")
        body = {"body": request.get_data(as_text=True), "query": request.args.get("q")}
        return body, 201, {"X-Seen": request.headers.get("X-Probe", "")}

    return app


def test_the_wire_calls_the_app_without_a_socket_and_keeps_contexts_apart():
    transport = WireTransport(wsgi_app(), "probe")
    token = request_id_var.set("the-gateway's")
    try:
        response = transport.send(
            WireRequest("POST", "/echo?q=1", "probe.echo", False, {"X-Probe": "yes"}, b"payload")
        )
        assert request_id_var.get() == "the-gateway's"  # the service ran in its own context
    finally:
        request_id_var.reset(token)
    assert response.status == 201
    assert response.headers["x-seen"] == "yes"
    assert response.content_type == "application/json"
    assert b'"body":"payload"' in response.content and b'"query":"1"' in response.content
    assert transport.describe() == {"url": "wire://probe"}
