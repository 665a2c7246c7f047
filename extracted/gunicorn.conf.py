"""gunicorn settings for every extracted service (``gunicorn -c extracted/gunicorn.conf.py``).

The gthread worker keeps connections alive between requests: gunicorn's default sync worker closes
the connection after every response, so every hop would pay a new TCP handshake. ``keepalive`` is
long because the monolith's pooled connections sit idle between bursts; if the server closed them
first, the next call would find a dead socket.
"""

import os
from typing import Any

worker_class = "gthread"
workers = int(os.environ.get("BLOG_SERVICE_WORKERS", "2"))
threads = int(os.environ.get("BLOG_SERVICE_THREADS", "8"))
keepalive = 300
timeout = 60
graceful_timeout = 10
accesslog = None  # the app logs every request itself, with its request id
# gunicorn 23+ opens a control socket at one fixed path per user; several services on one machine
# would fight over it, and nothing here uses it.
control_socket_disable = True


def post_worker_init(worker: Any) -> None:
    """Start the app's background work (relays, consumers, feed pullers) once this worker runs:
    building the app starts nothing, and a forked worker must start its own threads."""
    runtime = getattr(worker.wsgi, "extensions", {}).get("blog.runtime")
    if runtime is not None:
        runtime.start()
