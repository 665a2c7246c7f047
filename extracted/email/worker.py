"""``python -m extracted.email.worker``: the email domain as a RabbitMQ consumer.

It is the same ``InProcessEmailService`` the monolith runs, on the service's own database
(``services.email.database_url``), fed by the durable queue ``<queue_prefix>email_service_queue``
instead of the inline bus. Acks follow the service's commit; a redelivered event is skipped by its
id; SIGTERM or SIGINT lets the message in hand finish, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from blog.broker import EventConsumer
from blog.config import Config, ConfigError, load_config
from blog.db import create_tables, make_engine, make_session_factory
from blog.email import UnknownRecipient
from blog.email.models import metadata
from blog.email.service import InProcessEmailService
from blog.email.transports import make_transport
from blog.events import CONSUMER_QUEUES, EMAIL_QUEUE, Event
from blog.web.observability import configure_logging
from extracted.common import service_database_url

log = logging.getLogger("blog.email.worker")  # under "blog": one logging set-up for the project

QUEUE = EMAIL_QUEUE
ROUTING_KEYS = CONSUMER_QUEUES[EMAIL_QUEUE]
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
SHUTDOWN_SECONDS = 30.0


def _logged(handle: Callable[[Event], bool]) -> Callable[[Event], bool]:
    def handler(event: Event) -> bool:
        started = time.perf_counter()
        handled = handle(event)
        log.info(
            "event %s (%s) %s in %.1f ms",
            event.id,
            event.type,
            "handled" if handled else "skipped: already processed",
            (time.perf_counter() - started) * 1000,
        )
        return handled

    return handler


def build_consumer(config: Config) -> tuple[EventConsumer, Engine]:
    engine = make_engine(service_database_url(config, "email"))
    create_tables(engine, metadata)
    service = InProcessEmailService(
        make_session_factory(engine), make_transport(config.email), config.email.from_address
    )
    events = config.events
    consumer = EventConsumer(
        events.rabbitmq_url,
        events.exchange,
        events.queue_prefix + QUEUE,
        ROUTING_KEYS,
        _logged(service.handle_event),
        events.prefetch,
        # post.created may overtake its author's user.registered (another publisher, another
        # relay): wait for it a while before giving the event up to the dead-letter queue.
        retry_errors=(UnknownRecipient,),
    )
    return consumer, engine


def build_inbox_server(config: Config, host: str = "127.0.0.1") -> BaseWSGIServer | None:
    """The email service's read side (its inbox, for GET /api/dev/inbox), when it has a port."""
    port = config.services["email"].port
    if port is None:
        return None
    from blog.email.http import make_blueprint
    from extracted.common import create_service_app

    app = create_service_app(
        "email",
        metadata=metadata,
        build_service=lambda cfg, sessions, _bus: InProcessEmailService(
            sessions, make_transport(cfg.email), cfg.email.from_address
        ),
        make_blueprint=make_blueprint,
        config=config,
    )
    WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive for the monolith's pool
    return make_server(host, port, app, threaded=True)


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
    consumer, engine = build_consumer(config)
    thread = consumer.start_in_thread("email-consumer")
    inbox = build_inbox_server(config)
    if inbox is not None:
        threading.Thread(target=inbox.serve_forever, name="email-inbox", daemon=True).start()
        log.info("inbox served at http://127.0.0.1:%s/inbox", inbox.server_port)
    signalled = False
    try:
        while thread.is_alive() and not signalled:
            received = signal.sigtimedwait(STOP_SIGNALS, 1.0)
            if received is not None:
                signalled = True
                log.info(
                    "%s: finishing the current message, then exiting",
                    signal.Signals(received.si_signo).name,
                )
    finally:
        if inbox is not None:
            inbox.shutdown()
        consumer.stop()
        thread.join(SHUTDOWN_SECONDS)
        engine.dispose()
    if thread.is_alive():
        log.error("the current message did not finish within %.0fs", SHUTDOWN_SECONDS)
        return 1
    if not signalled:
        log.error("the consumer thread died unexpectedly")
        return 1
    log.info("email worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
