"""The lean baseline: the post list as a bare Flask + SQLAlchemy route, nothing else.

The gateway's ``GET /api/posts`` does the posts service's ``list_posts`` (a count, then one page
of rows, as Core statements built once) plus everything a product adds to a request: request
ids, timing and ``Server-Timing``, the domain interface and its DTOs, logging, JSON errors. This
app runs the same two statements on the same table and database and answers the same JSON, with
none of that. Served by the same server on the same CPU, its throughput is what a hand-written
route would reach: the target is that the gateway costs at most 25 % more per request.

The lab may not import ``blog.posts.service``; it builds the statements here on the table the
posts domain declares (``blog.domains.manifest("posts").metadata()``), so the queries and the
column types (UTC datetimes) are the domain's own. ``lab.lean_wsgi:app`` is the server's target.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy import Row, Table, bindparam, func, select

from blog.config import Config, load_config
from blog.db import isoformat, make_engine
from blog.domains import manifest

HEALTH_PATH = "/health"


@functools.cache
def posts_table() -> Table:
    """The posts domain's ``posts`` table."""
    return manifest("posts").metadata().tables["posts"]


def _page_args(config: Config) -> tuple[int, int]:
    """``page`` and ``per_page`` as the gateway reads them (a bad value is the caller's 400 in
    the gateway; the benchmark never sends one, so here it falls back to the defaults)."""
    try:
        page = max(int(request.args.get("page") or 1), 1)
        per_page = int(request.args.get("per_page") or 0) or config.posts.per_page_default
    except ValueError:
        page, per_page = 1, config.posts.per_page_default
    return page, min(per_page, config.posts.per_page_max)


def _as_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "title": row.title,
        "body": row.body,
        "author_id": row.author_id,
        "author_name": row.author_name,
        "image_url": row.image_url,
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
    }


def create_app(config: Config | None = None) -> Flask:
    """The lean app on ``config``'s database (default: the file ``BLOG_CONFIG`` names, the
    monolith's own when the lab starts it); builds an engine, opens nothing until a request."""
    config = config or load_config()
    table = posts_table()
    count = select(func.count()).select_from(table)
    newest = (
        select(table)
        .order_by(table.c.created_at.desc(), table.c.id.desc())
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )
    engine = make_engine(config.database_url)
    app = Flask("lean")

    @app.get("/api/posts")
    def list_posts() -> Response:
        page, per_page = _page_args(config)
        offset = (page - 1) * per_page
        with engine.connect() as connection:
            total = connection.scalar(count) or 0
            rows: Iterable[Row[Any]] = (
                []
                if offset >= total
                else connection.execute(newest, {"offset": offset, "limit": per_page})
            )
            items = [_as_json(row) for row in rows]
        return jsonify({"items": items, "page": page, "per_page": per_page, "total": total})

    @app.get(HEALTH_PATH)
    def health() -> tuple[str, int]:
        return "ok", 200

    return app
