"""A bare Falcon app with the services' ``/ping``: the ladder's Falcon rung.

The extracted services answer through Falcon (``blog.serviceapp``), the gateway through Flask;
the ladder measures both bare frameworks under every server, so that what a service's own hooks
add is read against the framework it really runs on.
"""

from __future__ import annotations

import falcon


class _Ping:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain"
        resp.data = b"pong"


def bare_falcon() -> falcon.App[falcon.Request, falcon.Response]:
    """``GET /ping`` → ``pong``, and nothing else."""
    app = falcon.App()
    app.add_route("/ping", _Ping())
    return app


app = bare_falcon()
