"""The auth domain's tables, on its own ``MetaData``: no other domain may read them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from blog.db import UtcDateTime, new_metadata
from blog.events import outbox_table


class AuthBase(DeclarativeBase):
    metadata = new_metadata()


metadata = AuthBase.metadata

outbox = outbox_table(metadata, "auth")
"""Events this domain publishes, written in the same transaction as the change."""

Address = String(254).with_variant(mysql.VARCHAR(254, collation="utf8mb4_bin"), "mysql", "mariadb")
"""Compared exactly, everywhere. Addresses are stored in one canonical spelling already
(``blog.auth.addresses``); MariaDB's default collation would fold case *and accents* on top,
making ``josé@example.com`` and ``jose@example.com`` one account (the second registration a
409, a login of one finding the other's row). (A table made on MariaDB before this needs
``ALTER TABLE auth_users MODIFY email VARCHAR(254) COLLATE utf8mb4_bin NOT NULL``.)"""


class UserRow(AuthBase):
    __tablename__ = "auth_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(Address, unique=True)
    """Stored normalised (stripped, lower-cased): the unique constraint is then case-insensitive."""
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class NameVersionRow(AuthBase):
    """Each user's name version: bumped in the transaction of every rename and carried by
    ``user.renamed``, so that consumers apply renames in the order they committed.

    Its own table rather than a column of ``auth_users``: the product creates missing tables at
    start but never alters existing ones, so a new table is what existing databases can take.
    A user with no row here was never renamed (version 0, the registered name).
    """

    __tablename__ = "auth_names"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer)
