"""Timeouts, retries and the circuit breaker, as one layer over any transport.

The breaker is ours, not pybreaker's: ``pybreaker.CircuitBreaker.call`` holds the breaker's lock
for the whole wrapped call (danielfm/pybreaker#3), so every call through one breaker waits for the
one before it, and one hung call holds up every other request to that domain. Here the lock
guards only the breaker's bookkeeping, a few microseconds before and after the call; the call
itself runs unlocked, so concurrent calls overlap.

Retries follow ARCHITECTURE.md: only a request marked ``safe`` (a read, or a write with an
idempotency key) is sent again after a failure it may have caused on the other side. A request
that certainly never left (no connection) may always be tried again.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from blog.transport import (
    CircuitOpen,
    ServerFailed,
    Transport,
    TransportError,
    WireRequest,
    WireResponse,
)

BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Opens when the service looks unhealthy; after ``reset_timeout`` seconds lets one trial
    call through (half-open): its success closes the breaker, its failure opens it again.

    Unhealthy, by one of two rules:

    - ``failure_rate`` (the service's breaker, as resilience4j counts): at least that share of
      the calls that ended in the last ``window_seconds`` failed, over at least
      ``minimum_calls`` calls. One request's bad luck, or one unlucky minute at low traffic,
      does not switch a domain off for everyone;
    - ``fail_max`` (an instance's ejection): that many failures in a row.

    Use it as ``admit()`` before the call, then exactly one of ``succeeded()``, ``failed()`` or
    ``abandoned()`` after it.
    """

    def __init__(
        self,
        name: str,
        reset_timeout: float,
        *,
        fail_max: int | None = None,
        failure_rate: float | None = None,
        window_seconds: float = 10.0,
        minimum_calls: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (fail_max is None) == (failure_rate is None):
            raise ValueError("a breaker opens on fail_max or on failure_rate, one of them")
        self.name = name
        self.fail_max = fail_max
        self.failure_rate = failure_rate
        self.window_seconds = window_seconds
        self.minimum_calls = minimum_calls
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._window: collections.deque[tuple[float, bool]] = collections.deque()
        self._opened_at = 0.0
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.reset_timeout:
                return "half-open"
            return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def window(self) -> tuple[int, int]:
        """``(calls, failures)`` in the current window (for ``/api/health``)."""
        with self._lock:
            self._trim(self._clock())
            return len(self._window), sum(failed for _, failed in self._window)

    def admit(self) -> bool:
        """Raise ``CircuitOpen`` unless a call may go now; True when that call is the trial."""
        with self._lock:
            if self._state == "closed":
                return False
            if self._state == "open":
                if self._clock() - self._opened_at < self.reset_timeout:
                    raise CircuitOpen(f"circuit open: failing fast ({self._why()})")
                self._state = "half-open"
            if self._trial_running:
                raise CircuitOpen("circuit half-open: one trial call is already under way")
            self._trial_running = True
            return True

    def succeeded(self, trial: bool) -> None:
        with self._lock:
            if trial:
                self._trial_running = False
                self._window.clear()  # a fresh start: the failures that opened it are history
            self._record(False)
            self._state = "closed"
            self._failures = 0

    def failed(self, trial: bool) -> None:
        with self._lock:
            if trial:
                self._trial_running = False
            self._failures += 1
            self._record(True)
            if trial or self._state == "half-open" or self._unhealthy():
                self._state = "open"
                self._opened_at = self._clock()

    def abandoned(self, trial: bool) -> None:
        """The call ended with neither an answer nor a transport failure (say, an interrupt)."""
        if trial:
            with self._lock:
                self._trial_running = False

    def _record(self, failed: bool) -> None:
        if self.failure_rate is None:
            return
        now = self._clock()
        self._window.append((now, failed))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._window and self._window[0][0] < now - self.window_seconds:
            self._window.popleft()

    def _unhealthy(self) -> bool:
        if self.fail_max is not None:
            return self._failures >= self.fail_max
        assert self.failure_rate is not None
        calls = len(self._window)
        failures = sum(failed for _, failed in self._window)
        return calls >= self.minimum_calls and failures >= self.failure_rate * calls

    def _why(self) -> str:
        if self.fail_max is not None:
            return f"{self._failures} failures in a row"
        calls = len(self._window)
        failures = sum(failed for _, failed in self._window)
        return f"{failures} of the last {calls} calls failed"


def server_error(response: WireResponse) -> bool:
    return response.status >= 500


class ResilientTransport:
    """Wraps a transport with a breaker and retries with exponential backoff and jitter.

    ``is_failure`` tells a failed answer (counted by the breaker, retried when safe) from a
    domain's answer, even a 5xx one such as a payment provider's 502: that is the domain
    speaking, not the service failing.
    """

    def __init__(
        self,
        inner: Transport,
        breaker: CircuitBreaker,
        *,
        retries: int,
        is_failure: Callable[[WireResponse], bool] = server_error,
        backoff_base: float = 0.05,
        backoff_max: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.breaker = breaker
        self._retries = retries
        self._is_failure = is_failure
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = sleep

    def send(self, request: WireRequest) -> WireResponse:
        attempt = 0
        while True:
            trial = self.breaker.admit()  # CircuitOpen propagates: nothing was sent
            try:
                response = self.inner.send(request)
            except TransportError as exc:
                if not exc.service_failed:
                    self.breaker.abandoned(trial)
                    raise
                self.breaker.failed(trial)
                if not self._may_retry(request, attempt, exc.sent):
                    raise
            except BaseException:
                self.breaker.abandoned(trial)
                raise
            else:
                if not self._is_failure(response):
                    self.breaker.succeeded(trial)
                    return response
                self.breaker.failed(trial)
                if not self._may_retry(request, attempt, sent=True):
                    raise ServerFailed(f"HTTP {response.status}", response)
            attempt += 1
            # A retry at once would meet the same fault; jitter keeps callers out of lockstep.
            delay = min(self._backoff_base * 2 ** (attempt - 1), self._backoff_max)
            self._sleep(delay + random.uniform(0, self._backoff_base))

    def _may_retry(self, request: WireRequest, attempt: int, sent: bool) -> bool:
        return attempt < self._retries and (request.safe or not sent)

    def describe(self) -> dict[str, Any]:
        calls, failures = self.breaker.window()
        return {
            **self.inner.describe(),
            "breaker": self.breaker.state,
            "consecutive_failures": self.breaker.consecutive_failures,
            "window": {"calls": calls, "failures": failures},
        }

    def close(self) -> None:
        self.inner.close()
