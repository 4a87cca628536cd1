"""The OpenAPI document is valid, lists exactly the routes Flask serves, and has its page."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from tests.contract.routes import METHODS, differences, openapi_path
from webhook_service import create_app
from webhook_service.api_docs import DOCUMENT, openapi_document


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    data = tmp_path_factory.mktemp("openapi")
    yield create_app(
        {
            "DSHUB_DATA_DIR": str(data),
            "DSHUB_INDEX_URL": f"sqlite:///{data / 'index.sqlite3'}",
            "DSHUB_LOG_FORMAT": "text",
            "DSHUB_RECONCILE_INTERVAL": "0",
        }
    )


@pytest.fixture(scope="module")
def document(app: Flask) -> dict[str, Any]:
    answer = app.test_client().get("/api/v1/openapi.json")
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    body: dict[str, Any] = answer.json  # type: ignore[assignment]
    return body


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_the_served_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_registered_route_is_documented_and_nothing_else(
    app: Flask, document: dict[str, Any]
) -> None:
    assert differences(app, document) == []


def test_a_missing_or_invented_route_is_reported(app: Flask, document: dict[str, Any]) -> None:
    doctored = copy.deepcopy(document)
    del doctored["paths"]["/api/v1/datasets/{project_id}/tree"]
    doctored["paths"]["/api/v1/datasets/{project_id}/tree"] = {}
    doctored["paths"]["/api/v1/nowhere"] = {"get": {"responses": {"200": {"description": "x"}}}}
    doctored["paths"]["/api/v1/datasets"]["delete"] = doctored["paths"]["/api/v1/nowhere"]["get"]
    assert differences(app, doctored) == [
        "DELETE /api/v1/datasets is in openapi.yaml but not served",
        "GET /api/v1/datasets/{project_id}/tree is served but not in openapi.yaml",
        "GET /api/v1/nowhere is in openapi.yaml but not served",
    ]


def test_path_parameters_are_the_route_arguments(app: Flask, document: dict[str, Any]) -> None:
    arguments = {openapi_path(rule.rule): set(rule.arguments) for rule in app.url_map.iter_rules()}
    for path, item in document["paths"].items():
        named = set(re.findall(r"{([a-z_]+)}", path))
        if "x-route" in item:
            # The DVC remote's one `<path:key>` is described as its key layouts.
            assert named - {"prefix", "rest"} == arguments[openapi_path(item["x-route"])] - {"key"}
        else:
            assert named == arguments[path], path


def test_every_operation_names_its_errors_in_the_one_error_shape(document: dict[str, Any]) -> None:
    responses = document["components"]["responses"]
    for path, method, operation in _operations(document):
        assert operation.get("operationId"), (method, path)
        for status, given in operation["responses"].items():
            if not status.startswith(("4", "5")) or status in ("414", "416"):
                continue
            answer = responses[given["$ref"].rsplit("/", 1)[-1]] if "$ref" in given else given
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
        if "{project_id}" in path:
            assert "404" in operation["responses"], (method, path)


def test_security_schemes_cover_every_way_to_authenticate(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert {(s["type"], s.get("in"), s.get("name"), s.get("scheme")) for s in schemes.values()} == {
        ("apiKey", "header", "PRIVATE-TOKEN", None),
        ("http", None, None, "bearer"),
        ("apiKey", "cookie", "tokenGitLab", None),
        ("http", None, None, "basic"),
        ("apiKey", "header", "JOB-TOKEN", None),
    }


def test_the_docs_page_lists_every_operation_without_outside_assets(
    app: Flask, document: dict[str, Any]
) -> None:
    page = app.test_client().get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for path, method, operation in _operations(document):
        assert f'id="{operation["operationId"]}"' in html, (method, path)
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_the_document_is_the_file_beside_the_code(document: dict[str, Any]) -> None:
    assert openapi_document() == document
    assert DOCUMENT.name == "openapi.yaml" and DOCUMENT.parent.name == "webhook_service"
