"""Faults injected in front of any transport, as config asks: the lab's way to make a service
slow, failing, or gone, without touching the service.

``services.<domain>.faults`` lists them; each applies to one operation (the interface method's
name) or to every one (``"*"``), with a probability:

- ``latency``: wait ``latency_ms`` before sending (the answer still comes);
- ``error``: answer ``status`` (503 unless told) without reaching the service;
- ``reset``: send, let the service do the work, then lose the answer as a reset connection
  would. This is why an unsafe write is never retried: it may well have happened;
- ``hang``: never answer; the caller waits out its read timeout.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from blog.config import FaultConfig
from blog.transport import (
    ConnectionBroken,
    TimedOut,
    Transport,
    WireRequest,
    WireResponse,
)

INJECTED = "injected_fault"


class FaultInjectingTransport:
    def __init__(
        self,
        inner: Transport,
        faults: Sequence[FaultConfig],
        *,
        read_timeout: float,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.faults = tuple(faults)
        self._read_timeout = read_timeout
        self._rng = rng or random.Random()
        self._sleep = sleep

    def _applies(self, fault: FaultConfig, request: WireRequest) -> bool:
        method = request.operation.rpartition(".")[2]
        if fault.route not in ("*", method, request.operation):
            return False
        return fault.probability >= 1.0 or self._rng.random() < fault.probability

    def send(self, request: WireRequest) -> WireResponse:
        reset = False
        for fault in self.faults:
            if not self._applies(fault, request):
                continue
            if fault.kind == "latency":
                self._sleep(fault.latency_ms / 1000)
            elif fault.kind == "error":
                return _error_response(fault.status, request.operation)
            elif fault.kind == "hang":
                self._sleep(request.read_timeout or self._read_timeout)
                raise TimedOut(f"timed out (injected hang on {request.operation})")
            elif fault.kind == "reset":
                reset = True
        response = self.inner.send(request)
        if reset:
            raise ConnectionBroken(f"connection reset (injected, after {request.operation} ran)")
        return response

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "faults": [asdict(fault) for fault in self.faults]}

    def close(self) -> None:
        self.inner.close()


def _error_response(status: int, operation: str) -> WireResponse:
    body = {"error": {"code": INJECTED, "message": f"injected fault: HTTP {status} on {operation}"}}
    return WireResponse(status, {"content-type": "application/json"}, json.dumps(body).encode())
