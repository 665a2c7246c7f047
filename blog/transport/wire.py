"""The in-process wire: a service's WSGI app called directly, without a socket.

Everything a real hop does to a call still happens (the request is serialized, the service
checks its credential, parses, answers JSON, and the client maps the answer back to a DTO or a
domain error); only the network is missing. That makes the API and contract suites fast in every
topology, and it gives the lab the cost of serialization alone, between in-process and HTTP.

The app runs in a copy of the caller's context, as it would in its own process: the service's
request hooks set context variables (the request id, the Server-Timing list) that must not leak
back into the gateway's request.
"""

from __future__ import annotations

import contextvars
from typing import Any

from werkzeug.test import EnvironBuilder, run_wsgi_app

from blog.transport import WireRequest, WireResponse, lower_headers

WIRE_HOST = "wire.invalid"
"""The ``Host`` the service sees: ``.invalid`` can never resolve, so no real host is implied."""


class WireTransport:
    def __init__(self, app: Any, name: str) -> None:
        self._app = app
        self._name = name

    def send(self, request: WireRequest) -> WireResponse:
        builder = EnvironBuilder(
            path=request.path,
            method=request.method,
            headers=list(request.headers.items()),
            data=request.body,
            base_url=f"http://{WIRE_HOST}/",
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        return contextvars.copy_context().run(self._call, environ)

    def _call(self, environ: dict[str, Any]) -> WireResponse:
        app_iter, status, headers = run_wsgi_app(self._app, environ, buffered=True)
        try:
            content = b"".join(app_iter)
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()
        return WireResponse(int(status.split(" ", 1)[0]), lower_headers(headers), content)

    def describe(self) -> dict[str, Any]:
        return {"url": f"wire://{self._name}"}

    def close(self) -> None:
        """Nothing to release: the service's own runtime is closed by whoever built it."""
