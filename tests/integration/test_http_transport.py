"""The socket transport against scripted loopback servers: every way an answer can come back, or
not, ends as a response or as the transport error the resilience layer decides on."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from blog.transport import (
    ConnectFailed,
    ConnectionBroken,
    TimedOut,
    TransportError,
    WireRequest,
)
from blog.transport.http import PooledHttpTransport
from tests.support import Script, ScriptedServer


@pytest.fixture
def serve() -> Iterator[Callable[[Script], tuple[ScriptedServer, PooledHttpTransport]]]:
    made: list[tuple[ScriptedServer, PooledHttpTransport]] = []

    def start(script: Script) -> tuple[ScriptedServer, PooledHttpTransport]:
        server = ScriptedServer(script)
        transport = PooledHttpTransport(server.url, connect_timeout=1, read_timeout=1)
        made.append((server, transport))
        return server, transport

    yield start
    for server, transport in made:
        transport.close()
        server.close()


def answer(body: bytes = b"{}", status: str = "200 OK", extra: bytes = b"") -> Script:
    def script(client: socket.socket, request: bytes) -> bool:
        client.sendall(
            b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
        )
        return True

    return script


def get(path: str = "/x") -> WireRequest:
    return WireRequest("GET", path, "probe.read", True)


def test_one_connection_carries_every_call_and_the_answer_is_read_whole(serve) -> None:
    body = b'{"big": "' + b"x" * 300_000 + b'"}'  # several reads
    server, transport = serve(answer(body, extra=b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"))
    for _ in range(5):
        response = transport.send(get())
        assert response.status == 200 and response.content == body
    assert len(server.connections) == 1
    assert response.headers["content-type"] == "application/json"
    assert response.headers["set-cookie"] == "a=1, b=2"  # repeated headers joined


def test_a_chunked_answer_is_decoded(serve) -> None:
    def chunked(client: socket.socket, request: bytes) -> bool:
        client.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        return True

    _, transport = serve(chunked)
    assert transport.send(get()).content == b"hello world"


def test_the_request_goes_out_as_http_1_1_with_its_body_and_length(serve) -> None:
    server, transport = serve(answer())
    transport.send(WireRequest("POST", "/p", "probe.write", False, {"X-A": "1"}, b'{"a":1}'))
    transport.send(WireRequest("POST", "/p", "probe.write", False))
    first, second = server.requests
    assert first.startswith(b"POST /p HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-A: 1\r\n" in first and b"\r\nContent-Length: 7\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a":1}')
    assert b"\r\nContent-Length: 0\r\n" in second  # a POST without a body says so


def test_a_connection_the_server_closed_while_idle_is_not_used(serve) -> None:
    def once(client: socket.socket, request: bytes) -> bool:
        answer()(client, request)
        return False  # then close, as a server's idle timeout would

    server, transport = serve(once)
    for _ in range(3):
        assert transport.send(get()).status == 200
        time.sleep(0.05)  # the close reaches us before the next call
    assert len(server.connections) == 3


def test_after_a_refused_body_the_connection_is_not_reused(serve) -> None:
    server, transport = serve(answer(b'{"error": {}}', "401 Unauthorized"))
    for _ in range(2):
        response = transport.send(WireRequest("POST", "/p", "probe.write", False, {}, b"{}"))
        assert response.status == 401
    assert len(server.connections) == 2


def test_connection_close_is_honoured(serve) -> None:
    server, transport = serve(answer(extra=b"Connection: close\r\n"))
    transport.send(get())
    transport.send(get())
    assert len(server.connections) == 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"", "closed without an answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "closed mid-answer"),
        (b"SMTP ready\r\n\r\n", "not HTTP"),
    ],
)
def test_a_broken_answer_is_a_broken_connection(serve, reply: bytes, message: str) -> None:
    def script(client: socket.socket, request: bytes) -> bool:
        client.sendall(reply)
        return False

    server, transport = serve(script)
    with pytest.raises(ConnectionBroken, match=message):
        transport.send(get())
    with pytest.raises(ConnectionBroken):  # again on a new connection: the pool kept none
        transport.send(get())
    assert len(server.connections) == 2


def test_no_answer_in_time_is_a_timeout(serve) -> None:
    def silent(client: socket.socket, request: bytes) -> bool:
        time.sleep(1.5)
        return False

    _, transport = serve(silent)
    started = time.monotonic()
    with pytest.raises(TimedOut):
        transport.send(WireRequest("GET", "/x", "probe.read", True, read_timeout=0.3))
    assert time.monotonic() - started < 1.2


def test_a_port_nobody_listens_on_is_a_connect_failure() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    transport = PooledHttpTransport(f"http://127.0.0.1:{port}", connect_timeout=1, read_timeout=1)
    with pytest.raises(ConnectFailed):
        transport.send(get())


@pytest.mark.parametrize(
    "request_",
    [
        WireRequest("GET", "/x", "probe.read", True, {"X-Request-ID": "a\r\nX-Evil: 1"}),
        WireRequest("GET", "/x y", "probe.read", True),
        WireRequest("GET", "/x\nHost: evil", "probe.read", True),
    ],
)
def test_nothing_that_would_split_the_request_is_sent(serve, request_: WireRequest) -> None:
    server, transport = serve(answer())
    with pytest.raises(TransportError):
        transport.send(request_)
    assert server.requests == []
