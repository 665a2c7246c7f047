"""Client-side load balancing: one logical service, several instances, one transport.

Each call goes to one of the instances the discovery source lists, chosen round robin or by
fewest calls in flight. Every instance has its own breaker that opens on its first failure
(outlier ejection): the instance is skipped for ``ejection_seconds``, then one call tries it
again. A safe call that failed on one instance is retried by the resilience layer above, and the
balancer sends the retry elsewhere, because the failed instance is ejected by then.

When every instance is ejected, calls still go to them (no balancer fails fast on its own: the
service's breaker does that); only an empty list of instances fails a call at once, with
``sent = False``.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from blog.discovery import InstanceSource
from blog.transport import (
    CircuitOpen,
    ConnectFailed,
    Transport,
    TransportError,
    WireRequest,
    WireResponse,
)
from blog.transport.resilience import CircuitBreaker, server_error

log = logging.getLogger(__name__)

Policy = Literal["round_robin", "least_outstanding"]


class NoInstance(ConnectFailed):
    """Discovery lists no instance of the domain: not a failure of any instance."""

    service_failed = False


@dataclass
class _Instance:
    url: str
    transport: Transport
    breaker: CircuitBreaker
    outstanding: int = 0
    calls: int = 0
    failures: int = 0
    ejections: int = field(default=0)


class BalancedTransport:
    def __init__(
        self,
        domain: str,
        source: InstanceSource,
        connect: Callable[[str], Transport],
        *,
        policy: Policy = "least_outstanding",
        ejection_seconds: float = 10.0,
        is_failure: Callable[[WireResponse], bool] = server_error,
    ) -> None:
        self._domain = domain
        self._source = source
        self._connect = connect
        self._policy = policy
        self._ejection = ejection_seconds
        self._is_failure = is_failure
        self._instances: dict[str, _Instance] = {}
        self._lock = threading.Lock()
        self._turn = itertools.count()

    def send(self, request: WireRequest) -> WireResponse:
        instance, trial = self._pick()
        try:
            response = instance.transport.send(request)
        except TransportError:
            self._done(instance, trial, failed=True)
            raise
        except BaseException:
            with self._lock:
                instance.outstanding -= 1
            instance.breaker.abandoned(trial)
            raise
        self._done(instance, trial, failed=self._is_failure(response))
        return response

    def _pick(self) -> tuple[_Instance, bool]:
        urls = self._source.instances()
        if not urls:
            raise NoInstance(f"no {self._domain} instance is known ({self._describe_source()})")
        with self._lock:
            candidates = [self._instance(url) for url in urls]
            self._forget_gone(urls)
            start = next(self._turn)
            order = candidates[start % len(candidates) :] + candidates[: start % len(candidates)]
            if self._policy == "least_outstanding":
                order.sort(key=lambda i: i.outstanding)  # stable: ties keep round-robin order
            chosen, trial = order[0], False
            for instance in order:
                try:
                    trial = instance.breaker.admit()
                except CircuitOpen:
                    continue
                chosen = instance
                break
            # With every instance ejected, the call still goes to one (Envoy's "panic mode"):
            # ejecting them all would turn one bad minute into an outage of the whole domain,
            # and failing fast when the service itself is down is the service breaker's job.
            chosen.outstanding += 1
            chosen.calls += 1
            return chosen, trial

    def _done(self, instance: _Instance, trial: bool, failed: bool) -> None:
        with self._lock:
            instance.outstanding -= 1
            if failed:
                instance.failures += 1
        if failed:
            if instance.breaker.state == "closed":
                log.warning(
                    "%s instance %s failed: skipped for %.0fs",
                    self._domain,
                    instance.url,
                    self._ejection,
                )
                instance.ejections += 1
            instance.breaker.failed(trial)
        else:
            instance.breaker.succeeded(trial)

    def _instance(self, url: str) -> _Instance:
        instance = self._instances.get(url)
        if instance is None:
            instance = _Instance(
                url,
                self._connect(url),
                CircuitBreaker(f"{self._domain}@{url}", self._ejection, fail_max=1),
            )
            self._instances[url] = instance
        return instance

    def _forget_gone(self, urls: tuple[str, ...]) -> None:
        """Close the connections of instances discovery no longer lists (none in flight)."""
        listed = set(urls)
        for url, instance in list(self._instances.items()):
            if url not in listed and instance.outstanding == 0:
                del self._instances[url]
                instance.transport.close()

    def _describe_source(self) -> str:
        state = self._source.describe()
        return ", ".join(f"{k}: {v}" for k, v in state.items())

    def describe(self) -> dict[str, Any]:
        urls = self._source.instances()
        with self._lock:
            known = {url: self._instances.get(url) for url in urls}
        return {
            **self._source.describe(),
            "balancing": self._policy,
            "instances": [
                {
                    "url": url,
                    "state": "ejected" if i and i.breaker.state == "open" else "up",
                    "outstanding": i.outstanding if i else 0,
                    "calls": i.calls if i else 0,
                    "failures": i.failures if i else 0,
                }
                for url, i in known.items()
            ],
        }

    def close(self) -> None:
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
        for instance in instances:
            instance.transport.close()
