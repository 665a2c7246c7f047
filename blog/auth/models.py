"""The auth domain's tables, on its own ``MetaData``: no other domain may read them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from blog.db import UtcDateTime, new_metadata
from blog.events import outbox_table


class AuthBase(DeclarativeBase):
    metadata = new_metadata()


metadata = AuthBase.metadata

outbox = outbox_table(metadata, "auth")
"""Events this domain publishes, written in the same transaction as the change."""


class UserRow(AuthBase):
    __tablename__ = "auth_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    """Stored normalised (stripped, lower-cased): the unique constraint is then case-insensitive."""
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
