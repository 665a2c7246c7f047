"""The socket transport: keep-alive HTTP/1.1 connections to one service, pooled.

Built on the standard library's ``http.client``, one connection per call in flight, reused
afterwards. urllib3 (under ``requests``) does the same with more machinery per call (retry and
redirect bookkeeping, header dictionaries, response wrappers): on loopback that machinery cost
about as much as the round trip itself, and none of it is needed here, where retrying is the
resilience layer's decision (it knows whether the request is safe to repeat) and a service never
redirects.

What a pool must get right, and urllib3 taught: a connection the server closed while it sat idle
is found out before it is used (a readable idle socket is dead or out of step, so it is dropped);
a connection whose request body the server refused unread is not reused; connect failures, which
guarantee the request never left, are told apart from failures after it may have arrived.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

from blog.transport import (
    ConnectFailed,
    ConnectionBroken,
    TimedOut,
    TransportError,
    WireRequest,
    WireResponse,
)

_BODY_REFUSED = (401, 413)
_BROKEN = (
    ConnectionError,  # reset, refused mid-way, broken pipe
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    http.client.IncompleteRead,
    http.client.LineTooLong,
)


class _Connection(http.client.HTTPConnection):
    """``http.client`` sends a request's headers and body in two writes; with Nagle's algorithm
    on, the body would wait for the server to acknowledge the headers."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PooledHttpTransport:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int = 32,
        keep_alive: bool = True,
    ) -> None:
        """``keep_alive=False`` (``transport.keep_alive: false``): a connection per call,
        closed after its answer and the service told so with ``Connection: close``, as the
        tutorial's snippets do; the hosts lab uses it to show what a handshake per call costs
        across a network."""
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{base_url!r}: a service URL is http://host[:port]")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool_size = pool_size if keep_alive else 0
        self._close_header = {} if keep_alive else {"Connection": "close"}
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def send(self, request: WireRequest) -> WireResponse:
        connection = self._checkout()
        keep = False
        try:
            if connection.sock is None:
                self._connect(connection)
            connection.sock.settimeout(request.read_timeout or self._read_timeout)
            try:
                connection.request(
                    request.method,
                    self._prefix + request.path,
                    body=request.body,
                    headers={**request.headers, **self._close_header}
                    if self._close_header
                    else request.headers,
                )
                response = connection.getresponse()
                content = response.read()
            except TimeoutError:
                raise TimedOut("timed out waiting for the answer") from None
            except _BROKEN as exc:
                raise ConnectionBroken(f"connection broken ({type(exc).__name__})") from None
            except (OSError, http.client.HTTPException) as exc:
                raise TransportError(f"{type(exc).__name__}: {exc}") from None
            # A server that refuses a body unread (401 before reading it, 413) closes the
            # connection after answering, though its answer may say keep-alive.
            keep = not response.will_close and not (
                request.body is not None and response.status in _BODY_REFUSED
            )
            headers = {name.lower(): value for name, value in response.getheaders()}
            return WireResponse(response.status, headers, content)
        finally:
            self._checkin(connection, keep)

    def _connect(self, connection: _Connection) -> None:
        connection.timeout = self._connect_timeout
        try:
            connection.connect()
        except TimeoutError:
            raise ConnectFailed("could not connect (timed out)") from None
        except OSError as exc:
            raise ConnectFailed(f"could not connect ({type(exc).__name__})") from None

    def _checkout(self) -> _Connection:
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if _alive(connection):
                    return connection
                connection.close()
        return _Connection(self._host, self._port, timeout=self._connect_timeout)

    def _checkin(self, connection: _Connection, keep: bool) -> None:
        if keep and not self._closed:
            with self._lock:
                if len(self._idle) < self._pool_size:
                    self._idle.append(connection)
                    return
        connection.close()

    def describe(self) -> dict[str, Any]:
        return {"url": self.base_url}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _alive(connection: _Connection) -> bool:
    """An idle keep-alive connection has nothing to read: if its socket is readable, the server
    closed it (or sent something out of turn), and a request on it would fail."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
