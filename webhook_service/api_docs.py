"""`GET /api/v1/openapi.json` and `GET /api/v1/docs`: dshub's HTTP contract and its page.

The contract is `openapi.yaml` beside this module (OpenAPI 3.1, /api/v1 and the DVC remote),
read once per process. The page is rendered here from the same document — no script, no
assets from elsewhere — so it works offline and under the strictest content security policy.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, jsonify, render_template
from flask.typing import ResponseReturnValue

blueprint = Blueprint("api_docs", __name__, url_prefix="/api/v1")
DOCUMENT = Path(__file__).with_name("openapi.yaml")
METHODS = ("get", "head", "post", "put", "patch", "delete")


@functools.cache
def _loaded() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return document


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as a fresh dict (callers may change their copy)."""
    return copy.deepcopy(_loaded())


@blueprint.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3.1 description of /api/v1 and the DVC remote."""
    return jsonify(_loaded())


def _schemes(operation: dict[str, Any], document: dict[str, Any]) -> list[str]:
    names = []
    for requirement in operation.get("security", document.get("security", [])):
        names.append(" + ".join(requirement) if requirement else "anonymous")
    return names


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for path, item in document["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
            rows.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "id": operation.get("operationId", ""),
                    "tag": (operation.get("tags") or [""])[0],
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "parameters": [_parameter(p, document) for p in parameters],
                    "statuses": sorted(operation.get("responses", {})),
                    "security": _schemes(operation, document),
                }
            )
    return rows


def _parameter(parameter: dict[str, Any], document: dict[str, Any]) -> dict[str, str]:
    ref = parameter.get("$ref")
    if ref:
        parameter = document["components"]["parameters"][ref.rsplit("/", 1)[-1]]
    schema = parameter.get("schema", {})
    bounds = [
        f"{key} {schema[key]}" for key in ("minimum", "maximum", "maxLength") if key in schema
    ]
    kind = schema.get("type") or ("one of " + ", ".join(map(str, schema.get("enum", []))))
    return {
        "name": parameter["name"],
        "in": parameter["in"],
        "type": ", ".join([str(kind), *bounds]),
        "required": "required" if parameter.get("required") else "",
    }


@blueprint.get("/docs")
def docs() -> ResponseReturnValue:
    """Every operation of the contract on one server-rendered page."""
    document = _loaded()
    return render_template("api_docs.html", info=document["info"], operations=_operations(document))
