"""The images domain's tables, on its own metadata so the domain can move to its own database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from blog.db import UtcDateTime, new_metadata, utcnow


class ImagesBase(DeclarativeBase):
    metadata = new_metadata()  # this domain's own: no table belongs to two domains


metadata = ImagesBase.metadata


class ImageRecord(ImagesBase):
    """One stored thumbnail; the bytes live in the storage backend under the same key."""

    __tablename__ = "images"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # Named size_bytes in Python so the builtin ``bytes`` is not shadowed in the class body.
    size_bytes: Mapped[int] = mapped_column("bytes", Integer)
    original_format: Mapped[str] = mapped_column(String(16))
    original_content_type: Mapped[str] = mapped_column(String(64))
    # Informational only: the client's name never becomes part of a key or a path.
    original_filename: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
