"""The resilient HTTP transport every ``client.py`` uses, and the credential both ends share.

One pooled keep-alive connection pool per service (urllib3, the engine under ``requests``, used
directly: ``requests``' per-call machinery of hooks, cookies and header merging costs more than the
loopback round trip itself; a new TCP connection per call would cost more still), connect and read
timeouts, retries with exponential backoff and jitter only
where repeating is safe, and a pybreaker circuit breaker per service. Failures come out as
exceptions of two kinds that never mix (as in httpx): the domain's own errors, rebuilt from the
``code`` on the wire so the gateway cannot tell a remote domain from a local one, and the domain's
"unavailable" error for everything that means "the service did not answer properly" (refused
connection, timeout, 5xx, open breaker).
"""

from __future__ import annotations

import json as jsonlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
import pybreaker
import urllib3
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError
from urllib3.exceptions import TimeoutError as TransportTimeout

from blog.config import TransportConfig
from blog.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
SERVICE_TOKEN_ISSUER = "strangler-blog-monolith"
SERVICE_UNAUTHORIZED = "service_unauthorized"

request_id_var: ContextVar[str | None] = ContextVar("blog_request_id", default=None)
"""The request id of the work in progress; set by the gateway, carried to every service call."""

_GENERIC_BY_STATUS: dict[int, type[DomainError]] = {
    400: InvalidInput,
    401: Unauthorized,
    402: PaymentRequired,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


# --------------------------------------------------------------------------- credentials


class ServiceCredentials:
    """Short-lived service JWTs: signed with the internal secret, audience = the callee.

    A token minted for the images service is refused by the payments service, and a leaked token
    expires within minutes. Tokens are cached until shortly before they expire, so signing costs
    nothing on the hot path.
    """

    def __init__(self, secret: str, ttl_seconds: int = 300) -> None:
        self._secret = secret
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._verified: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def token_for(self, audience: str) -> str:
        now = time.time()
        with self._lock:
            cached = self._cache.get(audience)
            if cached and cached[1] - now > 30:
                return cached[0]
            expires = now + self._ttl
            token = jwt.encode(
                {
                    "iss": SERVICE_TOKEN_ISSUER,
                    "aud": audience,
                    "iat": int(now),
                    "exp": int(expires),
                },
                self._secret,
                algorithm="HS256",
            )
            self._cache[audience] = (token, expires)
            return token

    def verify(self, authorization: str | None, audience: str) -> None:
        """Raise ServiceUnauthorized unless ``authorization`` carries a token for ``audience``.

        A token already verified is remembered until it expires: its signature cannot change,
        and checking it again would cost more (~70 µs) than the call it guards.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ServiceUnauthorized("a service credential is required")
        known = self._verified.get(token)
        if known is not None and known[0] == audience and known[1] > time.time():
            return
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=audience,
                issuer=SERVICE_TOKEN_ISSUER,
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except jwt.InvalidTokenError as exc:
            raise ServiceUnauthorized(f"the service credential was refused: {exc}") from None
        if len(self._verified) >= 1024:
            self._verified.clear()
        self._verified[token] = (audience, float(claims["exp"]))


class ServiceUnauthorized(Unauthorized):
    code = SERVICE_UNAUTHORIZED


# --------------------------------------------------------------------------- client


class _RemoteFailure(Exception):
    """The service did not answer properly; counted by the breaker, retried when safe."""


_BODY_REFUSED = (401, 413)


@dataclass(frozen=True)
class Reply:
    """A service's 2xx answer, read in full (the connection is already back in the pool)."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(repr=False)

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class ServiceClient:
    """Calls one extracted service. Thread-safe; one per service per process."""

    def __init__(
        self,
        service: str,
        base_url: str,
        config: TransportConfig,
        errors: Iterable[type[DomainError]],
        unavailable: Callable[[str], Unavailable],
        credentials: ServiceCredentials,
        pool_size: int = 32,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._config = config
        self._errors = {cls.code: cls for cls in errors}
        self._unavailable = unavailable
        self._credentials = credentials
        self._pool = urllib3.connection_from_url(
            self.base_url,
            maxsize=pool_size,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(
                connect=config.connect_timeout_seconds, read=config.read_timeout_seconds
            ),
        )
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=config.breaker_fail_max,
            reset_timeout=config.breaker_reset_timeout_seconds,
            exclude=[DomainError],
            name=service,
        )
        # Exponential backoff with jitter, so many callers retrying at once do not stampede.
        self._retrying = Retrying(
            stop=stop_after_attempt(config.retries),  # after the first, failed, attempt
            wait=wait_exponential(multiplier=0.05, max=1.0) + wait_random(0, 0.05),
            retry=retry_if_exception_type(_RemoteFailure),
            reraise=True,
        )

    # -- the one entry point

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        authenticated: bool = True,
    ) -> Reply:
        """Send one request; return the 2xx response or raise a domain / unavailable error.

        ``idempotent`` must be true only where repeating the call cannot do harm: reads, and
        writes that carry an idempotency key the service honours.
        """
        args = (method, path, json, params, files, headers, authenticated)
        try:
            try:
                return self.breaker.call(self._send, *args)
            except _RemoteFailure:
                if not idempotent or self._config.retries == 0:
                    raise
            # Only a failed call pays for the retry machinery: the happy path is one breaker
            # call, a few microseconds, where tenacity's bookkeeping would cost ~30 µs per call.
            time.sleep(0.05 + random.uniform(0, 0.05))  # a retry at once would meet the same fault
            for attempt in self._retrying.copy():
                with attempt:
                    return self.breaker.call(self._send, *args)
        except pybreaker.CircuitBreakerError:
            raise self._unavailable(
                f"the {self.service} service is unavailable (circuit open: failing fast after "
                f"repeated failures)"
            ) from None
        except _RemoteFailure as exc:
            raise self._unavailable(f"the {self.service} service is unavailable: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, Any] | None,
        files: Mapping[str, Any] | None,
        extra_headers: Mapping[str, str] | None,
        authenticated: bool,
    ) -> Reply:
        headers = dict(extra_headers or {})
        request_id = request_id_var.get()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        if authenticated:
            headers["Authorization"] = f"Bearer {self._credentials.token_for(self.service)}"
        body: bytes | None = None
        if files:
            body, headers["Content-Type"] = urllib3.encode_multipart_formdata(
                {name: _file_field(value) for name, value in files.items()}
            )
        elif json is not None:
            body = jsonlib.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        url = path + ("?" + urlencode(params) if params else "")
        try:
            response = self._pool.urlopen(
                method,
                url,
                body=body,
                headers=headers,
                preload_content=False,
                redirect=False,
                retries=False,
            )
        except TransportTimeout as exc:
            if isinstance(exc, NewConnectionError):
                raise _RemoteFailure(f"could not connect ({_root_cause(exc)})") from None
            raise _RemoteFailure(f"timed out ({type(exc).__name__})") from None
        except ProtocolError as exc:
            raise _RemoteFailure(f"connection broken ({_root_cause(exc)})") from None
        except HTTPError as exc:
            raise _RemoteFailure(f"{type(exc).__name__}: {exc}") from None
        connection = response.connection  # reading the body in full hands it back to the pool
        try:
            reply = Reply(response.status, response.headers, response.read())
        except (TransportTimeout, ProtocolError) as exc:
            raise _RemoteFailure(f"response broken off ({type(exc).__name__})") from None
        finally:
            response.release_conn()
            if body is not None and response.status in _BODY_REFUSED and connection is not None:
                # A server that refuses a body unread (401 before reading, 413) closes the
                # connection after answering, though its answer says keep-alive: drop the socket
                # so the pool opens a fresh one next time.
                connection.close()
        if reply.status < 400:
            return reply
        self._raise_for(reply)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for(self, response: Reply) -> None:
        code, message, details = _error_body(response)
        if code in self._errors:
            raise self._errors[code](message, details=details)
        if code == SERVICE_UNAUTHORIZED:
            log.error("%s refused our service credential: %s", self.service, message)
            raise _RemoteFailure("it refused the monolith's service credential")
        if response.status >= 500 or code is None:
            raise _RemoteFailure(f"HTTP {response.status}")
        generic = _GENERIC_BY_STATUS.get(response.status, InvalidInput)
        error = generic(message, details=details)
        raise error

    # -- state for /api/health

    def state(self) -> dict[str, Any]:
        return {
            "url": self.base_url,
            "breaker": self.breaker.current_state,
            "consecutive_failures": self.breaker.fail_counter,
        }

    def remote_health(self) -> dict[str, Any]:
        """The service's own /health plus our breaker's view of it; never raises."""
        try:
            remote = self.call("GET", "/health", idempotent=False, authenticated=False).json()
        except DomainError as exc:
            return {"status": "down", "error": exc.message, **self.state()}
        return {**remote, **self.state()}

    def close(self) -> None:
        self._pool.close()


def _error_body(response: Reply) -> tuple[str | None, str, dict[str, Any] | None]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error.get("message", "")), error.get("details")
    except (ValueError, KeyError, TypeError):
        return None, f"HTTP {response.status}", None


def _file_field(value: Any) -> tuple[str, bytes, str]:
    """``(filename, bytes | file, content_type)`` → what urllib3's multipart encoder takes."""
    filename, content, content_type = value
    if hasattr(content, "read"):
        if hasattr(content, "seek"):
            content.seek(0)  # a retried upload must resend from byte 0
        content = content.read()
    return filename, content, content_type


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return type(exc).__name__


# --------------------------------------------------------------------------- server side


def public(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a service endpoint callable without the service credential (health, public reads)."""
    view.blog_public = True  # type: ignore[attr-defined]
    return view


def is_public(view: Callable[..., Any] | None) -> bool:
    return bool(getattr(view, "blog_public", False))


def read_json(max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, or a 4xx that says what is wrong with it (both ends use it)."""
    from flask import request

    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"JSON bodies are limited to {max_bytes} bytes")
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    if len(request.get_data(cache=True)) > max_bytes:
        raise PayloadTooLarge(f"JSON bodies are limited to {max_bytes} bytes")
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidInput("the body is not valid JSON", details={"code": "malformed_json"})
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    return body
