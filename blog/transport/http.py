"""The socket transport: keep-alive HTTP/1.1 connections to one service, pooled.

A request is written in one ``sendall`` and its answer read with httptools (the C HTTP parser
that uvicorn uses): on this project's machines the standard library's ``http.client`` spent about
as long on the client side as the loopback round trip itself (its headers go through the
``email`` package's parser, line by line), 243 against 112 µs for a service's ``/ping`` measured
side by side. urllib3 (under ``requests``) adds its own machinery over ``http.client``. None of
their redirect, proxy or retry handling is needed here: retrying is the resilience layer's
decision (it knows whether a request is safe to repeat) and a service never redirects.

What a pool must get right, and urllib3 taught: a connection the server closed while it sat idle
is found out before it is used (a readable idle socket is dead or out of step, so it is dropped);
a connection whose request body the server refused unread is not reused; connect failures, which
guarantee the request never left, are told apart from failures after it may have arrived.
"""

from __future__ import annotations

import re
import select
import socket
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools

from blog.transport import (
    ConnectFailed,
    ConnectionBroken,
    TimedOut,
    TransportError,
    WireRequest,
    WireResponse,
)

_BODY_REFUSED = (401, 413)
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_UNSAFE_IN_PATH = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_IN_HEADER = re.compile(r"[\r\n\x00]")
_RECV_BYTES = 65536


class _Answer:
    """httptools' callbacks for one response: its headers, body and end."""

    __slots__ = ("body", "complete", "headers", "keep_alive", "parser", "status")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = False
        self.status = 0
        self.parser: Any = None

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = int(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        # asked here: once the message is done, the parser is reset for the next one
        self.keep_alive = bool(self.parser.should_keep_alive())
        self.complete = True


class _Connection:
    """One keep-alive connection: a socket with TCP_NODELAY, a request per call."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._host_header = f"Host: {host}:{port}\r\n".encode("latin-1")
        self.sock: socket.socket | None = None

    def connect(self, timeout: float) -> None:
        try:
            sock = socket.create_connection(self._address, timeout=timeout)
        except TimeoutError:
            raise ConnectFailed("could not connect (timed out)") from None
        except OSError as exc:
            raise ConnectFailed(f"could not connect ({type(exc).__name__})") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock

    def exchange(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None, timeout: float
    ) -> tuple[int, dict[str, str], bytes, bool]:
        """Send the request, read its whole answer: (status, headers, body, keep-alive)."""
        sock = self.sock
        assert sock is not None
        parts = [f"{method} {path} HTTP/1.1\r\n".encode("latin-1"), self._host_header]
        for name, value in headers.items():
            if _UNSAFE_IN_HEADER.search(name) or _UNSAFE_IN_HEADER.search(value):
                raise TransportError(f"header {name!r}: a line break or NUL in a header")
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        if body is not None or method in _METHODS_WITH_BODY:
            parts.append(b"Content-Length: %d\r\n" % len(body or b""))
        parts.append(b"\r\n")
        if body:
            parts.append(body)
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        answer.parser = parser
        received = False
        try:
            sock.settimeout(timeout)
            sock.sendall(b"".join(parts))
            while not answer.complete:
                data = sock.recv(_RECV_BYTES)
                if not data:  # the server closed the connection before answering in full
                    raise ConnectionBroken(
                        "connection broken (closed mid-answer)"
                        if received
                        else "connection broken (closed without an answer)"
                    )
                received = True
                parser.feed_data(data)
        except TimeoutError:
            raise TimedOut("timed out waiting for the answer") from None
        except ConnectionError as exc:  # reset, refused mid-way, broken pipe
            raise ConnectionBroken(f"connection broken ({type(exc).__name__})") from None
        except httptools.HttpParserError as exc:
            raise ConnectionBroken(f"connection broken (not HTTP: {exc})") from None
        except OSError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return answer.status, answer.headers, b"".join(answer.body), answer.keep_alive

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


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
        path = self._prefix + request.path
        if _UNSAFE_IN_PATH.search(path):
            raise TransportError(f"{path!r}: a space or control character in the path")
        headers = (
            {**request.headers, **self._close_header} if self._close_header else request.headers
        )
        connection = self._checkout()
        keep = False
        try:
            if connection.sock is None:
                connection.connect(self._connect_timeout)
            status, response_headers, content, keep_alive = connection.exchange(
                request.method,
                path,
                headers,
                request.body,
                request.read_timeout or self._read_timeout,
            )
            # A server that refuses a body unread (401 before reading it, 413) closes the
            # connection after answering, though its answer may say keep-alive.
            keep = keep_alive and not (request.body is not None and status in _BODY_REFUSED)
            return WireResponse(status, response_headers, content)
        finally:
            self._checkin(connection, keep)

    def _checkout(self) -> _Connection:
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if _alive(connection):
                    return connection
                connection.close()
        return _Connection(self._host, self._port)

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
