"""The few calls of etcd's v3 API this product makes, over etcd's own JSON gateway.

Why not a client library: the gRPC ones (``etcd3``) are unmaintained and pin an old protobuf,
and the maintained gateway client (``etcd3gw``) hides a broken watch stream: after an etcd
restart its event iterator simply blocks for ever, where a directory must notice, keep its last
known instances and watch again. The calls themselves are six small JSON posts (grant, keep
alive, revoke a lease; put, range; watch), so they are made here with the standard library's
``http.client``, and every failure comes out as one exception, :class:`RegistryUnavailable`.

Keys and values travel base64-encoded, as the gateway wants them.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class RegistryUnavailable(Exception):
    """etcd did not answer properly (down, unreachable, or refusing the call)."""


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes


@dataclass(frozen=True)
class Change:
    """One watch event: a key put (``value`` set) or deleted (``value`` None, as when its lease
    expired)."""

    key: str
    value: bytes | None
    revision: int


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> bytes:
    """The key just past every key that starts with ``prefix`` (etcd's ``range_end``)."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b"\0"
    raw[-1] += 1
    return bytes(raw)


class EtcdGateway:
    def __init__(self, url: str, timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url!r}: the registry URL is http://host:port")
        self.url = url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or 2379
        self._timeout = timeout

    # ------------------------------------------------------------------ calls

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            connection.request(
                "POST", f"/v3/{path}", json.dumps(body), {"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryUnavailable(f"{self.url}: {type(exc).__name__}: {exc}") from None
        finally:
            connection.close()
        if response.status != 200:
            raise RegistryUnavailable(f"{self.url}: {path} answered {response.status}: {data!r}")
        try:
            answer: dict[str, Any] = json.loads(data)
        except ValueError:
            raise RegistryUnavailable(f"{self.url}: {path} answered no JSON") from None
        return answer

    def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds: keys put under it vanish if it is not kept alive."""
        return int(self._post("lease/grant", {"TTL": ttl})["ID"])

    def keep_alive(self, lease: int) -> int:
        """Renew the lease; returns its new TTL, 0 when it had already expired."""
        result = self._post("lease/keepalive", {"ID": lease}).get("result", {})
        return int(result.get("TTL", 0))

    def revoke(self, lease: int) -> None:
        """End the lease now: its keys are deleted at once (a graceful deregistration)."""
        self._post("lease/revoke", {"ID": lease})

    def put(self, key: str, value: bytes, lease: int | None = None) -> None:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease is not None:
            body["lease"] = lease
        self._post("kv/put", body)

    def delete(self, key: str) -> None:
        self._post("kv/deleterange", {"key": _b64(key)})

    def delete_prefix(self, prefix: str) -> None:
        self._post("kv/deleterange", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})

    def range_prefix(self, prefix: str) -> tuple[int, list[KeyValue]]:
        """Every key under ``prefix`` and the store's revision when it was read (a watch from
        the next revision misses nothing)."""
        answer = self._post(
            "kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        )
        revision = int(answer.get("header", {}).get("revision", 0))
        found = [
            KeyValue(_unb64(kv["key"]).decode(errors="replace"), _unb64(kv.get("value", "")))
            for kv in answer.get("kvs", [])
        ]
        return revision, found

    def watch_prefix(
        self, prefix: str, start_revision: int, idle_timeout: float = 60.0
    ) -> Iterator[Change]:
        """Changes under ``prefix`` from ``start_revision`` on, as they happen. Ends (returns)
        when the stream closes or stays silent for ``idle_timeout`` seconds; raises
        ``RegistryUnavailable`` when the watch cannot be made. Either way, the caller reads
        the keys again and watches anew."""
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            create = {
                "create_request": {
                    "key": _b64(prefix),
                    "range_end": _b64(prefix_end(prefix)),
                    "start_revision": start_revision,
                }
            }
            try:
                connection.request(
                    "POST", "/v3/watch", json.dumps(create), {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise RegistryUnavailable(f"{self.url}: watch: {exc}") from None
            if response.status != 200:
                raise RegistryUnavailable(f"{self.url}: watch answered {response.status}")
            if connection.sock is not None:
                connection.sock.settimeout(idle_timeout)
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException):
                    return  # silent too long, or the stream broke: read again, watch again
                if not line:
                    return
                yield from _changes(line)
        finally:
            connection.close()


def _changes(line: bytes) -> Iterator[Change]:
    try:
        result = json.loads(line).get("result", {})
    except ValueError:
        return
    if result.get("canceled"):
        raise RegistryUnavailable(f"the watch was canceled: {result.get('cancel_reason', '')}")
    revision = int(result.get("header", {}).get("revision", 0))
    for event in result.get("events", []):
        kv = event.get("kv", {})
        key = _unb64(kv.get("key", "")).decode(errors="replace")
        if event.get("type") == "DELETE":
            yield Change(key, None, revision)
        else:
            yield Change(key, _unb64(kv.get("value", "")), revision)
