"""What a domain declares about itself, once: the seam everything else plugs into.

Each ``blog/<domain>/__init__.py`` exports one ``MANIFEST``. From it, and nothing else, the rest
of the product learns the domain: config validation (its name, its modes, its port), the
composition root (how to build it in-process, how to reach it remotely, which events it publishes
and which it handles), the extracted service (its routes, its database tables), ``/api/health``,
``extract``/``inline``, the tests and the lab. Adding a capability to every domain (balancing,
tracing, an API document) is then a change in one place.

A manifest is cheap to import: the implementation and the tables are imported only when asked
for, so a process that calls a domain remotely never loads its ORM models.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import MetaData, Table
from sqlalchemy.orm import Session, sessionmaker

from blog.errors import GENERIC_ERRORS, DomainError, Unavailable

if TYPE_CHECKING:
    from blog.config import Config
    from blog.contract import Route
    from blog.events import EventPublisher

T = TypeVar("T")


@dataclass(frozen=True)
class BuildContext:
    """What an in-process implementation is built from: its settings, its own database
    sessions, and where its events go."""

    config: Config
    sessions: sessionmaker[Session]
    publisher: EventPublisher


@dataclass(frozen=True)
class HttpService:
    """Extracted as an HTTP service (``extracted/<domain>``), on ``port`` by default."""

    port: int
    routes: tuple[Route, ...]
    modes: tuple[str, ...] = ("http", "wire")


@dataclass(frozen=True)
class QueueConsumer:
    """Extracted as a consumer of its events' queue; ``routes`` is its read side over HTTP."""

    port: int
    routes: tuple[Route, ...]
    modes: tuple[str, ...] = ("extracted",)


@dataclass(frozen=True)
class DomainManifest(Generic[T]):
    name: str
    interface: Any
    """The Protocol every form of the domain implements (in-process, client, service). Typed
    ``Any`` because a type checker takes no Protocol for ``type[T]``; ``build`` carries T."""
    build: Callable[[BuildContext], T]
    """Builds the in-process implementation; it imports ``service.py`` only when called."""
    models: str
    """The module that holds the domain's ``metadata`` (and ``outbox`` if it publishes)."""
    errors: tuple[type[DomainError], ...]
    """The domain's own errors, each with its own ``code``: a client raises the same class for
    the same code. Plain bad input is the kernel's ``InvalidInput`` in every domain."""
    unavailable: Callable[[str | None], Unavailable]
    """The domain's "cannot be reached" error (503, ``<domain>_unavailable``), from a message."""
    extraction: HttpService | QueueConsumer
    publishes: tuple[str, ...] = ()
    handles: tuple[str, ...] = ()
    """Event types its ``handle_event`` takes."""
    retry_handling_on: tuple[type[Exception], ...] = field(default=())
    """Errors from ``handle_event`` that mean "not yet" (an event that overtook the one it
    depends on): consumers try such an event again later instead of dead-lettering it."""

    @property
    def queue(self) -> str:
        """The durable queue its events arrive on with RabbitMQ (the tutorial's name)."""
        return f"{self.name}_service_queue"

    @property
    def routes(self) -> tuple[Route, ...]:
        return self.extraction.routes

    def models_module(self) -> ModuleType:
        return importlib.import_module(self.models)

    def metadata(self) -> MetaData:
        metadata: MetaData = self.models_module().metadata
        return metadata

    def outbox(self) -> Table | None:
        """The outbox its events are written to, on its own MetaData (so it moves with it)."""
        if not self.publishes:
            return None
        table: Table = self.models_module().outbox
        return table

    def unavailable_error(self, message: str | None = None) -> Unavailable:
        return self.unavailable(message)


def all_errors(manifest: DomainManifest[Any]) -> dict[str, type[DomainError]]:
    """Every error a caller of this domain may see, by code: the kernel's generic ones, then
    the domain's own."""
    return {cls.code: cls for cls in (*GENERIC_ERRORS, *manifest.errors)}
