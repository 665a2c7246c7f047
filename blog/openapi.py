"""Assembling OpenAPI 3.1 documents: the extracted services' (from their route tables) and the
public API's (from the gateway's declared operations).

Schemas come from msgspec, which writes JSON Schema 2020-12 (OpenAPI 3.1's own dialect) for our
dataclasses and type hints, with references into ``#/components/schemas``.
"""

from __future__ import annotations

import functools
import operator
import typing
from typing import Any

import msgspec

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{name}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error, everywhere: a stable code, a message for humans, and details.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


class Document:
    def __init__(self, title: str, description: str = "", version: str = "0.1.0") -> None:
        self._info = {"title": title, "version": version}
        if description:
            self._info["description"] = description
        self._paths: dict[str, dict[str, Any]] = {}
        self._schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
        self._security: dict[str, Any] = {}

    def schema(self, annotation: Any) -> dict[str, Any]:
        """The JSON Schema of a type hint; dataclasses become shared components.

        ``object`` in a union stands for a sentinel (``UNSET``: "leave it as it is"), which never
        travels: on the wire the field is simply left out, so it is left out of the schema too.
        """
        args = typing.get_args(annotation)
        if object in args:
            annotation = functools.reduce(operator.or_, [a for a in args if a is not object])
        (schema,), components = msgspec.json.schema_components(
            [annotation], ref_template=REF_TEMPLATE
        )
        self._schemas.update(components)
        return schema

    def error_response(self, description: str = "an error") -> dict[str, Any]:
        return {
            "description": description,
            "content": {
                "application/json": {"schema": {"$ref": REF_TEMPLATE.format(name="Error")}}
            },
        }

    def security_scheme(self, name: str, scheme: dict[str, Any]) -> None:
        self._security[name] = scheme

    def operation(self, path: str, method: str, spec: dict[str, Any]) -> None:
        self._paths.setdefault(path, {})[method.lower()] = spec

    def to_dict(self) -> dict[str, Any]:
        components: dict[str, Any] = {"schemas": dict(sorted(self._schemas.items()))}
        if self._security:
            components["securitySchemes"] = self._security
        return {
            "openapi": OPENAPI_VERSION,
            "info": self._info,
            "paths": self._paths,
            "components": components,
        }
