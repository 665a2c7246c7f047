"""The in-process posts service: the only code that touches ``blog.posts.models``."""

from __future__ import annotations

import dataclasses
import logging
import unicodedata
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Row,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from blog.config import PostsConfig
from blog.db import isoformat, ping, reading, transaction, utcnow
from blog.errors import (
    InvalidInput,
    again_if_transient,
    invalid,
    is_transient_database_error,
    positive_int,
    storable_id,
)
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
from blog.posts.models import AuthorNameRow, CommentRow, PostRow

log = logging.getLogger(__name__)

TITLE_MAX = 200
BODY_MAX = 50_000
AUTHOR_NAME_MAX = 100
IMAGE_URL_MAX = 2048
COMMENT_MAX = 5000
RENAME_ATTEMPTS = 20
"""How often applying a rename starts over after losing a race (a concurrent first rename of
the same author, a deadlock): each loss means another rename of that author committed."""
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


def _stored_id(value: object, field: str) -> int:
    """An id this domain *stores* (an author's): one no row can have is invalid (400), as it
    could never be written (see ``blog.errors.MAX_STORED_ID``)."""
    value = positive_int(value, field)
    if not storable_id(value):
        raise invalid(field, "is beyond the ids this service can store")
    return value


def _post_id(value: object) -> int:
    """A post id to look up: malformed → 400, one no row can have → 404 without a query."""
    post_id = positive_int(value, "post_id")
    if not storable_id(post_id):
        raise _not_found(post_id)
    return post_id


def _version(value: object) -> int:
    """A rename's version: a non-negative integer; absent (an event from before versions) is 0,
    which applies only while no versioned rename of that author has been."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise invalid("version", "must be a non-negative integer")
    return value


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


def _to_post(row: PostRow | Row[Any]) -> Post:
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


def _to_comment(row: CommentRow | Row[Any]) -> Comment:
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


_POSTS = PostRow.__table__
_COMMENTS = CommentRow.__table__
# Built once: a statement built per call costs more than the query (see ``blog.db.reading``).
_POST_BY_ID = select(_POSTS).where(_POSTS.c.id == bindparam("id"))
_POST_COUNT = select(func.count()).select_from(_POSTS)
_NEWEST_POSTS = (
    select(_POSTS)
    .order_by(_POSTS.c.created_at.desc(), _POSTS.c.id.desc())
    .offset(bindparam("offset"))
    .limit(bindparam("limit"))
)
_COMMENTS_OF_POST = (
    select(_COMMENTS)
    .where(_COMMENTS.c.post_id == bindparam("post_id"))
    .order_by(_COMMENTS.c.created_at, _COMMENTS.c.id)
)


def _post_row(connection: Connection, post_id: int) -> Row[Any]:
    row = connection.execute(_POST_BY_ID, {"id": post_id}).one_or_none()
    if row is None:
        raise _not_found(post_id)
    return row


def _comments(connection: Connection, post_id: int) -> list[Comment]:
    rows = connection.execute(_COMMENTS_OF_POST, {"post_id": post_id})
    return [_to_comment(row) for row in rows]


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
        author_id = _stored_id(author_id, "author_id")
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
        post_id = _post_id(post_id)
        with reading(self._session_factory) as connection:
            return _to_post(_post_row(connection, post_id))

    def get_post_with_comments(self, post_id: int) -> PostWithComments:
        post_id = _post_id(post_id)
        with reading(self._session_factory) as connection:
            row = _post_row(connection, post_id)
            return PostWithComments(_to_post(row), _comments(connection, post_id))

    def list_posts(self, page: int = 1, per_page: int | None = None) -> PostPage:
        page = _id(page, "page")
        per_page = self._config.per_page_default if per_page is None else _id(per_page, "per_page")
        per_page = min(per_page, self._config.per_page_max)
        offset = (page - 1) * per_page
        with reading(self._session_factory) as connection:
            total = connection.scalar(_POST_COUNT) or 0
            rows: Iterable[Row[Any]] = (
                []
                if offset >= total
                else connection.execute(_NEWEST_POSTS, {"offset": offset, "limit": per_page})
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
        """Only the fields sent change. The write is one ``UPDATE ... WHERE id AND author_id``
        whose row count is checked: a post deleted meanwhile (a concurrent DELETE) is a 404,
        never an ORM ``StaleDataError`` (a 500)."""
        post_id, editor_id = _id(post_id, "post_id"), _id(editor_id, "editor_id")
        changes: dict[str, object] = {}
        if title is not None:
            changes["title"] = _text(title, "title", TITLE_MAX)
        if body is not None:
            changes["body"] = _text(body, "body", BODY_MAX, multiline=True)
        if image_url is not UNSET:
            changes["image_url"] = _image_url(image_url)
        post_id = _post_id(post_id)
        return again_if_transient(lambda: self._update(post_id, editor_id, changes))

    def _update(self, post_id: int, editor_id: int, changes: dict[str, object]) -> Post:
        with transaction(self._session_factory) as session:
            row = self._own_post(session, post_id, editor_id)
            post = _to_post(row)
            changes = {key: value for key, value in changes.items() if getattr(row, key) != value}
            if not changes:
                return post
            now = utcnow()
            updated = cast(
                CursorResult[Any],
                session.execute(
                    update(PostRow)
                    .where(PostRow.id == post_id, PostRow.author_id == editor_id)
                    .values(**changes, updated_at=now)
                    .execution_options(synchronize_session=False)
                ),
            )
            if updated.rowcount != 1:
                raise _not_found(post_id)  # deleted since we read it
        written: dict[str, Any] = {**changes, "updated_at": isoformat(now)}
        return dataclasses.replace(post, **written)

    def delete_post(self, post_id: int, editor_id: int) -> None:
        """One ``DELETE ... WHERE id AND author_id`` whose row count is checked: of two
        concurrent deletes (or a delete racing an edit) the loser answers 404, never a 500."""
        post_id, editor_id = _id(post_id, "post_id"), _id(editor_id, "editor_id")
        post_id = _post_id(post_id)
        again_if_transient(lambda: self._delete(post_id, editor_id))

    def _delete(self, post_id: int, editor_id: int) -> None:
        with transaction(self._session_factory) as session:
            self._own_post(session, post_id, editor_id)
            # Explicit, so it holds on databases that do not enforce the ON DELETE CASCADE.
            session.execute(
                delete(CommentRow)
                .where(CommentRow.post_id == post_id)
                .execution_options(synchronize_session=False)
            )
            deleted = cast(
                CursorResult[Any],
                session.execute(
                    delete(PostRow)
                    .where(PostRow.id == post_id, PostRow.author_id == editor_id)
                    .execution_options(synchronize_session=False)
                ),
            )
            if deleted.rowcount != 1:
                raise _not_found(post_id)  # deleted meanwhile by a concurrent request

    def add_comment(self, post_id: int, author_id: int, author_name: str, body: str) -> Comment:
        post_id, author_id = _id(post_id, "post_id"), _stored_id(author_id, "author_id")
        author_name = _text(author_name, "author_name", AUTHOR_NAME_MAX)
        body = _text(body, "body", COMMENT_MAX, multiline=True)
        post_id = _post_id(post_id)
        return again_if_transient(lambda: self._comment(post_id, author_id, author_name, body))

    def _comment(self, post_id: int, author_id: int, author_name: str, body: str) -> Comment:
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
        post_id = _post_id(post_id)
        with reading(self._session_factory) as connection:
            _post_row(connection, post_id)
            return _comments(connection, post_id)

    def handle_event(self, event: Event) -> None:
        """``user.renamed``: rewrite the author's name on their posts and comments.

        Setting the name (not applying a diff) makes a redelivered event harmless. The event's
        ``version`` (auth's per-user rename counter) is compared with the one held for the
        author, in the same transaction that rewrites the names: an older rename, delivered
        late, changes nothing, so the last committed name wins whatever the delivery order.
        """
        if event.type != USER_RENAMED:
            return
        data = event.data
        try:
            user_id = _stored_id(data.get("user_id"), "user_id")
            name = _text(data.get("name"), "name", AUTHOR_NAME_MAX)
            version = _version(data.get("version"))
        except InvalidInput as exc:
            log.warning("ignoring malformed %s event %s: %s", event.type, event.id, exc.message)
            return
        for attempt in range(RENAME_ATTEMPTS):
            try:
                with transaction(self._session_factory) as session:
                    if not _claim_name(session, user_id, version, name):
                        log.info(
                            "ignoring %s event %s: user %s's name is already at a later version",
                            event.type,
                            event.id,
                            user_id,
                        )
                        return
                    for table in (PostRow, CommentRow):
                        session.execute(
                            update(table)
                            .where(table.author_id == user_id)
                            .values(author_name=name),
                            execution_options={"synchronize_session": False},
                        )
                return
            except (IntegrityError, OperationalError) as exc:
                lost = isinstance(exc, IntegrityError) or is_transient_database_error(exc)
                if attempt == RENAME_ATTEMPTS - 1 or not lost:
                    raise

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


def _claim_name(session: Session, author_id: int, version: int, name: str) -> bool:
    """Record ``name`` at ``version`` for the author unless a later version is held; True when it
    was recorded (the caller then applies it, in the same transaction).

    A compare-and-set: the conditional UPDATE holds the author's row until commit, so a
    concurrent rename waits and then sees this one's version. An unversioned rename (0) applies
    only while no versioned one has been (the old behaviour: the last delivered wins). A first
    rename racing another inserts the same key: the loser's IntegrityError starts it over.
    """
    newer: ColumnElement[bool] = (
        AuthorNameRow.version < version if version > 0 else AuthorNameRow.version == 0
    )
    result = cast(
        CursorResult[Any],
        session.execute(
            update(AuthorNameRow)
            .where(AuthorNameRow.author_id == author_id, newer)
            .values(version=version, name=name)
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount == 1:
        return True
    held = session.scalar(select(AuthorNameRow.version).where(AuthorNameRow.author_id == author_id))
    if held is not None:
        return False
    session.add(AuthorNameRow(author_id=author_id, version=version, name=name))
    session.flush()
    return True
