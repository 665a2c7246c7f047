"""Where a request's time goes: every domain call, timed, for the ``Server-Timing`` header.

The composition root wraps each domain in a ``TimedDomain``; the gateway opens a list per request
and turns it into ``Server-Timing: posts.get_post;dur=0.41;desc="http";service=0.12, ...`` so curl
-v or the browser's devtools show what each hop cost. ``service`` is the extracted service's own
time for that call (what its app spent, from its ``Server-Timing: total``): the rest of ``dur``
is the hop itself, the network, both servers and the client. Wrappers are made once, per method,
at start-up: a per-call ``__getattr__`` would cost more than the in-process call it measures.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from time import perf_counter
from typing import Any

CallRecord = tuple[str, str, float, float | None]
"""(``domain.method``, mode, seconds, the service's own seconds: None in-process)."""

calls_var: ContextVar[list[CallRecord] | None] = ContextVar("blog_domain_calls", default=None)

service_seconds_var: ContextVar[float | None] = ContextVar("blog_service_seconds", default=None)
"""The extracted service's own time for the remote call being made in this context, as its
answer's ``Server-Timing: total`` told it; set by the domain client (``blog.contract``)."""

IN_PROCESS = "inprocess"


def service_seconds(header: str | None) -> float | None:
    """``total;dur=<ms>`` from a service's ``Server-Timing``, in seconds; None when absent or
    not a plain non-negative number (a service's header is data, not something to trust)."""
    for entry in (header or "").split(","):
        name, _, params = entry.strip().partition(";")
        if name != "total":
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    ms = float(value)
                except ValueError:
                    return None
                return ms / 1000 if 0 <= ms < 1e9 else None  # also refuses nan and inf
    return None


def _timed(fn: Callable[..., Any], label: str, mode: str) -> Callable[..., Any]:
    if mode == IN_PROCESS:  # nothing to ask of a service: the cheapest wrapper

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            calls = calls_var.get()
            if calls is None:
                return fn(*args, **kwargs)
            started = perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                calls.append((label, mode, perf_counter() - started, None))

        return timed

    @functools.wraps(fn)
    def timed_remote(*args: Any, **kwargs: Any) -> Any:
        calls = calls_var.get()
        if calls is None:
            return fn(*args, **kwargs)
        token = service_seconds_var.set(None)
        started = perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = perf_counter() - started
            calls.append((label, mode, elapsed, service_seconds_var.get()))
            service_seconds_var.reset(token)

    return timed_remote


class TimedDomain:
    """The same interface as ``target``, each public method timed into ``calls_var``."""

    def __init__(self, target: Any, domain: str, mode: str) -> None:
        self._target = target
        for name, member in inspect.getmembers(target, callable):
            if not name.startswith("_") and name not in ("close", "health"):
                setattr(self, name, _timed(member, f"{domain}.{name}", mode))

    def __getattr__(self, name: str) -> Any:  # only for what is not wrapped (health, transport)
        return getattr(self._target, name)


def server_timing(calls: list[CallRecord], total_seconds: float) -> str:
    entries = [
        f'{label};dur={seconds * 1000:.3f};desc="{mode}"'
        + ("" if service is None else f";service={service * 1000:.3f}")
        for label, mode, seconds, service in calls
    ]
    entries.append(f"total;dur={total_seconds * 1000:.3f}")
    return ", ".join(entries)
