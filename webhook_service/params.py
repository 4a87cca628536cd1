"""The one integer rule of the HTTP edge: query strings, JSON fields and URL path ids.

A number from a client is ASCII digits only (`str.isdigit()` also accepts superscripts and
other scripts' digits, `int()` accepts Arabic-Indic digits and `1_0`, so neither is the rule),
at most 20 of them,
and inside explicit bounds. Anything else is a 400 (`InvalidInput`) whose message names the
parameter and the allowed range. JSON numbers are Python ints or floats after parsing; they
are bounded before any conversion (`float(10**400)` and `math.isfinite(10**400)` raise
`OverflowError`). Path ids (`<int:project_id>`) use `IdConverter`: ASCII digits and at most
`MAX_ID` (SQLite's and PostgreSQL's largest integer), anything else matches no route (404).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flask import Flask, request
from werkzeug.routing import IntegerConverter

from indexer.errors import InvalidInput
from indexer.ingest.events import (
    MAX_ID,  # ids are bigint (SQLite, PostgreSQL): the edge's bound too
)

__all__ = [
    "MAX_ID",
    "IdConverter",
    "ascii_digits",
    "init_app",
    "int_arg",
    "int_field",
    "number_field",
    "optional_int_arg",
    "parse_int",
]

_MAX_DIGITS = 20
_SHOWN = 40  # characters of a refused value quoted back in the message


def parse_int(raw: str, name: str, low: int, high: int) -> int:
    """`raw` as an integer from `low` to `high` (ASCII digits, an optional `-` when `low` is
    negative); otherwise `InvalidInput` naming `name` and the range."""
    digits = raw[1:] if raw.startswith("-") and low < 0 else raw
    if ascii_digits(digits):
        value = int(raw, 10)
        if low <= value <= high:
            return value
    raise InvalidInput(f"{name} must be a whole number from {low} to {high}, not {_shown(raw)}")


def ascii_digits(raw: str, most: int = _MAX_DIGITS) -> bool:
    """True when `raw` is 1 to `most` of the characters 0-9 and nothing else."""
    return 0 < len(raw) <= most and raw.isascii() and raw.isdigit()


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """Query parameter `name` by `parse_int`; `default` when absent or empty."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    return parse_int(raw, name, low, high)


def optional_int_arg(name: str, low: int, high: int) -> int | None:
    """Query parameter `name` by `parse_int`; None when absent or empty."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    return parse_int(raw, name, low, high)


def int_field(body: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    """JSON field `name`: an integer (not a boolean, not a float) from `low` to `high`."""
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}")
    return value


def number_field(
    body: Mapping[str, Any], name: str, default: float, low: float, high: float
) -> float:
    """JSON field `name`: a finite number (integer or decimal) from `low` to `high`."""
    value = body.get(name, default)
    message = f"{name} must be a number from {low:g} to {high:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(message)
    # Compared before converting: a huge int compares exactly, but would not fit a float.
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(message)
    if not low <= value <= high:
        raise InvalidInput(message)
    return float(value)


def _shown(raw: str) -> str:
    return repr(raw[:_SHOWN]) + ("..." if len(raw) > _SHOWN else "")


class IdConverter(IntegerConverter):
    """`<int:...>` in routes: ASCII digits only, 0 to `MAX_ID`; anything else matches no route."""

    regex = r"[0-9]{1,19}"

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def init_app(app: Flask) -> None:
    """Make `<int:...>` in every route of `app` mean `IdConverter` (before routes are added)."""
    app.url_map.converters["int"] = IdConverter
