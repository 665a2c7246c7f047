"""What every extracted service shares: its own config section and database, the service
credential check, JSON errors, request ids in its logs, ``/health`` and the event feed.

A service is the same domain code the monolith runs in-process, mounted through the domain's
``http.py``: extraction changes where the code runs, never what it does.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Flask, jsonify, request
from sqlalchemy import Engine, MetaData, Table
from sqlalchemy.orm import Session, sessionmaker

from blog.config import PROJECT_ROOT, Config, load_config
from blog.db import create_tables, make_engine, make_session_factory
from blog.events import CONSUMER_QUEUES, POSTS_QUEUE, OutboxEventBus, consumer_queues
from blog.feed import feed_blueprint
from blog.transport import ServiceCredentials, is_public, public
from blog.web.errors import register_error_handlers
from blog.web.observability import configure_logging, init_request_ids

BuildService = Callable[[Config, sessionmaker[Session], OutboxEventBus | None], Any]


def service_database_url(config: Config, domain: str) -> str:
    url = config.services[domain].database_url
    return url or f"sqlite:///{PROJECT_ROOT / 'instance' / f'{domain}-service.db'}"


def create_service_app(
    domain: str,
    *,
    metadata: MetaData,
    build_service: BuildService,
    make_blueprint: Callable[[Any], Blueprint],
    outbox: Table | None = None,
    config: Config | Mapping[str, Any] | None = None,
) -> Flask:
    if not isinstance(config, Config):
        config = load_config(overrides=config)
    configure_logging(config.log_level)

    engine = make_engine(service_database_url(config, domain))
    create_tables(engine, metadata)
    bus = OutboxEventBus(outbox) if outbox is not None else None
    service = build_service(config, make_session_factory(engine), bus)
    credentials = ServiceCredentials(config.transport.internal_token)

    app = Flask(f"extracted.{domain}")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config.update(
        BLOG=config,
        SECRET_KEY=config.secret_key,
        MAX_CONTENT_LENGTH=config.images.max_upload_bytes + 64 * 1024,
    )
    init_request_ids(app)
    register_error_handlers(app)

    @app.before_request
    def _require_service_credential() -> None:
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and not is_public(view):
            credentials.verify(request.headers.get("Authorization"), audience=domain)

    @app.get("/ping")
    @public
    def ping() -> Any:
        """A trivial endpoint: the latency lab's floor for one round trip on this stack."""
        return "pong", 200, {"Content-Type": "text/plain"}

    @app.get("/health")
    @public
    def health() -> Any:
        return jsonify({"service": domain, **service.health()})

    app.register_blueprint(make_blueprint(service))
    if config.events.broker == "rabbitmq":
        _link_to_broker(app, config, domain, engine, bus, service)
    elif bus is not None:
        app.register_blueprint(feed_blueprint(engine, bus))
    app.extensions["blog.service"] = service
    app.extensions["blog.engine"] = engine
    return app


def _link_to_broker(
    app: Flask,
    config: Config,
    domain: str,
    engine: Engine,
    bus: OutboxEventBus | None,
    service: Any,
) -> None:
    """With RabbitMQ, a service relays its own outbox and consumes its own queue (if any)."""
    from blog.broker import EventConsumer, OutboxRelay, SingleRelay

    events = config.events
    links: list[Any] = []
    if bus is not None:
        relay = OutboxRelay(
            engine,
            bus.table,
            events.rabbitmq_url,
            events.exchange,
            bus,
            queues=consumer_queues(events.queue_prefix),
        )
        links.append(SingleRelay(relay))
    if domain == "posts":
        links.append(
            EventConsumer(
                events.rabbitmq_url,
                events.exchange,
                events.queue_prefix + POSTS_QUEUE,
                CONSUMER_QUEUES[POSTS_QUEUE],
                service.handle_event,
                events.prefetch,
            )
        )
    for link in links:
        if isinstance(link, EventConsumer):
            link.start_in_thread()
        else:
            link.start()
        atexit.register(link.stop)
    app.extensions["blog.broker_links"] = links
