"""Both ends of the registry: an instance registering itself, and the monolith watching.

Layout in etcd: ``<prefix><domain>/<instance>`` → ``{"url": ..., "health": ...}``, put under the
instance's own lease. The instance keeps the lease alive; stopped gracefully, it revokes it (the
key goes at once); crashed, it stops renewing, and etcd deletes the key when the lease runs out.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import threading
from typing import Any
from urllib.parse import urlsplit

from blog.discovery.etcd import Change, EtcdGateway, RegistryUnavailable

log = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 5.0


def instance_key(prefix: str, domain: str, instance: str) -> str:
    return f"{prefix}{domain}/{instance}"


def _backoff(failures: int) -> float:
    delay = min(RETRY_MAX_SECONDS, 0.25 * 2**failures)
    return float(delay / 2 + random.uniform(0, delay / 2))


# --------------------------------------------------------------------------- the instance


class Registrar:
    """Registers one service instance and keeps it registered until ``stop()``.

    It waits until the instance answers its own ``/health`` before registering: a server starts
    its app before it listens, and an instance listed before it can answer would be ejected by
    every caller on its first call.
    """

    def __init__(
        self,
        gateway: EtcdGateway,
        prefix: str,
        domain: str,
        url: str,
        *,
        instance: str | None = None,
        ttl: int = 10,
    ) -> None:
        self._gateway = gateway
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.instance = instance or f"{parts.hostname}:{parts.port}"
        self.key = instance_key(prefix, domain, self.instance)
        self._value = json.dumps(
            {"url": self.url, "health": f"{self.url}/health", "pid": os.getpid()}
        ).encode()
        self._ttl = ttl
        self._lease: int | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def registered(self) -> bool:
        return self._lease is not None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"registrar-{self.instance}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Deregister: revoke the lease so the key goes now, not when the lease runs out."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self._ttl)
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                self._gateway.revoke(lease)
                log.info("deregistered %s", self.key)
            except RegistryUnavailable as exc:
                log.warning("could not deregister %s (its lease will expire): %s", self.key, exc)

    def _run(self) -> None:
        self._wait_until_serving()
        failures = 0
        while not self._stopping.is_set():
            try:
                if self._lease is None or self._gateway.keep_alive(self._lease) == 0:
                    self._register()
                failures = 0
                self._stopping.wait(self._ttl / 3)
            except RegistryUnavailable as exc:
                log.warning("registry: %s; retrying", exc)
                self._stopping.wait(_backoff(failures))
                failures += 1

    def _register(self) -> None:
        lease = self._gateway.grant(self._ttl)
        self._gateway.put(self.key, self._value, lease)
        self._lease = lease
        log.info("registered %s → %s (lease %ds)", self.key, self.url, self._ttl)

    def _wait_until_serving(self) -> None:
        parts = urlsplit(self.url)
        while not self._stopping.is_set():
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=1)
            try:
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass  # not listening yet
            finally:
                connection.close()
            self._stopping.wait(0.1)


# --------------------------------------------------------------------------- the monolith


class RegistryDirectory:
    """Every domain's instances as the registry lists them, kept current by a watch.

    Reads all keys, then watches from the next revision; whenever the watch ends or fails, it
    reads again and watches anew. While the registry is away, it keeps the last instances it
    knew (and says so in ``describe()``): a registry outage must not take the domains down.
    """

    def __init__(self, gateway: EtcdGateway, prefix: str) -> None:
        self._gateway = gateway
        self._prefix = prefix
        self._instances: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = "not read yet"

    def source(self, domain: str) -> DomainInstances:
        return DomainInstances(self, domain)

    def instances(self, domain: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._instances.get(domain, {}).values()))

    def start(self) -> None:
        """Read the registry once before returning (so a starting monolith serves with the
        instances it finds), then keep watching in the background."""
        try:
            revision = self._sync()
        except RegistryUnavailable as exc:
            self._down(exc)
            revision = None
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(revision,), name="registry-directory", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # the watch ends at its next event or idle timeout

    def _run(self, revision: int | None) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if revision is None:
                    revision = self._sync()
                for change in self._gateway.watch_prefix(
                    self._prefix, revision + 1, idle_timeout=30
                ):
                    if self._stopping.is_set():
                        return
                    self._apply(change)
                    revision = change.revision
                    failures = 0
                revision = None  # the stream ended: read everything again, then watch
            except RegistryUnavailable as exc:
                self._down(exc)
                revision = None
                self._stopping.wait(_backoff(failures))
                failures += 1

    def _sync(self) -> int:
        revision, found = self._gateway.range_prefix(self._prefix)
        instances: dict[str, dict[str, str]] = {}
        for kv in found:
            parsed = self._parse(kv.key, kv.value)
            if parsed is not None:
                domain, instance, url = parsed
                instances.setdefault(domain, {})[instance] = url
        with self._lock:
            self._instances = instances
        if self.error is not None:
            log.info("registry %s: read %d instance(s)", self._gateway.url, len(found))
        self.error = None
        return revision

    def _apply(self, change: Change) -> None:
        where = self._split(change.key)
        if where is None:
            return
        domain, instance = where
        with self._lock:
            known = self._instances.setdefault(domain, {})
            if change.value is None:
                if known.pop(instance, None) is not None:
                    log.info("registry: %s instance %s is gone", domain, instance)
                return
        parsed = self._parse(change.key, change.value)
        if parsed is not None:
            with self._lock:
                self._instances.setdefault(domain, {})[instance] = parsed[2]
            log.info("registry: %s instance %s at %s", domain, instance, parsed[2])

    def _split(self, key: str) -> tuple[str, str] | None:
        rest = key[len(self._prefix) :] if key.startswith(self._prefix) else ""
        domain, _, instance = rest.partition("/")
        if not domain or not instance:
            log.warning("registry: ignoring key %r (not <prefix><domain>/<instance>)", key)
            return None
        return domain, instance

    def _parse(self, key: str, value: bytes) -> tuple[str, str, str] | None:
        """``(domain, instance, url)`` of an entry, or None (with a warning) when malformed."""
        where = self._split(key)
        if where is None:
            return None
        try:
            url = json.loads(value)["url"]
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname or not isinstance(url, str):
                raise ValueError(url)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("registry: ignoring malformed entry %s=%r (%s)", key, value[:200], exc)
            return None
        return where[0], where[1], url.rstrip("/")

    def _down(self, exc: Exception) -> None:
        if self.error is None:
            log.warning(
                "registry %s is unavailable (%s): keeping the last known instances",
                self._gateway.url,
                exc,
            )
        self.error = str(exc)

    def describe(self) -> dict[str, Any]:
        state = "up" if self.error is None else f"down: {self.error}"
        return {"discovery": "registry", "registry": state, "registry_url": self._gateway.url}


class DomainInstances:
    """One domain's view of the directory: an ``InstanceSource``."""

    def __init__(self, directory: RegistryDirectory, domain: str) -> None:
        self._directory = directory
        self._domain = domain

    def instances(self) -> tuple[str, ...]:
        return self._directory.instances(self._domain)

    def describe(self) -> dict[str, Any]:
        return self._directory.describe()


def advertised_url(default_port: int | None) -> str:
    """The URL this instance registers: the launcher's ``BLOG_INSTANCE_URL``, else the
    configured port on loopback."""
    url = os.environ.get("BLOG_INSTANCE_URL")
    if url:
        return url
    return f"http://127.0.0.1:{default_port}"
