"""The posts domain's tables, on its own ``MetaData``.

``author_id`` is a plain integer: no foreign key reaches into auth's table, so either domain can
move to its own database. ``author_name`` is the denormalised copy kept current by events.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from blog.db import UtcDateTime, new_metadata
from blog.events import outbox_table


class PostsBase(DeclarativeBase):
    metadata = new_metadata()


metadata = PostsBase.metadata

LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
"""Text of any length the domain allows. MariaDB's ``TEXT`` holds 65,535 *bytes*, which a post
body of 50,000 characters overflows as soon as it is not ASCII (a 500 on insert); ``MEDIUMTEXT``
holds 16 MiB. (A posts table made on MariaDB before this needs
``ALTER TABLE posts MODIFY body MEDIUMTEXT NOT NULL``.)"""

outbox = outbox_table(metadata, "posts")
"""Events this domain publishes, written in the same transaction as the change."""


class PostRow(PostsBase):
    __tablename__ = "posts"
    __table_args__ = (
        Index("ix_posts_created_at", "created_at"),
        Index("ix_posts_author_id", "author_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(LongText)
    author_id: Mapped[int]
    author_name: Mapped[str] = mapped_column(String(100))
    image_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CommentRow(PostsBase):
    __tablename__ = "comments"
    __table_args__ = (
        Index("ix_comments_post_id", "post_id"),
        Index("ix_comments_author_id", "author_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    author_id: Mapped[int]
    author_name: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuthorNameRow(PostsBase):
    """The author name this domain last applied for each user, and its version (auth's per-user
    rename counter, carried by ``user.renamed``): a rename older than the one held is ignored, so
    the last *committed* name wins even when renames are delivered out of order.

    Its own table, not columns on ``posts``: the product creates missing tables but never alters
    existing ones, and a rename may arrive before the user's first post.
    """

    __tablename__ = "posts_author_names"

    author_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
