"""Reading request input: JSON bodies and typed fields, with errors that name the field."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import request

from blog.errors import InvalidInput, NotFound, positive_int, storable_id
from blog.httpkit.flask import read_json
from blog.web.context import config

T = TypeVar("T")

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object"}


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 4xx that says what is wrong with it."""
    return read_json(config().max_json_bytes)


def field(
    body: dict[str, Any],
    name: str,
    kind: type[T],
    *,
    required: bool = True,
    default: T | None = None,
) -> T:
    """``body[name]`` checked to be of ``kind`` (bool is never taken for int)."""
    if name not in body or body[name] is None:
        if required:
            raise InvalidInput(f"'{name}' is required", details={"field": name})
        return default  # type: ignore[return-value]
    value = body[name]
    wrong_bool = kind is int and isinstance(value, bool)
    if not isinstance(value, kind) or wrong_bool:
        raise InvalidInput(
            f"'{name}' must be {_TYPE_NAMES.get(kind, kind.__name__)}", details={"field": name}
        )
    return value


def query_int(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(
            f"query parameter '{name}' must be an integer", details={"field": name}
        ) from None


def path_id(value: int, field: str, not_found: type[NotFound], noun: str) -> int:
    """An id from the URL, checked at the edge before any domain (or wire) sees it.

    The route's ``<int:...>`` converter takes any run of digits. An id no id can be (0, or past
    a signed 64-bit integer) is the 400 every domain gives for it, naming ``field``; one past
    what an id column holds on PostgreSQL and MariaDB (``blog.errors.MAX_STORED_ID``) names no
    row: the domain's own 404, without a call that could only fail (a service on an older
    version would have answered it with a 500, and counted against its breaker).
    """
    positive_int(value, field)
    if not storable_id(value):
        raise not_found(f"{noun} {value} does not exist")
    return value
