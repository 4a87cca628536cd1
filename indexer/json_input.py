"""Client JSON decoded strictly and boundedly: UTF-8, no NaN/Infinity, bounded nesting.

One implementation for every JSON body dshub accepts (webhook deliveries in
`indexer.ingest.events`, API and DVC-remote bodies in `webhook_service.bodies`). Every failure is an
`InvalidInput` (or the subclass the caller names) with a message a person can act on:
`RecursionError` from a deeply nested document is not a `ValueError`, so it is caught here,
and a document that parsed is still refused past `MAX_DEPTH` levels so that no later code
walks it recursively.
"""

from __future__ import annotations

import json
from typing import Any

from indexer.errors import InvalidInput

MAX_DEPTH = 32  # GitLab's payloads nest about 5 levels; dshub's own bodies 2


def decode_object(
    data: bytes,
    what: str = "body",
    *,
    max_depth: int = MAX_DEPTH,
    error: type[InvalidInput] = InvalidInput,
) -> dict[str, Any]:
    """`data` parsed as a JSON object; raises `error` naming `what` and the problem."""
    value = decode_value(data, what, max_depth=max_depth, error=error)
    if not isinstance(value, dict):
        raise error(f"{what} must be a JSON object, not {json_type(value)}")
    return value


def decode_value(
    data: bytes,
    what: str = "body",
    *,
    max_depth: int = MAX_DEPTH,
    error: type[InvalidInput] = InvalidInput,
) -> Any:
    """`data` parsed as any JSON value, within `max_depth` levels of arrays and objects."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise error(f"{what} is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise error(f"{what} is not valid JSON: {_json_error(exc)}") from None
    if depth(value) > max_depth:
        raise error(f"{what} is not valid JSON here: nested more than {max_depth} levels deep")
    return value


def depth(value: Any) -> int:
    """How many levels of arrays and objects `value` nests (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


def json_type(value: Any) -> str:
    """How a person names the JSON type of `value` ("an array", "a string", ...)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not allowed in JSON")


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)
