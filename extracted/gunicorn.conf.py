"""gunicorn settings, when ``server.name: gunicorn`` (``blog.serving`` passes the workers and
threads from config.yaml on the command line).

The gthread worker keeps connections alive between requests: gunicorn's default sync worker closes
the connection after every response, so every hop would pay a new TCP handshake. ``keepalive`` is
long because the monolith's pooled connections sit idle between bursts; if the server closed them
first, the next call would find a dead socket.
"""

worker_class = "gthread"
keepalive = 300
timeout = 60
graceful_timeout = 10
accesslog = None  # the app logs every request itself, with its request id
# gunicorn 23+ opens a control socket at one fixed path per user; several services on one machine
# would fight over it, and nothing here uses it.
control_socket_disable = True
