"""The in-process posts service: the only code that touches ``blog.posts.models``."""

from __future__ import annotations

import logging
import unicodedata
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from blog.config import PostsConfig
from blog.db import isoformat, ping, transaction, utcnow
from blog.errors import InvalidInput, invalid, positive_int
from blog.events import POST_CREATED, USER_RENAMED, Event, EventPublisher
from blog.posts import (
    UNSET,
    Comment,
    NotPostAuthor,
    Post,
    PostNotFound,
    PostPage,
    PostWithComments,
)
from blog.posts.models import CommentRow, PostRow

log = logging.getLogger(__name__)

TITLE_MAX = 200
BODY_MAX = 50_000
AUTHOR_NAME_MAX = 100
IMAGE_URL_MAX = 2048
COMMENT_MAX = 5000
_MULTILINE_OK = frozenset("\n\r\t")


def _text(value: object, field: str, max_length: int, *, multiline: bool = False) -> str:
    """A non-blank string of at most ``max_length`` characters; single-line unless told."""
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if not multiline:
        value = value.strip()
    if not value.strip() or len(value) > max_length:
        raise invalid(field, f"must be 1 to {max_length} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(field, "must be valid Unicode text") from None
    allowed = _MULTILINE_OK if multiline else frozenset()
    if any(unicodedata.category(c) == "Cc" and c not in allowed for c in value):
        raise invalid(field, "must not contain control characters")
    return value


def _id(value: object, field: str) -> int:
    return positive_int(value, field)


def _image_url(value: object) -> str | None:
    """None, a site-relative path ("/images/x.jpg") or an absolute http(s) URL."""
    if value is None:
        return None
    problem = "must be a path starting with '/' or an http(s) URL"
    if not isinstance(value, str) or len(value) > IMAGE_URL_MAX:
        raise invalid("image_url", f"{problem}, at most {IMAGE_URL_MAX} characters")
    if any(c.isspace() or c == "\\" or unicodedata.category(c) == "Cc" for c in value):
        raise invalid("image_url", problem)
    try:
        value.encode("utf-8")
        parts = urlsplit(value)
    except ValueError:
        raise invalid("image_url", problem) from None
    if value.startswith("/") and not value.startswith("//"):  # "//host" is another origin
        return value
    if parts.scheme in ("http", "https") and parts.hostname:
        return value
    raise invalid("image_url", problem)


def _to_post(row: PostRow) -> Post:
    return Post(
        id=row.id,
        title=row.title,
        body=row.body,
        author_id=row.author_id,
        author_name=row.author_name,
        image_url=row.image_url,
        created_at=isoformat(row.created_at),
        updated_at=isoformat(row.updated_at),
    )


def _to_comment(row: CommentRow) -> Comment:
    return Comment(
        id=row.id,
        post_id=row.post_id,
        author_id=row.author_id,
        author_name=row.author_name,
        body=row.body,
        created_at=isoformat(row.created_at),
    )


def _not_found(post_id: int) -> PostNotFound:
    return PostNotFound(f"post {post_id} does not exist")


class InProcessPostsService:
    """``PostsService`` backed by this domain's own tables."""

    def __init__(
        self, session_factory: sessionmaker[Session], bus: EventPublisher, config: PostsConfig
    ) -> None:
        self._session_factory = session_factory
        self._bus = bus
        self._config = config

    def create_post(
        self,
        author_id: int,
        author_name: str,
        title: str,
        body: str,
        image_url: str | None = None,
    ) -> Post:
        author_id = _id(author_id, "author_id")
        author_name = _text(author_name, "author_name", AUTHOR_NAME_MAX)
        title = _text(title, "title", TITLE_MAX)
        body = _text(body, "body", BODY_MAX, multiline=True)
        image_url = _image_url(image_url)
        now = utcnow()
        with transaction(self._session_factory) as session:
            row = PostRow(
                title=title,
                body=body,
                author_id=author_id,
                author_name=author_name,
                image_url=image_url,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            post = _to_post(row)
            self._bus.publish(
                session,
                Event(
                    POST_CREATED,
                    {
                        "post_id": post.id,
                        "title": post.title,
                        "author_id": post.author_id,
                        "author_name": post.author_name,
                    },
                ),
            )
        return post

    def get_post(self, post_id: int) -> Post:
        post_id = _id(post_id, "post_id")
        with self._session_factory() as session:
            row = session.get(PostRow, post_id)
            if row is None:
                raise _not_found(post_id)
            return _to_post(row)

    def get_post_with_comments(self, post_id: int) -> PostWithComments:
        post_id = _id(post_id, "post_id")
        with self._session_factory() as session:
            row = session.get(PostRow, post_id)
            if row is None:
                raise _not_found(post_id)
            return PostWithComments(_to_post(row), self._comments(session, post_id))

    def list_posts(self, page: int = 1, per_page: int | None = None) -> PostPage:
        page = _id(page, "page")
        per_page = self._config.per_page_default if per_page is None else _id(per_page, "per_page")
        per_page = min(per_page, self._config.per_page_max)
        offset = (page - 1) * per_page
        with self._session_factory() as session:
            total = session.scalar(select(func.count()).select_from(PostRow)) or 0
            rows = (
                []
                if offset >= total
                else session.scalars(
                    select(PostRow)
                    .order_by(PostRow.created_at.desc(), PostRow.id.desc())
                    .offset(offset)
                    .limit(per_page)
                ).all()
            )
            items = [_to_post(row) for row in rows]
        return PostPage(items=items, page=page, per_page=per_page, total=total)

    def update_post(
        self,
        post_id: int,
        editor_id: int,
        *,
        title: str | None = None,
        body: str | None = None,
        image_url: str | object | None = UNSET,
    ) -> Post:
        post_id, editor_id = _id(post_id, "post_id"), _id(editor_id, "editor_id")
        changes: dict[str, object] = {}
        if title is not None:
            changes["title"] = _text(title, "title", TITLE_MAX)
        if body is not None:
            changes["body"] = _text(body, "body", BODY_MAX, multiline=True)
        if image_url is not UNSET:
            changes["image_url"] = _image_url(image_url)
        with transaction(self._session_factory) as session:
            row = self._own_post(session, post_id, editor_id)
            changes = {key: value for key, value in changes.items() if getattr(row, key) != value}
            if changes:
                for key, value in changes.items():
                    setattr(row, key, value)
                row.updated_at = utcnow()
            return _to_post(row)

    def delete_post(self, post_id: int, editor_id: int) -> None:
        post_id, editor_id = _id(post_id, "post_id"), _id(editor_id, "editor_id")
        with transaction(self._session_factory) as session:
            row = self._own_post(session, post_id, editor_id)
            # Explicit, so it holds on databases that do not enforce the ON DELETE CASCADE.
            session.execute(delete(CommentRow).where(CommentRow.post_id == post_id))
            session.delete(row)

    def add_comment(self, post_id: int, author_id: int, author_name: str, body: str) -> Comment:
        post_id, author_id = _id(post_id, "post_id"), _id(author_id, "author_id")
        author_name = _text(author_name, "author_name", AUTHOR_NAME_MAX)
        body = _text(body, "body", COMMENT_MAX, multiline=True)
        try:
            with transaction(self._session_factory) as session:
                if session.get(PostRow, post_id) is None:
                    raise _not_found(post_id)
                row = CommentRow(
                    post_id=post_id,
                    author_id=author_id,
                    author_name=author_name,
                    body=body,
                    created_at=utcnow(),
                )
                session.add(row)
                session.flush()
                return _to_comment(row)
        except IntegrityError:  # the post was deleted between the check and the insert
            raise _not_found(post_id) from None

    def list_comments(self, post_id: int) -> list[Comment]:
        post_id = _id(post_id, "post_id")
        with self._session_factory() as session:
            if session.get(PostRow, post_id) is None:
                raise _not_found(post_id)
            return self._comments(session, post_id)

    @staticmethod
    def _comments(session: Session, post_id: int) -> list[Comment]:
        rows = session.scalars(
            select(CommentRow)
            .where(CommentRow.post_id == post_id)
            .order_by(CommentRow.created_at, CommentRow.id)
        ).all()
        return [_to_comment(row) for row in rows]

    def handle_event(self, event: Event) -> None:
        """``user.renamed``: rewrite the author's name on their posts and comments.

        Setting the name (not applying a diff) makes a redelivered event harmless.
        """
        if event.type != USER_RENAMED:
            return
        user_id, name = event.data.get("user_id"), event.data.get("name")
        try:
            user_id = _id(user_id, "user_id")
            name = _text(name, "name", AUTHOR_NAME_MAX)
        except InvalidInput as exc:
            log.warning("ignoring malformed %s event %s: %s", event.type, event.id, exc.message)
            return
        with transaction(self._session_factory) as session:
            for table in (PostRow, CommentRow):
                session.execute(
                    update(table).where(table.author_id == user_id).values(author_name=name),
                    execution_options={"synchronize_session": False},
                )

    def health(self) -> dict[str, object]:
        with self._session_factory() as session:
            database = ping(session.get_bind())
        return {"status": "ok" if database else "down", "database": database}

    @staticmethod
    def _own_post(session: Session, post_id: int, editor_id: int) -> PostRow:
        row = session.get(PostRow, post_id)
        if row is None:
            raise _not_found(post_id)
        if row.author_id != editor_id:
            raise NotPostAuthor(f"only the author of post {post_id} may change it")
        return row
