"""The plain keep-alive client: the standard library's ``http.client`` on one persistent
connection, the least a client can add. The lab's floor (``GET /ping``) and its load generator.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping
from typing import Any

from blog.serving import HOST


class _NoDelayConnection(http.client.HTTPConnection):
    """``http.client`` sends a request's headers and body in two writes; with Nagle's algorithm
    on, the body waits for the server to acknowledge the headers. urllib3 and gunicorn both set
    TCP_NODELAY, so the lab's client does too."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class KeepAlive:
    """One persistent HTTP/1.1 connection to a loopback port; ``request`` reads the whole body."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.connection = _NoDelayConnection(HOST, port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        status, data, _ = self.exchange(method, path, body, headers)
        return status, data

    def exchange(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, http.client.HTTPMessage]:
        """``request``, with the response's headers too (the lab reads Server-Timing)."""
        self.connection.request(method, path, body=body, headers=dict(headers or {}))
        response = self.connection.getresponse()
        return response.status, response.read(), response.headers

    def json(
        self,
        method: str,
        path: str,
        payload: Any = None,
        headers: Mapping[str, str] | None = None,
        expect: int = 200,
    ) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        all_headers = {**(headers or {}), **({"Content-Type": "application/json"} if body else {})}
        status, data = self.request(method, path, body, all_headers)
        if status != expect:
            raise AssertionError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> KeepAlive:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
