"""The floor's anatomy: the least a loopback HTTP round trip can cost, below the service stack.

    python -m lab.floor_servers PORT            # a blocking socket server, one thread per client
    gunicorn -c extracted/gunicorn.conf.py lab.floor_servers:app     # gunicorn, no Flask
    gunicorn -c extracted/gunicorn.conf.py 'lab.floor_servers:flask_app()'   # + bare Flask

All three answer every request with the bytes the services' ``GET /ping`` answers, so the matrix can
split the floor into the kernel's loopback round trip with Python on both ends, what gunicorn's
gthread worker adds, and what Flask and the service's own hooks add on top.
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
    """A bare WSGI app: what gunicorn costs without Flask."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [PONG]


def flask_app() -> Any:
    """A bare Flask app with the services' ``/ping``: Flask's share without the services' hooks
    (request ids, Server-Timing, the service-credential check, JSON errors)."""
    from flask import Flask

    flask = Flask("floor")

    @flask.get("/ping")
    def ping() -> Any:
        return "pong", 200, {"Content-Type": "text/plain"}

    return flask


def _serve(client: socket.socket) -> None:
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with client:
        while True:
            data = client.recv(65536)  # a request fits in one read on loopback
            if not data:
                return
            client.sendall(RESPONSE)


def main(port: int) -> None:
    with socket.create_server(("127.0.0.1", port)) as server:
        while True:
            client, _ = server.accept()
            threading.Thread(target=_serve, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main(int(sys.argv[1]))
