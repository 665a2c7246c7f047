"""Engines and sessions.

Every domain declares its tables on its own ``MetaData`` (its own ``DeclarativeBase``), so the
monolith can share one SQLite file while no table belongs to two domains: extracting a domain is
then a matter of pointing its session factory at another database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Named constraints: the same schema gets the same names on SQLite, PostgreSQL and MariaDB."""

UtcDateTime = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
"""A UTC timestamp; on MySQL/MariaDB with microseconds (their DATETIME drops them by default)."""


def new_metadata() -> MetaData:
    """A domain's own MetaData: one per domain, so no table belongs to two."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with sane defaults per backend (SQLite: WAL, busy timeout, FK checks)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if in_memory:
            kwargs.setdefault("poolclass", StaticPool)
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("check_same_thread", False)
        connect_args.setdefault("timeout", 30)
        engine = create_engine(url, **kwargs)

        if not in_memory:

            @event.listens_for(engine, "do_connect")
            def _make_folder(*_args: Any) -> None:
                # At the first connection, not here: building an engine must touch nothing.
                Path(database).parent.mkdir(parents=True, exist_ok=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def create_tables(engine: Engine, metadata: MetaData, attempts: int = 10) -> None:
    """Create what is missing. Several workers starting at once race between the check and the
    CREATE, one table at a time: a loser finds the table made by a winner on its next pass, and
    a pass that meets no race finishes the job. Only a lasting failure is raised."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == attempts - 1:
                raise


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def reading(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection for Core reads on the factory's engine: no unit of work, no identity map.

    Why: a read by id is a hop's whole server-side work, and the ORM's bookkeeping around it
    (session, identity map, instance loading) cost more than the query; on the lab's machine a
    post by id took 453 µs through ``Session.get`` and 205 µs as a Core select. Rows read this
    way have the mapped classes' column attributes, so the domains' DTO converters take them.

    The hot statements are built once, at import, with bind parameters: building
    ``select(...).where(...)`` and its cache key on every call cost more than running it (a user
    by id on SQLite: 119 µs built per call, 62 µs built once; sqlite3 alone takes 4 µs).
    """
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine):  # a factory bound to a connection (tests): use a session
        with factory() as session:
            yield session.connection()
        return
    with bind.connect() as connection:
        yield connection


def ping(engine: Engine | Connection) -> bool:
    """True when the database answers a trivial query; used by health checks."""
    try:
        if isinstance(engine, Connection):
            engine.execute(text("SELECT 1"))
        else:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        return False
    return True


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """ISO 8601 in UTC; SQLite hands datetimes back naive, and they were stored as UTC."""
    if moment.tzinfo is None:
        return f"{moment.isoformat()}+00:00"  # what replace(tzinfo=UTC).isoformat() writes
    return moment.astimezone(UTC).isoformat()
