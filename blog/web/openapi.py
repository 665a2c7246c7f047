"""The public API's OpenAPI 3.1 document, ``GET /api/openapi.json``.

Each view declares what the router cannot know (its summary, body, success answer, query and
header parameters, the errors its domains raise) with :func:`documented`; everything the router
and the edge already know is read from them instead of being declared twice: the paths and
methods come from ``app.url_map``, path parameters from the rule's converters (and with them the
router's own 404 for a value a converter refuses), the bearer token from ``login_required``, the
400/413/415 of a JSON body from :func:`blog.httpkit.flask.read_json`. A route without a
declaration is left out of the document, and a unit test refuses it (:func:`undocumented`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, jsonify
from werkzeug.routing import Rule

from blog.errors import MAX_ID
from blog.openapi import Document
from blog.web.auth_guard import requires_login
from blog.web.limits import rate_limited

F = TypeVar("F", bound=Callable[..., Any])

JSON = "application/json"
MULTIPART = "multipart/form-data"
PREFIX = "/api/"
BEARER = "bearerToken"
_ATTRIBUTE = "blog_openapi"
_SELF = "openapi.document"
_IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
_CONVERTER = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")

_ERROR_DESCRIPTIONS = {
    400: "Invalid input; `error.details.field` names the field at fault when one is.",
    401: "Not authenticated: no valid bearer token (from POST /api/login), or wrong credentials.",
    402: "The payment was declined; `error.details` says why.",
    403: "The resource belongs to someone else.",
    404: "No such resource, or a path the router does not match.",
    409: "A conflict with what exists already.",
    413: "The request body is too large.",
    415: "The request body is not of a media type this operation takes.",
    429: "Too many requests (rate limited); retry after `Retry-After` seconds.",
    502: "An upstream the domain depends on (provider, storage) failed; it may be transient.",
    503: "A domain's service is unavailable (down, slow, or its circuit breaker is open).",
}


@dataclass(frozen=True)
class Parameter:
    """A query or header parameter: ``schema`` is its JSON Schema."""

    description: str
    schema: Mapping[str, Any]
    required: bool = False
    allow_empty: bool = False
    """``?name=`` is taken as no value at all (OpenAPI's ``allowEmptyValue``)."""


def integer(
    description: str,
    *,
    default: int | None = None,
    minimum: int | None = 1,
    maximum: int | None = MAX_ID,
) -> Parameter:
    """A query integer as :func:`blog.web.inputs.query_int` reads it: an empty value is the
    default. Ids, pages and sizes stop at a 64-bit id, the most any domain takes."""
    schema: dict[str, Any] = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    if default is not None:
        schema["default"] = default
    return Parameter(description, schema, allow_empty=True)


@dataclass(frozen=True)
class Multipart:
    """A ``multipart/form-data`` body whose named fields are files."""

    files: Mapping[str, str]
    """field name → description"""


@dataclass(frozen=True)
class Declaration:
    summary: str
    response: Any
    status: int
    body: Any
    errors: frozenset[int]
    query: Mapping[str, Parameter]
    headers: Mapping[str, Parameter]
    media_type: str
    description: str = ""


def documented(
    summary: str,
    *,
    response: Any = None,
    status: int = 200,
    body: Any = None,
    errors: Iterable[int] = (),
    query: Mapping[str, Parameter] | None = None,
    headers: Mapping[str, Parameter] | None = None,
    media_type: str = JSON,
    description: str = "",
) -> Callable[[F], F]:
    """Declare a view's operation for the API document.

    ``response`` is the type of the success body (a DTO, or None for no body), ``body`` the
    dataclass of a JSON request body (or a :class:`Multipart`), ``errors`` the statuses the
    view's domains answer with. Apply it below the route decorator, so the router registers the
    declared view.
    """
    declaration = Declaration(
        summary=summary,
        response=response,
        status=status,
        body=body,
        errors=frozenset(errors),
        query=dict(query or {}),
        headers=dict(headers or {}),
        media_type=media_type,
        description=description,
    )

    def mark(view: F) -> F:
        setattr(view, _ATTRIBUTE, declaration)
        return view

    return mark


def declaration_of(view: Callable[..., Any]) -> Declaration | None:
    declaration: Declaration | None = getattr(view, _ATTRIBUTE, None)
    return declaration


# --------------------------------------------------------------------------- the document


def _api_operations(app: Flask) -> Iterator[tuple[Rule, str, Callable[..., Any]]]:
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if not rule.rule.startswith(PREFIX) or rule.endpoint == _SELF:
            continue
        view = app.view_functions[rule.endpoint]
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            yield rule, method, view


def undocumented(app: Flask) -> list[str]:
    """``"METHOD /rule"`` of every API operation whose view declares nothing."""
    return [
        f"{method} {rule.rule}"
        for rule, method, view in _api_operations(app)
        if declaration_of(view) is None
    ]


def _path_parameters(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path template of ``rule`` and its path parameters, typed by converter."""
    parameters: list[dict[str, Any]] = []

    def parameter(match: re.Match[str]) -> str:
        converter, name = match.group("converter") or "default", match.group("name")
        if match.group("args") or converter not in ("default", "string", "int", "path"):
            raise ValueError(f"{rule.rule}: no schema for the converter {match.group(0)!r}")
        if converter == "int":
            schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
            description = "An id: decimal digits only; anything else does not match the route."
        elif converter == "path":
            schema = {"type": "string", "minLength": 1}
            description = "Any non-empty text, slashes included."
        else:
            schema = {"type": "string", "pattern": "^[^/]+$"}
            description = "Any non-empty text without a slash."
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": description,
                "schema": schema,
            }
        )
        return "{" + name + "}"

    return _CONVERTER.sub(parameter, rule.rule), parameters


def _parameter(name: str, where: str, parameter: Parameter) -> dict[str, Any]:
    spec = {
        "name": name,
        "in": where,
        "required": parameter.required,
        "description": parameter.description,
        "schema": dict(parameter.schema),
    }
    if parameter.allow_empty:
        spec["allowEmptyValue"] = True
    return spec


def _request_body(doc: Document, body: Any) -> dict[str, Any]:
    if isinstance(body, Multipart):
        schema = {
            "type": "object",
            "properties": {
                name: {
                    "type": "string",
                    "contentMediaType": "application/octet-stream",
                    "description": text,
                }
                for name, text in body.files.items()
            },
            "required": list(body.files),
        }
        return {"required": True, "content": {MULTIPART: {"schema": schema}}}
    return {"required": True, "content": {JSON: {"schema": doc.schema(body)}}}


def _success(doc: Document, declaration: Declaration) -> dict[str, Any]:
    if declaration.response is None:
        return {"description": "Done; no content."}
    if declaration.media_type == JSON:
        schema = doc.schema(declaration.response)
    else:
        schema = {"type": "string", "contentMediaType": declaration.media_type}
    return {"description": "OK", "content": {declaration.media_type: {"schema": schema}}}


def build_document(app: Flask) -> dict[str, Any]:
    """The public API's OpenAPI 3.1 document, from the router and the views' declarations."""
    doc = Document(
        title="strangler-blog public API",
        description=(
            "The blog's public JSON API (the strangler facade). Every error, whatever its "
            'status, is `{"error": {"code", "message", "details"?}}`. Operations marked with '
            "the bearer token need `Authorization: Bearer <access_token>` from POST /api/login."
        ),
    )
    doc.security_scheme(
        BEARER,
        {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    )
    for rule, method, view in _api_operations(app):
        declaration = declaration_of(view)
        if declaration is None:
            continue  # refused by the unit test, never a reason for the document to fail
        path, parameters = _path_parameters(rule)
        parameters += [_parameter(n, "query", p) for n, p in declaration.query.items()]
        parameters += [_parameter(n, "header", p) for n, p in declaration.headers.items()]
        errors = set(declaration.errors)
        if rule.arguments:
            errors.add(404)  # the router's, for a value the converter refuses
        methods = (rule.methods or set()) - _IGNORED_METHODS
        # operationIds must be unique: a view serving several methods gets one per method
        operation_id = rule.endpoint if len(methods) == 1 else f"{rule.endpoint}.{method.lower()}"
        spec: dict[str, Any] = {
            "operationId": operation_id,
            "summary": declaration.summary,
            "tags": [rule.endpoint.split(".")[0]],
        }
        if declaration.description:
            spec["description"] = declaration.description
        if parameters:
            spec["parameters"] = parameters
        if declaration.body is not None:
            spec["requestBody"] = _request_body(doc, declaration.body)
            if not isinstance(declaration.body, Multipart):
                errors |= {400, 413, 415}  # what read_json answers
        if requires_login(view):
            spec["security"] = [{BEARER: []}]
            errors.add(401)
        if rate_limited(view):
            errors.add(429)
        responses = {str(declaration.status): _success(doc, declaration)}
        for status in sorted(errors):
            responses[str(status)] = doc.error_response(
                _ERROR_DESCRIPTIONS.get(status, "An error.")
            )
        spec["responses"] = responses
        doc.operation(path, method, spec)
    return doc.to_dict()


# --------------------------------------------------------------------------- serving it

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def document() -> Response:
    # Built on first use, not at start-up: building the app has no side effects and no cost.
    built = current_app.extensions.get("blog.openapi")
    if built is None:
        built = current_app.extensions["blog.openapi"] = build_document(current_app)
    return jsonify(built)
