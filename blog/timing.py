"""Where a request's time goes: every domain call, timed, for the ``Server-Timing`` header.

The composition root wraps each domain in a ``TimedDomain``; the gateway opens a list per request
and turns it into ``Server-Timing: posts.get_post;dur=0.41;desc="http", ...`` so curl -v or the
browser's devtools show what each hop cost. Wrappers are made once, per method, at start-up: a
per-call ``__getattr__`` would cost more than the in-process call it measures.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from time import perf_counter
from typing import Any

CallRecord = tuple[str, str, float]
"""(``domain.method``, mode, seconds)."""

calls_var: ContextVar[list[CallRecord] | None] = ContextVar("blog_domain_calls", default=None)


def _timed(fn: Callable[..., Any], label: str, mode: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        calls = calls_var.get()
        if calls is None:
            return fn(*args, **kwargs)
        started = perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            calls.append((label, mode, perf_counter() - started))

    return timed


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
    entries = [f'{label};dur={seconds * 1000:.3f};desc="{mode}"' for label, mode, seconds in calls]
    entries.append(f"total;dur={total_seconds * 1000:.3f}")
    return ", ".join(entries)
