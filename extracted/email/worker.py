"""``python -m extracted.email.worker``: the email domain as a RabbitMQ consumer.

It is the same in-process email service the monolith runs, on the service's own database
(``services.email.database_url``), fed by the durable queue ``<queue_prefix>email_service_queue``
instead of the inline bus, and built by the same composition root as every other process. Acks
follow the service's commit; a redelivered event is skipped by its id; SIGTERM or SIGINT lets the
message in hand finish, and the process exits 0. Its inbox (the dev mailbox) is served over HTTP
on ``services.email.port`` for ``GET /api/dev/inbox``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from blog.broker import EventConsumer
from blog.config import Config, ConfigError, load_config
from blog.httpkit import configure_logging
from blog.wiring import ServiceRuntime, build_service

log = logging.getLogger("blog.email.worker")  # under "blog": one logging set-up for the project

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
SHUTDOWN_SECONDS = 30.0


class EmailWorker:
    """The consumer and the inbox server of one email service runtime."""

    def __init__(self, config: Config, host: str = "127.0.0.1") -> None:
        if config.events.broker != "rabbitmq":
            raise ConfigError("the email worker consumes RabbitMQ: set events.broker: rabbitmq")
        self.runtime: ServiceRuntime = build_service("email", config)
        (consumer,) = [job for kind, job in self.runtime.jobs if kind == "consumer"]
        assert isinstance(consumer, EventConsumer)
        self.consumer: EventConsumer = consumer
        self.inbox: BaseWSGIServer | None = None
        port = config.services["email"].port
        if port is not None:
            WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive for the monolith's pool
            self.inbox = make_server(host, port, self.runtime.app, threaded=True)

    def start(self) -> None:
        self.runtime.start()
        if self.inbox is not None:
            threading.Thread(
                target=self.inbox.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="email-inbox",
                daemon=True,
            ).start()
            host, port = self.inbox.server_address[:2]
            log.info("inbox served at http://%s:%s/inbox", host, port)

    def stop(self) -> None:
        if self.inbox is not None:
            self.inbox.shutdown()
            self.inbox.server_close()
        self.consumer.stop(SHUTDOWN_SECONDS)
        self.runtime.close()


def main() -> int:
    try:
        config = load_config()
    except ConfigError as exc:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        log.error("cannot start: %s", exc)
        return 2
    configure_logging(config.log_level)
    # Blocked before any thread exists, so every thread inherits the mask and only the
    # sigwait below sees the signals: no handler runs in the middle of pika's I/O.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        # A container serves its inbox to the other containers (BLOG_INBOX_HOST=0.0.0.0); on a
        # laptop it stays on loopback.
        worker = EmailWorker(config, host=os.environ.get("BLOG_INBOX_HOST", "127.0.0.1"))
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        return 2
    worker.start()
    signalled = False
    try:
        while worker.consumer.running and not signalled:
            received = signal.sigtimedwait(STOP_SIGNALS, 1.0)
            if received is not None:
                signalled = True
                log.info(
                    "%s: finishing the current message, then exiting",
                    signal.Signals(received.si_signo).name,
                )
    finally:
        worker.stop()
    if worker.consumer.running:
        log.error("the current message did not finish within %.0fs", SHUTDOWN_SECONDS)
        return 1
    if not signalled:
        log.error("the consumer thread died unexpectedly")
        return 1
    log.info("email worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
