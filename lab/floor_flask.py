"""A bare Flask app with the services' ``/ping``: the ladder's Flask rung.

A module of its own (``lab.floor_flask:app``) because not every server can call a factory in its
target (granian takes ``module:attribute`` only), and so that the bare-WSGI rung
(``lab.floor_servers:app``) never imports Flask. Flask's share without the services' hooks
(request ids, Server-Timing, the service-credential check, JSON errors).
"""

from __future__ import annotations

from flask import Flask


def bare_flask() -> Flask:
    """``GET /ping`` → ``pong``, and nothing else."""
    flask = Flask("floor")

    @flask.get("/ping")
    def ping() -> tuple[str, int, dict[str, str]]:
        return "pong", 200, {"Content-Type": "text/plain"}

    return flask


app = bare_flask()
