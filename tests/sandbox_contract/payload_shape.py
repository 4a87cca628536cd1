"""Recursive key/type comparison of a payload against GitLab's documented example of its kind.

`shape_differences(example, payload)` lists every place where the payload lacks a key the
example has, has a key the example lacks (unless allowed), or holds a different JSON type.
Lists are compared element-wise against the example's first element. `null` matches only
`null` unless the path is declared nullable (GitLab's examples show one concrete value for
fields that are null in other situations, e.g. `checkout_sha` on a deletion).
Paths look like `$.commits[].author.name`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tests.support.paths import WEBHOOK_FIXTURES

FIXTURES = WEBHOOK_FIXTURES


def load_example(name: str) -> Any:
    """The documented example payload `<name>.json` from the shared fixtures."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


_TYPES: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value (`integer` and `number` kept apart)."""
    # bool before int: True is an int in Python but a boolean in JSON.
    for kind, name in _TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def shape_differences(
    example: Any,
    payload: Any,
    *,
    allow_extra: Iterable[str] = (),
    nullable: Iterable[str] = (),
    path: str = "$",
) -> list[str]:
    """Every key/type difference between `payload` and `example` (empty list: same shape)."""
    extra_ok, null_ok = set(allow_extra), set(nullable)
    expected, actual = json_type(example), json_type(payload)
    if expected != actual:
        if path in null_ok and "null" in (expected, actual):
            return []
        return [f"{path}: expected {expected}, got {actual}"]
    problems: list[str] = []
    if isinstance(example, dict):
        for key in example:
            if key not in payload:
                problems.append(f"{path}.{key}: missing")
        for key in payload:
            if key not in example:
                if f"{path}.{key}" not in extra_ok:
                    problems.append(f"{path}.{key}: not in the documented example")
                continue
            problems += shape_differences(
                example[key],
                payload[key],
                allow_extra=extra_ok,
                nullable=null_ok,
                path=f"{path}.{key}",
            )
    elif isinstance(example, list) and example:
        for item in payload:
            problems += shape_differences(
                example[0], item, allow_extra=extra_ok, nullable=null_ok, path=f"{path}[]"
            )
    return problems
