"""The floor and the ladder's thinnest rungs: the least a loopback HTTP round trip can cost.

    python -m lab.floor_servers PORT                     # F0: a blocking socket server
    granian --interface wsgi lab.floor_servers:app       # a server with a bare WSGI function
    granian --interface wsgi lab.floor_flask:app         # the same server with a bare Flask app

Every rung answers ``GET /ping`` with the bytes the services' ``/ping`` answers, so the matrix
can split a hop into the kernel's loopback round trip with Python on both ends (F0), what each
HTTP server adds to it, what Flask adds, and what the service's own hooks add on top.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

PONG = b"pong"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n" + PONG


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A bare WSGI function: what a server costs with no framework on top."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [PONG]


def _serve(client: socket.socket) -> None:
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with client:
        while True:
            data = client.recv(65536)  # a request fits in one read on loopback
            if not data:
                return
            client.sendall(RESPONSE)


def main(port: int) -> None:
    """F0's server: one thread per connection, a fixed answer to whatever arrives; no parsing,
    so what is left is the two processes and the kernel between them."""
    with socket.create_server(("127.0.0.1", port)) as server:
        while True:
            client, _ = server.accept()
            threading.Thread(target=_serve, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main(int(sys.argv[1]))
