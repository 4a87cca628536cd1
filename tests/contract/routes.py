"""The operations Flask serves under /api/v1 and /dvc, and those the OpenAPI document lists."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

PREFIXES = ("/api/v1/", "/dvc/")
METHODS = ("get", "head", "post", "put", "patch", "delete")
_CONVERTER = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>")


def openapi_path(rule: str) -> str:
    """A Flask rule spelled as an OpenAPI path: `<int:project_id>` -> `{project_id}`."""
    return _CONVERTER.sub(r"{\1}", rule)


def served(app: Flask) -> set[tuple[str, str]]:
    """(rule, method) of every route under the prefixes; HEAD and OPTIONS are Flask's own."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PREFIXES):
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                found.add((rule.rule, method.lower()))
    return found


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(rule, method) of every operation in the document except HEAD; `x-route` names the rule."""
    found = set()
    for path, item in document["paths"].items():
        rule = item.get("x-route")
        for method in METHODS:
            if method in item and method != "head":
                found.add((rule or path, method))
    return found


def differences(app: Flask, document: dict[str, Any]) -> list[str]:
    """Human-readable mismatches between the app's routes and the document (empty: agreed)."""
    routes = {(openapi_path(rule), method) for rule, method in served(app)}
    listed = {(openapi_path(rule), method) for rule, method in documented(document)}
    problems = [f"{m.upper()} {p} is served but not in openapi.yaml" for p, m in routes - listed]
    problems += [f"{m.upper()} {p} is in openapi.yaml but not served" for p, m in listed - routes]
    return sorted(problems)
