"""Reading request input: JSON bodies and typed fields, with errors that name the field."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import request

from blog.errors import InvalidInput
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
