"""The public API's OpenAPI document: complete, valid, and built from the router."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from blog import create_app
from blog.web.auth_guard import login_required, requires_login
from blog.web.openapi import build_document, undocumented
from tests.support import make_config

IGNORED = {"HEAD", "OPTIONS"}


@pytest.fixture
def api_app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(make_config(tmp_path))
    try:
        yield app
    finally:
        app.extensions["blog.runtime"].close()


@pytest.fixture
def document(api_app: Flask) -> dict[str, Any]:
    response = api_app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    return body


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


def test_every_api_route_is_documented(api_app: Flask) -> None:
    assert undocumented(api_app) == []


def test_an_undocumented_route_is_caught(api_app: Flask) -> None:
    @api_app.get("/api/forgotten/<int:thing_id>")
    def forgotten(thing_id: int) -> Any:
        return jsonify({})

    assert undocumented(api_app) == ["GET /api/forgotten/<int:thing_id>"]


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_it_lists_exactly_the_routers_operations(api_app: Flask, document: dict[str, Any]) -> None:
    routed = {
        (rule.rule, method)
        for rule in api_app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and rule.endpoint != "openapi.document"
        for method in (rule.methods or set()) - IGNORED
    }
    converted = {
        (path.replace("{", "<").replace("}", ">"), method)
        for path, method, _ in _operations(document)
    }
    assert {(r.replace("<int:", "<"), m) for r, m in routed} == converted


def test_every_error_is_the_shared_error_schema(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]


def test_a_json_body_documents_what_reading_it_can_answer(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            assert {"400", "413", "415"} <= set(operation["responses"]), (method, path)


def test_int_converters_are_integer_parameters_and_the_routers_404_is_documented(
    api_app: Flask, document: dict[str, Any]
) -> None:
    integers = 0
    for rule in api_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint == "openapi.document":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - IGNORED:
            operation = document["paths"][path][method.lower()]
            if rule.arguments:
                assert "404" in operation["responses"], (method, path)
            schemas = {p["name"]: p["schema"] for p in operation.get("parameters", [])}
            for name in re.findall(r"<int:(\w+)>", rule.rule):
                assert schemas[name]["type"] == "integer", (method, path, name)
                integers += 1
    assert integers


def test_security_is_exactly_where_the_guard_is(api_app: Flask, document: dict[str, Any]) -> None:
    guarded = {
        (rule.rule.replace("<int:", "<"), method)
        for rule in api_app.url_map.iter_rules()
        if requires_login(api_app.view_functions[rule.endpoint])
        for method in (rule.methods or set()) - IGNORED
    }
    secured = {
        (path.replace("{", "<").replace("}", ">"), method)
        for path, method, operation in _operations(document)
        if operation.get("security") == [{"bearerToken": []}]
    }
    assert guarded == secured
    assert ("/api/payment", "POST") in secured
    for path, method, operation in _operations(document):
        if (path.replace("{", "<").replace("}", ">"), method) in secured:
            assert "401" in operation["responses"], (method, path)


def test_login_required_marks_only_the_guarded_view() -> None:
    def view() -> None:
        return None

    assert requires_login(login_required(view))
    assert not requires_login(view)


def test_the_served_document_is_the_built_one(api_app: Flask, document: dict[str, Any]) -> None:
    assert document == build_document(api_app)
