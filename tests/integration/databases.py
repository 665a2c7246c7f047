"""Fresh databases on the machine's PostgreSQL and MariaDB, for tests whose defect is about what
a real database refuses (an INTEGER is 32-bit there, PostgreSQL refuses NUL in text, MariaDB's
TEXT holds 64 KiB). Each is created for one test and dropped afterwards, whatever happened."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.support import require_service

POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
MARIADB_START = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"


def _unavailable(message: str) -> None:
    if os.environ.get("BLOG_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty PostgreSQL database."""
    import psycopg
    from psycopg import sql

    require_service("PostgreSQL", 5432, POSTGRES_START)
    admin, user = None, ""
    for user in ("postgres", "root"):
        try:
            admin = psycopg.connect(
                host="127.0.0.1", port=5432, user=user, dbname="test", autocommit=True
            )
            break
        except psycopg.OperationalError:
            continue
    if admin is None:
        _unavailable("PostgreSQL answers but neither `postgres` nor `root` may connect to `test`")
        return
    name = f"blog_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"postgresql+psycopg://{user}@127.0.0.1:5432/{name}"
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@contextlib.contextmanager
def mariadb_database() -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty MariaDB database (utf8mb4, as the product needs)."""
    import pymysql

    require_service("MariaDB", 3306, MARIADB_START)
    name = f"blog_test_{uuid.uuid4().hex[:12]}"
    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> "
                "CONNECTION_ID()",
                (name,),
            )
            for (connection_id,) in cursor.fetchall():
                with contextlib.suppress(pymysql.err.OperationalError):  # ended meanwhile
                    cursor.execute(f"KILL {int(connection_id)}")
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


DATABASES = {"postgresql": postgres_database, "mariadb": mariadb_database}
"""Each real database a domain may run on, by name: parametrize over it."""
