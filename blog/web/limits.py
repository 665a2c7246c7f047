"""Rate limits at the edge: flask-limiter, counting in Redis so that every worker and process of
the monolith shares one count.

What is limited, and by what (the limits themselves are config's ``rate_limits`` section):

- ``POST /api/login``: per account (the email asked for, so guessing one account's password from
  many addresses is slowed down) and per client address (so is trying many accounts from one);
- ``POST /api/register``: per client address;
- every write of a signed-in user (posts, their edits and deletions, comments, uploads,
  payments, renames): one budget per user, shared by all of them.

A refused request is a 429 in the API's error shape with a ``Retry-After`` header (seconds) and
``details.retry_after``. The client address is the connection's (``request.remote_addr``): behind
a reverse proxy, wrap the app in werkzeug's ``ProxyFix`` so that it is the client's.

Counting: ``rate_limits.storage_url`` (Redis). When Redis cannot be reached, each process counts
in its own memory instead (the limits then hold per process, not across them), says so with a
WARNING when it starts serving, and goes back to Redis once it answers again (flask-limiter's
in-memory fallback).

The limiter is made when the app starts serving (its first request), not when it is built:
building an app starts nothing, and flask-limiter's memory storage starts a timer thread.
Only limits on views are used (no default, application or meta limits, no rate-limit headers on
every response), which need none of the request hooks ``Limiter.init_app`` installs; Flask
refuses new hooks once an app serves, so the limiter is marked as installed before ``init_app``
runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded

from blog.config import RateLimitsConfig
from blog.errors import DomainError
from blog.httpkit.flask import error_response
from blog.web.auth_guard import current_user

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

REDIS_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 0.25, "socket_timeout": 1.0}
"""A Redis that is down must cost a request a fraction of a second once, not hang it: after the
first failure flask-limiter counts in memory and only looks at Redis again now and then."""
_ATTRIBUTE = "blog_rate_limited"


# --------------------------------------------------------------------------- who is counted
#
# flask-limiter takes an exception from a key function for a storage failure (and would switch
# to its in-memory fallback), so these never raise: anything odd is counted by address.


def client_address() -> str:
    return f"address:{request.remote_addr or 'unknown'}"


def account() -> str:
    """The account a login names, as a digest: neither Redis nor a log line holds the address.
    Normalized (NFC, case-folded, trimmed) so that two spellings of one address share a count."""
    email = ""
    length = request.content_length
    if length is not None and length <= 64 * 1024:  # never read a body the view would refuse
        try:
            body = json.loads(request.get_data(cache=True))
        except (ValueError, RecursionError):  # malformed: the view answers 400 for it
            body = None
        if isinstance(body, dict) and isinstance(body.get("email"), str):
            email = unicodedata.normalize("NFC", body["email"]).strip().casefold()
    return "account:" + hashlib.sha256(email.encode("utf-8", "replace")).hexdigest()[:32]


def user() -> str:
    """The signed-in user; a request without a valid token is counted by address (its view
    answers 401 anyway)."""
    try:
        return f"user:{current_user().id}"
    except DomainError:
        return client_address()


def _never_raises(key: Callable[[], str]) -> Callable[[], str]:
    @functools.wraps(key)
    def safe() -> str:
        try:
            return key()
        except Exception:  # a bug in a key function must not pass for Redis being down
            log.exception("rate limit key %s failed; counting by address", key.__name__)
            return f"address:{request.remote_addr or 'unknown'}"

    return safe


@dataclass(frozen=True)
class Rule:
    setting: str
    """The ``rate_limits`` key holding the limit."""
    key: Callable[[], str]
    message: str
    shared: bool = False
    """One budget across every endpoint the rule is on (otherwise one per endpoint)."""


LOGIN_PER_ACCOUNT = Rule("login_per_account", account, "too many login attempts for this account")
LOGIN_PER_ADDRESS = Rule(
    "login_per_address", client_address, "too many login attempts from this address"
)
REGISTER_PER_ADDRESS = Rule(
    "register_per_address", client_address, "too many accounts registered from this address"
)
WRITES_PER_USER = Rule("writes_per_user", user, "too many writes", shared=True)

LIMITED: dict[str, tuple[Rule, ...]] = {
    "accounts.login": (LOGIN_PER_ADDRESS, LOGIN_PER_ACCOUNT),
    "accounts.register": (REGISTER_PER_ADDRESS,),
    "accounts.rename_me": (WRITES_PER_USER,),
    "posts.create_post": (WRITES_PER_USER,),
    "posts.update_post": (WRITES_PER_USER,),
    "posts.delete_post": (WRITES_PER_USER,),
    "posts.add_comment": (WRITES_PER_USER,),
    "media.upload": (WRITES_PER_USER,),
    "payments.pay": (WRITES_PER_USER,),
}
"""Endpoint → its limits. A unit test checks that every write of the API is in here."""


def rate_limited(view: Callable[..., Any]) -> bool:
    """Whether ``view`` may answer 429 (for the API document)."""
    return bool(getattr(view, _ATTRIBUTE, False))


# --------------------------------------------------------------------------- the limiter


class EdgeLimits:
    """One app's limiter, made on its first request."""

    def __init__(self, app: Flask, settings: RateLimitsConfig) -> None:
        self._app = app
        self._settings = settings
        self._originals: dict[str, Callable[..., Any]] = {
            endpoint: app.view_functions[endpoint] for endpoint in LIMITED
        }
        self._views: dict[str, Callable[..., Any]] = {}
        self._limiter: Limiter | None = None
        self._lock = threading.Lock()

    @property
    def limiter(self) -> Limiter:
        limiter = self._limiter
        if limiter is None:
            with self._lock:
                if self._limiter is None:
                    self._limiter = self._make()
                limiter = self._limiter
        return limiter

    def start(self) -> None:
        """Make the limiter (once; a ``before_request`` hook, cheap after the first time)."""
        if self._limiter is None:
            self.limiter  # noqa: B018

    def _make(self) -> Limiter:
        settings = self._settings
        redis = not settings.storage_url.startswith("memory://")
        limiter = Limiter(
            key_func=client_address,
            storage_uri=settings.storage_url,
            storage_options=dict(REDIS_TIMEOUTS) if redis else {},
            strategy=settings.strategy,
            key_prefix=settings.key_prefix,
            in_memory_fallback_enabled=redis,
            headers_enabled=False,
        )
        # init_app would add request hooks these limits do not need (see the module's doc),
        # which Flask refuses on an app that already serves.
        self._app.extensions.setdefault("limiter", set()).add(limiter)
        limiter.init_app(self._app)
        if redis and not limiter.storage.check():
            log.warning(
                "rate limits: Redis at %s cannot be reached; counting in this process's memory "
                "instead (limits are per process until Redis answers)",
                _without_password(settings.storage_url),
            )
        for endpoint, rules in LIMITED.items():
            view: Callable[..., Any] = self._originals[endpoint]
            for rule in rules:
                limit_string = getattr(settings, rule.setting)
                key = _never_raises(rule.key)
                if rule.shared:
                    decorate = limiter.shared_limit(
                        limit_string, scope=rule.setting, key_func=key, error_message=rule.message
                    )
                else:
                    decorate = limiter.limit(
                        limit_string, scope=rule.setting, key_func=key, error_message=rule.message
                    )
                view = decorate(view)
            self._views[endpoint] = view
        return limiter

    def call(self, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        self.start()
        return self._views[endpoint](*args, **kwargs)

    def too_many_requests(self, exc: RateLimitExceeded) -> Response:
        retry_after = 1
        breached = self._limiter.current_limit if self._limiter is not None else None
        if breached is not None:
            try:
                retry_after = max(1, math.ceil(breached.window.reset_time - time.time()))
            except Exception as error:  # the storage went away meanwhile: a second is a guess
                log.warning("rate limits: no reset time for %s: %s", breached.limit, error)
        message = exc.description or "too many requests"
        response = error_response(
            429,
            "too_many_requests",
            f"{message}; try again in {retry_after} s",
            {"retry_after": retry_after},
        )
        response.headers["Retry-After"] = str(retry_after)
        return response


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at else ''}{host}" if credentials or at else url


def _guard(edge: EdgeLimits, endpoint: str, view: F) -> F:
    """``view``, its limits checked first (by the limiter made at the first request)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return edge.call(endpoint, *args, **kwargs)

    setattr(guarded, _ATTRIBUTE, True)
    return cast(F, guarded)


def install(app: Flask, settings: RateLimitsConfig) -> None:
    """Limit ``app``'s endpoints in :data:`LIMITED` (call after its blueprints are registered)."""
    if not settings.enabled:
        return
    edge = EdgeLimits(app, settings)
    app.extensions["blog.limits"] = edge
    for endpoint in LIMITED:
        app.view_functions[endpoint] = _guard(edge, endpoint, app.view_functions[endpoint])
    app.before_request(edge.start)
    app.register_error_handler(RateLimitExceeded, edge.too_many_requests)
