"""The transport seam: how a call to a remote domain reaches its service and comes back.

Modelled on httpx's transports: one narrow interface, ``send(WireRequest) -> WireResponse``,
and several implementations behind it:

- :class:`~blog.transport.http.PooledHttpTransport`: keep-alive connections over a socket;
- :class:`~blog.transport.wire.WireTransport`: the service's WSGI app called in this process,
  without a socket (serialization, credentials and error mapping all still happen);
- :class:`~blog.transport.faults.FaultInjectingTransport`: latency, errors, resets and hangs
  injected in front of any other transport, from config;
- :class:`~blog.transport.resilience.ResilientTransport`: timeouts, retries and the circuit
  breaker, as a layer over any of them.

A transport returns whatever status the service answered; it raises only when no proper answer
came back at all, with the exceptions below. They never mix with the domains' own errors (as in
httpx, where transport errors stay apart from HTTP status errors): the generic client in
:mod:`blog.contract` turns an answer into a DTO or a domain error, and a ``TransportError`` into
the domain's "unavailable" error.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

REQUEST_ID_HEADER = "X-Request-ID"

request_id_var: ContextVar[str | None] = ContextVar("blog_request_id", default=None)
"""The request id of the work in progress: set where a request enters (the gateway, a service),
sent with every call it makes, so one id follows a request through every process."""


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One call to a service, ready to send.

    ``operation`` names what the call is (``posts.get_post``): faults, breakers and traces key on
    it. ``safe`` says whether sending it twice can do no harm (a read, or a write with an
    idempotency key): only safe requests are ever retried.
    """

    method: str
    path: str
    operation: str
    safe: bool
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    read_timeout: float | None = None
    """Seconds to wait for the answer, when the call needs other than the transport's default
    (a long-poll)."""


@dataclass(frozen=True, slots=True)
class WireResponse:
    """A service's answer, read in full. ``headers`` keys are lower-case."""

    status: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


class Transport(Protocol):
    def send(self, request: WireRequest) -> WireResponse:
        """Deliver ``request`` and return the answer, or raise a ``TransportError``."""

    def describe(self) -> dict[str, Any]:
        """What ``/api/health`` shows of this transport (its address, its faults, its breaker)."""

    def close(self) -> None: ...


class TransportError(Exception):
    """The service gave no proper answer. ``sent`` is False only when the request certainly
    never reached the service (no connection, an open breaker), so that even an unsafe request
    could be tried elsewhere without doing anything twice."""

    sent: bool = True
    service_failed: bool = True
    """False when the failure says nothing of the service's health (no instance is known):
    neither counted by the breaker nor retried at once."""


class ConnectFailed(TransportError):
    """No connection could be made: the request never left."""

    sent = False


class TimedOut(TransportError):
    """No answer in time; the service may or may not have done the work."""


class ConnectionBroken(TransportError):
    """The connection broke before the whole answer arrived (a reset, a crash mid-response)."""


class CircuitOpen(TransportError):
    """The breaker is open: the call failed fast, without being sent."""

    sent = False


class ServerFailed(TransportError):
    """The service answered, but with a failure of its own (a 5xx that is not a domain error),
    after every retry the request allowed."""

    def __init__(self, message: str, response: WireResponse) -> None:
        super().__init__(message)
        self.response = response


def lower_headers(headers: Mapping[str, str] | Any) -> dict[str, str]:
    """Headers as a plain dict with lower-case names (HTTP names are case-insensitive)."""
    return {str(name).lower(): str(value) for name, value in headers.items()}


__all__ = [
    "REQUEST_ID_HEADER",
    "CircuitOpen",
    "ConnectFailed",
    "ConnectionBroken",
    "ServerFailed",
    "TimedOut",
    "Transport",
    "TransportError",
    "WireRequest",
    "WireResponse",
    "lower_headers",
    "request_id_var",
]
