"""The wire contract: one route table per domain, and both ends of the wire built from it.

A domain declares, for each interface method, a :class:`Route`: the HTTP verb and path (the
tutorial's), whether a repeat is safe, where each argument goes (path, query string, a header,
or the JSON body) and, from the interface's own type hints, the DTO that comes back. From that
table this module builds:

- :func:`remote`: the generic client, an object with the interface's methods that sends each
  call over a :class:`~blog.transport.Transport` and turns the answer back into the same DTO, or
  the same domain error, the in-process call would have produced;
- :func:`service_blueprint`: the extracted service's endpoints, which pass every argument to the
  in-process implementation untouched, so that its own validation answers exactly as in-process;
- :func:`openapi_document`: the service's OpenAPI 3.1 document.

JSON goes through msgspec both ways: it turns the wire's JSON straight into our frozen
dataclasses (validating their types on the way) and back, much faster than ``json`` plus
``asdict``, and it writes their JSON Schema (2020-12, the dialect OpenAPI 3.1 uses).

A method that is truly different on the wire (a multipart upload, a binary answer) gets a small
:class:`Codec` of its own in its domain; everything else is the default :class:`JsonCodec`.
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, is_dataclass
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlencode

import falcon
import msgspec

from blog.errors import GENERIC_ERRORS, InvalidInput, invalid
from blog.httpkit.falcon import read_json, send_json
from blog.manifest import DomainManifest, all_errors
from blog.timing import calls_var, service_seconds, service_seconds_var
from blog.transport import (
    REQUEST_ID_HEADER,
    Transport,
    TransportError,
    WireRequest,
    WireResponse,
    request_id_var,
)
from blog.transport.credentials import SERVICE_UNAUTHORIZED, ServiceCredentials

log = logging.getLogger(__name__)

T = TypeVar("T")

JSON = "application/json"
_PLACEHOLDER = re.compile(r"\{(\w+)(?::(path))?\}")
_INTEGER = re.compile(r"-?[0-9]{1,40}")


@dataclass(frozen=True)
class Route:
    """One interface method on the wire.

    Arguments not named in the path, ``query`` or ``headers`` travel as the fields of a JSON
    object body, or, when ``body`` names one, that argument is the whole body. ``safe`` is true
    only where repeating the call cannot do harm (reads, and writes that carry an idempotency key
    or set a value): only then does the transport retry it.
    """

    method: str
    verb: str
    path: str
    safe: bool = False
    query: Mapping[str, str] = field(default_factory=dict)
    """argument → query parameter name"""
    headers: Mapping[str, str] = field(default_factory=dict)
    """argument → header name"""
    body: str | None = None
    status: int = 200
    envelope: str | None = None
    """The result travels as ``{envelope: result}`` (a list defaults to ``items``)."""
    public: bool = False
    """Callable without the service credential (a CDN-style read)."""
    codec: type[Codec] | None = None
    """How it looks on the wire, when not plain JSON (:class:`JsonCodec`)."""


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query" | "header" | "body" | "whole"
    wire_name: str
    annotation: Any
    default: Any
    required: bool
    integer: bool


def _is_int(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    return annotation is int or (bool(args) and int in args and str not in args)


class Operation:
    """A route bound to its interface method: everything per-call work needs, computed once."""

    def __init__(self, domain: str, interface: type[Any], route: Route) -> None:
        self.domain = domain
        self.route = route
        self.name = f"{domain}.{route.method}"
        method = getattr(interface, route.method)
        hints = typing.get_type_hints(method)
        signature = inspect.signature(method)
        path_names = {m.group(1) for m in _PLACEHOLDER.finditer(route.path)}
        params: list[Param] = []
        for name, parameter in list(signature.parameters.items())[1:]:  # not self
            if name in path_names:
                where, wire = "path", name
            elif name in route.query:
                where, wire = "query", route.query[name]
            elif name in route.headers:
                where, wire = "header", route.headers[name]
            elif name == route.body:
                where, wire = "whole", name
            else:
                where, wire = "body", name
            annotation = hints.get(name, Any)
            required = parameter.default is inspect.Parameter.empty
            params.append(
                Param(
                    name, where, wire, annotation, parameter.default, required, _is_int(annotation)
                )
            )
        self.params = tuple(params)
        self.names = tuple(p.name for p in params)
        self.positional = tuple(
            name
            for name, parameter in list(signature.parameters.items())[1:]
            if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        self.by_name = {p.name: p for p in params}
        self.has_body = any(p.where in ("body", "whole") for p in params)
        self.result_type: Any = hints.get("return", type(None))
        self.summary = inspect.getdoc(method) or ""
        self.path_template = _PLACEHOLDER.sub(lambda m: "{" + m.group(1) + "}", route.path)
        envelope = route.envelope
        if envelope is None and typing.get_origin(self.result_type) is list:
            envelope = "items"
        self.envelope = envelope
        self.codec: Codec = (route.codec or JsonCodec)(self)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments the caller passed, by name (defaults are not filled in: an argument
        left out is left out on the wire too, and the far side applies the same default)."""
        if len(args) > len(self.positional):
            raise TypeError(
                f"{self.name}() takes {len(self.positional)} positional arguments, got {len(args)}"
            )
        values = dict(zip(self.positional, args, strict=False))
        for name, value in kwargs.items():
            if name not in self.by_name or name in values:
                raise TypeError(f"{self.name}() got an unexpected or repeated argument {name!r}")
            values[name] = value
        for param in self.params:
            if param.required and param.name not in values:
                raise TypeError(f"{self.name}() missing required argument {param.name!r}")
            if not param.required and param.name in values and values[param.name] is param.default:
                del values[param.name]  # the default itself: let the far side apply it
        return values


def operations(manifest: DomainManifest[Any]) -> tuple[Operation, ...]:
    return tuple(Operation(manifest.name, manifest.interface, r) for r in manifest.routes)


# --------------------------------------------------------------------------- codecs


class Codec:
    """How one operation's arguments and result look on the wire (both ends of it)."""

    def __init__(self, op: Operation) -> None:
        self.op = op

    # client side
    def encode_request(self, values: dict[str, Any], headers: dict[str, str]) -> bytes | None:
        raise NotImplementedError

    def decode_response(self, response: WireResponse, values: dict[str, Any]) -> Any:
        raise NotImplementedError

    # service side
    def decode_request(self, req: falcon.Request, path_values: dict[str, str]) -> dict[str, Any]:
        raise NotImplementedError

    def encode_response(self, result: Any, resp: falcon.Response) -> None:
        raise NotImplementedError

    # the API document
    def openapi(self, schema: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """``requestBody`` and the success ``responses`` entry of this operation."""
        raise NotImplementedError


class JsonCodec(Codec):
    """Arguments in the path, query, headers and a JSON body; the result as JSON."""

    def __init__(self, op: Operation) -> None:
        super().__init__(op)
        result = op.result_type
        if result is type(None):
            self._decoder: msgspec.json.Decoder[Any] | None = None
        elif op.envelope is not None:
            self._decoder = msgspec.json.Decoder(dict[str, result])  # type: ignore[valid-type]
        else:
            self._decoder = msgspec.json.Decoder(result)
        self._whole = {
            p.name: msgspec.convert
            for p in op.params
            if p.where == "whole" and is_dataclass(p.annotation)
        }

    def encode_request(self, values: dict[str, Any], headers: dict[str, str]) -> bytes | None:
        if not self.op.has_body:
            return None
        headers["Content-Type"] = JSON
        whole = self.op.route.body
        fields = {
            p.name: values[p.name] for p in self.op.params if p.where == "body" and p.name in values
        }
        try:
            return msgspec.json.encode(values.get(whole) if whole is not None else fields)
        except (UnicodeEncodeError, TypeError):
            raise _unencodable({whole: values.get(whole)} if whole else fields) from None

    def decode_response(self, response: WireResponse, values: dict[str, Any]) -> Any:
        if self._decoder is None:
            return None
        decoded = self._decoder.decode(response.content)
        return decoded[self.op.envelope] if self.op.envelope is not None else decoded

    def decode_request(self, req: falcon.Request, path_values: dict[str, str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        data: dict[str, Any] | None = None
        for param in self.op.params:
            if param.where == "path":
                kwargs[param.name] = _from_text(param, path_values[param.name])
                continue
            if param.where == "query":
                raw: Any = req.get_param(param.wire_name)
                present = raw not in (None, "")
                value = _from_text(param, raw) if present else None
            elif param.where == "header":
                raw = req.get_header(param.wire_name)
                present, value = raw is not None, raw
            else:
                if data is None:
                    data = read_json(req)
                if param.where == "whole":
                    present, value = True, self._whole_body(param, data)
                else:
                    present, value = param.name in data, data.get(param.name)
            if present:
                kwargs[param.name] = value
            elif param.required:
                # As in-process, a missing value reaches the implementation as None, whose own
                # validation then refuses it with its own words.
                kwargs[param.name] = None
        return kwargs

    def _whole_body(self, param: Param, data: dict[str, Any]) -> Any:
        if param.name not in self._whole:
            return data
        try:
            return msgspec.convert(data, param.annotation)
        except msgspec.ValidationError as exc:
            raise invalid(param.name, f"not a valid {param.annotation.__name__}: {exc}") from None

    def encode_response(self, result: Any, resp: falcon.Response) -> None:
        if result is None and self.op.result_type is type(None):
            resp.status = 204
            return
        if self.op.envelope is not None:
            result = {self.op.envelope: result}
        send_json(resp, msgspec.json.encode(result), self.op.route.status)

    def openapi(self, schema: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        op = self.op
        spec: dict[str, Any] = {}
        body = [p for p in op.params if p.where == "body"]
        whole = [p for p in op.params if p.where == "whole"]
        if whole:
            spec["requestBody"] = _json_content(schema(whole[0].annotation), required=True)
        elif body:
            properties = {p.name: schema(p.annotation) for p in body}
            required = [p.name for p in body if p.required]
            object_schema: dict[str, Any] = {"type": "object", "properties": properties}
            if required:
                object_schema["required"] = required
            spec["requestBody"] = _json_content(object_schema, required=True)
        if op.result_type is type(None):
            spec["responses"] = {"204": {"description": "done; no content"}}
        else:
            result = schema(op.result_type)
            if op.envelope is not None:
                result = {
                    "type": "object",
                    "properties": {op.envelope: result},
                    "required": [op.envelope],
                }
            spec["responses"] = {str(op.route.status): _json_content(result, description="OK")}
        return spec


def _json_content(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**extra, "content": {JSON: {"schema": schema}}}


def _unencodable(fields: dict[str, Any]) -> InvalidInput:
    """The refusal of an argument JSON cannot carry (a lone surrogate, an object of no JSON
    type): what the implementation would say of it in-process, named after its field."""
    for name, value in fields.items():
        try:
            msgspec.json.encode(value)
        except UnicodeEncodeError:
            return invalid(name, "must be valid Unicode text")
        except TypeError:
            return invalid(name, f"cannot be a {type(value).__name__}")
    return InvalidInput("the arguments cannot travel as JSON")


def _from_text(param: Param, raw: str) -> Any:
    """A path or query value as the interface's type: they carry no type of their own."""
    if not param.integer:
        return raw
    if not _INTEGER.fullmatch(raw):
        raise invalid(param.name, "must be a positive integer")
    return int(raw)


def _to_text(param: Param, value: Any) -> str:
    if param.integer:
        if not isinstance(value, int) or isinstance(value, bool):
            # A path or query string would lose the type (True would travel as 1, "7" as 7):
            # refuse it here with the error every domain gives for a malformed id.
            raise invalid(param.name, "must be a positive integer")
        return str(value)
    return str(value)


def _header_value(value: Any) -> str | None:
    """``value`` as a header, or None when a header could not carry it unchanged (HTTP strips
    surrounding whitespace and carries neither control nor non-ASCII characters): such a value
    travels as no header at all, and the implementation refuses the missing value itself."""
    if isinstance(value, str) and value and value.isascii() and value.isprintable():
        return value if value == value.strip() else None
    return None


# --------------------------------------------------------------------------- the client


def error_of(response: WireResponse) -> tuple[str | None, str, dict[str, Any] | None]:
    """``(code, message, details)`` of an error answer; ``code`` is None when it has none."""
    try:
        error = msgspec.json.decode(response.content)["error"]
        return str(error["code"]), str(error.get("message", "")), error.get("details")
    except (msgspec.DecodeError, KeyError, TypeError):
        return None, f"HTTP {response.status}", None


_GENERIC_BY_STATUS = {cls.status: cls for cls in GENERIC_ERRORS}


UNAVAILABLE_STATUSES = (502, 503, 504)


def failure_detector(manifest: DomainManifest[Any]) -> Callable[[WireResponse], bool]:
    """Which answers mean the *service* is failing (the breaker counts them, a safe call is
    retried): a 502/503/504 that is not one of the domain's own errors, any 5xx that is not even
    our JSON (a proxy's page, a crash), and a refused service credential.

    Not a 4xx (the caller's mistake), and not the service's own ``500 internal_error``: the
    service answered, and the same request would meet the same bug again; counting it would let
    one caller who found a bug switch the domain off for everyone.
    """
    codes = set(all_errors(manifest))

    def is_failure(response: WireResponse) -> bool:
        if response.status < 500:
            return response.status == 401 and error_of(response)[0] == SERVICE_UNAUTHORIZED
        code = error_of(response)[0]
        if code is None:
            return True
        return response.status in UNAVAILABLE_STATUSES and code not in codes

    return is_failure


class RemoteDomain:
    """A domain's interface over a transport (see :func:`remote`)."""

    def __init__(
        self,
        manifest: DomainManifest[Any],
        transport: Transport,
        credentials: ServiceCredentials,
    ) -> None:
        self._manifest = manifest
        self._domain = manifest.name
        self.transport = transport
        self._credentials = credentials
        self._errors = all_errors(manifest)
        routed = set()
        for op in operations(manifest):
            setattr(self, op.route.method, self._method(op))
            routed.add(op.route.method)
        for name, _ in inspect.getmembers(manifest.interface, inspect.isfunction):
            if not name.startswith("_") and name not in routed and name != "health":
                setattr(self, name, self._not_remote(name))

    def _method(self, op: Operation) -> Callable[..., Any]:
        codec = op.codec
        route = op.route
        params = op.params

        def call(*args: Any, **kwargs: Any) -> Any:
            values = op.bind(args, kwargs)
            path = op.path_template
            query: list[tuple[str, str]] = []
            headers: dict[str, str] = {}
            for param in params:
                if param.name not in values:
                    continue
                value = values[param.name]
                if param.where == "path":
                    path = path.replace(
                        "{" + param.name + "}", quote(_to_text(param, value), safe="")
                    )
                elif param.where == "query":
                    if value is not None:
                        query.append((param.wire_name, _to_text(param, value)))
                elif param.where == "header":
                    header = _header_value(value)
                    if header is not None:
                        headers[param.wire_name] = header
            if query:
                path += "?" + urlencode(query)
            body = codec.encode_request(values, headers)
            response = self._send(route, op, path, headers, body)
            try:
                return codec.decode_response(response, values)
            except msgspec.DecodeError as exc:  # a 2xx that is not what the route promises
                raise self._manifest.unavailable_error(
                    f"the {self._domain} service gave an unreadable answer to {op.name}: {exc}"
                ) from None

        call.__name__ = route.method
        call.__doc__ = op.summary
        return call

    def _send(
        self, route: Route, op: Operation, path: str, headers: dict[str, str], body: bytes | None
    ) -> WireResponse:
        request_id = request_id_var.get()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        if not route.public:
            headers["Authorization"] = f"Bearer {self._credentials.token_for(self._domain)}"
        wire = WireRequest(route.verb, path, op.name, route.safe, headers, body)
        try:
            response = self.transport.send(wire)
        except TransportError as exc:
            raise self._manifest.unavailable_error(
                f"the {self._domain} service is unavailable: {exc}"
            ) from None
        if calls_var.get() is not None:  # a request is recording its calls (Server-Timing on)
            service_seconds_var.set(service_seconds(response.headers.get("server-timing")))
        if response.status >= 400:
            self._raise_for(response)
        return response

    def _raise_for(self, response: WireResponse) -> None:
        code, message, details = error_of(response)
        if code is not None and code in self._errors:
            raise self._errors[code](message, details=details)
        if code == SERVICE_UNAUTHORIZED:
            log.error("%s refused our service credential: %s", self._domain, message)
            raise self._manifest.unavailable_error(
                f"the {self._domain} service is unavailable: it refused the service credential"
            )
        if response.status >= 500 or code is None:
            raise self._manifest.unavailable_error(
                f"the {self._domain} service is unavailable: HTTP {response.status}"
            )
        raise _GENERIC_BY_STATUS.get(response.status, InvalidInput)(message, details=details)

    def _not_remote(self, name: str) -> Callable[..., Any]:
        def call(*_args: Any, **_kwargs: Any) -> Any:
            raise TypeError(
                f"{self._domain}.{name} has no route: it is not callable on the extracted service"
            )

        return call

    def health(self) -> dict[str, Any]:
        """The service's own ``/health`` and the transport's view of it; never raises."""
        try:
            response = self.transport.send(
                WireRequest("GET", "/health", f"{self._domain}.health", True)
            )
            if response.status != 200:
                raise TransportError(f"HTTP {response.status}")
            remote: dict[str, Any] = msgspec.json.decode(response.content)
        except (TransportError, msgspec.DecodeError) as exc:
            remote = {
                "status": "down",
                "error": f"the {self._domain} service is unavailable: {exc}",
            }
        remote.pop("service", None)
        return {**remote, **self.transport.describe()}

    def close(self) -> None:
        self.transport.close()


def remote(manifest: DomainManifest[T], transport: Transport, credentials: ServiceCredentials) -> T:
    """The domain's interface, called over ``transport``: same methods, DTOs and errors."""
    return cast(T, RemoteDomain(manifest, transport, credentials))


# --------------------------------------------------------------------------- the service side


class _Resource:
    """The responders of one path, one per verb (Falcon's ``on_get``, ``on_patch``...)."""

    def __init__(self) -> None:
        self.public_methods: set[str] = set()


def service_resources(manifest: DomainManifest[Any], service: Any) -> dict[str, Any]:
    """The extracted service's endpoints, one responder per route, by path template; each calls
    ``service`` (the in-process implementation) with the arguments its codec read."""
    resources: dict[str, _Resource] = {}
    for op in operations(manifest):
        resource = resources.setdefault(op.route.path, _Resource())
        setattr(
            resource,
            f"on_{op.route.verb.lower()}",
            _responder(op, getattr(service, op.route.method)),
        )
        if op.route.public:
            resource.public_methods.add(op.route.verb)
    return dict(resources)


def _responder(op: Operation, method: Callable[..., Any]) -> Callable[..., None]:
    codec = op.codec

    def responder(req: falcon.Request, resp: falcon.Response, **path_values: str) -> None:
        codec.encode_response(method(**codec.decode_request(req, path_values)), resp)

    responder.__name__ = op.route.method
    return responder


# --------------------------------------------------------------------------- the API document


def openapi_document(manifest: DomainManifest[Any]) -> dict[str, Any]:
    """The extracted service's OpenAPI 3.1 document, from the route table and the interface."""
    from blog.openapi import Document

    doc = Document(
        title=f"strangler-blog {manifest.name} service",
        description=(inspect.getdoc(sys.modules[manifest.interface.__module__]) or "")
        + "\n\nEvery route except the public ones needs the internal service credential "
        "(`Authorization: Bearer <service JWT>`, audience = this service).",
    )
    doc.security_scheme("serviceToken", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    errors = sorted({cls.status for cls in manifest.errors} | {400})
    for op in operations(manifest):
        route = op.route
        parameters = [
            {
                "name": p.wire_name,
                "in": p.where,
                "required": p.where == "path" or p.required,
                "schema": doc.schema(p.annotation),
            }
            for p in op.params
            if p.where in ("path", "query", "header")
        ]
        spec: dict[str, Any] = {
            "operationId": route.method,
            "summary": op.summary.split("\n")[0] if op.summary else route.method,
            "x-safe-to-retry": route.safe,
        }
        if parameters:
            spec["parameters"] = parameters
        spec.update(op.codec.openapi(doc.schema))
        for status in errors:
            spec["responses"].setdefault(str(status), doc.error_response())
        if not route.public:
            spec["security"] = [{"serviceToken": []}]
            spec["responses"].setdefault("401", doc.error_response())
        doc.operation(
            _PLACEHOLDER.sub(lambda m: "{" + m.group(1) + "}", route.path), route.verb, spec
        )
    doc.operation(
        "/health",
        "GET",
        {
            "operationId": "health",
            "summary": "The service's own health and its database's",
            "responses": {"200": _json_content({"type": "object"}, description="OK")},
        },
    )
    return doc.to_dict()
