"""HTTP plumbing of the sandbox: raw-path router, request/response, GitLab error shapes, pagination.

Routing happens on the *raw* request target so `g%2Fp` (one segment) and `g/p` (two
segments) stay distinct, as in GitLab (route params match `[^/]+` and are decoded after
matching). Parameters merge query string, form and JSON body like Grape does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

if TYPE_CHECKING:
    from tests.gitlab_sandbox.state import SandboxState, User

JSON = dict[str, Any] | list[Any]
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 20


class ApiError(Exception):
    """An error answer in one of GitLab's shapes (`{"message": ...}` or Grape's `{"error": ...}`)."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def not_found(resource: str = "") -> ApiError:
    """404 `{"message": "404 <resource> Not Found"}` (GitLab's `not_found!`)."""
    text = f"404 {resource} Not Found" if resource else "404 Not Found"
    return ApiError(404, {"message": text})


def record_not_found() -> ApiError:
    """404 `{"message": "404 Not found"}` (ActiveRecord::RecordNotFound: hooks, members)."""
    return ApiError(404, {"message": "404 Not found"})


def bad_request_error(message: str) -> ApiError:
    """400 `{"error": message}`: Grape parameter validation."""
    return ApiError(400, {"error": message})


def bad_request(message: str) -> ApiError:
    """400 `{"message": "400 Bad request - <message>"}` (GitLab's `bad_request!`)."""
    return ApiError(400, {"message": f"400 Bad request - {message}"})


def validation_error(errors: dict[str, list[str]]) -> ApiError:
    """400 `{"message": {field: [problems]}}` (GitLab's `render_validation_error!`)."""
    return ApiError(400, {"message": errors})


def forbidden(reason: str = "") -> ApiError:
    """403 `{"message": "403 Forbidden"}` (optionally `- <reason>`)."""
    return ApiError(403, {"message": f"403 Forbidden - {reason}" if reason else "403 Forbidden"})


def unauthorized() -> ApiError:
    """401 `{"message": "401 Unauthorized"}`."""
    return ApiError(401, {"message": "401 Unauthorized"})


def unprocessable(message: Any) -> ApiError:
    """422 with GitLab's hook-helper shape `{"error": message}`."""
    return ApiError(422, {"error": message})


class Response:
    """An HTTP answer; dict/list bodies are JSON (`application/json`)."""

    def __init__(
        self,
        status: int = 200,
        body: bytes | str | JSON = b"",
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        if isinstance(body, dict | list):
            self.body = json.dumps(body).encode()
            self.content_type = content_type or "application/json"
        elif isinstance(body, str):
            self.body = body.encode()
            self.content_type = content_type or "text/plain; charset=utf-8"
        else:
            self.body = body
            self.content_type = content_type or (
                "application/octet-stream" if body else "application/json"
            )
        # A streamed body (iterator of bytes) may replace `body` for large downloads.
        self.stream: Iterable[bytes] | None = None


@dataclass
class Request:
    """What a handler sees: method, decoded route params, merged params, the caller and the state."""

    method: str
    raw_path: str
    path_params: dict[str, str]
    params: dict[str, Any]
    query: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    user: User | None
    state: SandboxState
    base_url: str
    environ: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        """Case-insensitive request header lookup."""
        return self.headers.get(name.lower(), default)


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    names: list[str]
    handler: Handler


class Router:
    """Maps `(method, raw path)` to handlers; `:name` segments match `[^/]+` and are decoded."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator registering `handler` for `method` (or "*" ) and `pattern`."""

        def register(handler: Handler) -> Handler:
            names: list[str] = []
            parts = []
            for segment in pattern.strip("/").split("/"):
                if segment.startswith(":"):
                    names.append(segment[1:])
                    parts.append("([^/]+)")
                else:
                    parts.append(re.escape(segment))
            regex = re.compile("^/" + "/".join(parts) + "$")
            # Later registrations of the same method+pattern replace earlier ones.
            self.routes = [
                r for r in self.routes if not (r.method == method and r.pattern == pattern)
            ]
            self.routes.append(Route(method.upper(), pattern, regex, names, handler))
            return handler

        return register

    def match(self, method: str, raw_path: str) -> tuple[Handler, dict[str, str]] | None:
        """The handler and decoded params for this request, or None (HEAD falls back to GET)."""
        for wanted in (method, "GET") if method == "HEAD" else (method,):
            for route in self.routes:
                if route.method not in (wanted, "*"):
                    continue
                found = route.regex.match(raw_path)
                if found:
                    values = {
                        name: unquote(value)
                        for name, value in zip(route.names, found.groups(), strict=True)
                    }
                    return route.handler, values
        return None

    def path_exists(self, raw_path: str) -> bool:
        """True when some method is routed for this path (used for 405 vs 404)."""
        return any(route.regex.match(raw_path) for route in self.routes)


router = Router()


# --------------------------------------------------------------------------- parameters


def _set_param(target: dict[str, Any], key: str, value: Any) -> None:
    """Store `key` with Rack's bracket semantics: `a[]` appends, `a[b]` nests."""
    match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
    if not match or not match.group(2):
        target[key] = value
        return
    name, rest = match.group(1), re.findall(r"\[([^\[\]]*)\]", match.group(2))
    node: Any = target
    keys = [name, *rest]
    for index, part in enumerate(keys[:-1]):
        following = keys[index + 1]
        if part == "":
            break
        if following == "":
            node = node.setdefault(part, [])
            node.append(value)
            return
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return
    last = keys[-1]
    if last:
        node[last] = value


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn decoded form/query pairs into Grape-style params (arrays and hashes)."""
    params: dict[str, Any] = {}
    for key, value in pairs:
        _set_param(params, key, value)
    return params


def parse_query(query_string: str) -> dict[str, Any]:
    """Decode a query string form-style (`+` is a space) into params."""
    return parse_pairs(parse_qsl(query_string, keep_blank_values=True))


_TRUE = {"true", "t", "1", "yes", "y", "on"}
_FALSE = {"false", "f", "0", "no", "n", "off"}


def param_bool(req: Request, name: str, default: bool | None = None) -> bool | None:
    """Grape `Boolean` coercion (case-insensitive true/false/1/0/t/f/yes/no); 400 otherwise."""
    value = req.params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise bad_request_error(f"{name} is invalid")


def param_int(req: Request, name: str, default: int | None = None) -> int | None:
    """Integer coercion; 400 `{"error": "<name> is invalid"}` for non-integers."""
    value = req.params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise bad_request_error(f"{name} is invalid")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request_error(f"{name} is invalid") from None


def param_str(req: Request, name: str, default: str | None = None) -> str | None:
    """A string parameter (numbers from JSON are turned into text)."""
    value = req.params.get(name)
    if value is None:
        return default
    if isinstance(value, dict | list):
        raise bad_request_error(f"{name} is invalid")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def param_list(req: Request, name: str) -> list[str] | None:
    """An array parameter given as `name[]=a&name[]=b`, a JSON list or a comma string."""
    value = req.params.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    raise bad_request_error(f"{name} is invalid")


def param_choice(
    req: Request, name: str, choices: Iterable[str], default: str | None
) -> str | None:
    """A string limited to `choices`; 400 `<name> does not have a valid value` otherwise."""
    value = param_str(req, name)
    if value is None or value == "":
        return default
    if value not in set(choices):
        raise bad_request_error(f"{name} does not have a valid value")
    return value


def require(req: Request, *names: str) -> None:
    """400 Grape `"<a> is missing, <b> is missing"` for absent required params."""
    missing = [n for n in names if req.params.get(n) is None or req.params.get(n) == ""]
    if missing:
        raise bad_request_error(", ".join(f"{n} is missing" for n in missing))


# --------------------------------------------------------------------------- pagination


def _link_url(req: Request, overrides: dict[str, Any], drop: Iterable[str] = ()) -> str:
    merged: dict[str, Any] = {**req.path_params, **req.query}
    for key in drop:
        merged.pop(key, None)
    merged.update(overrides)
    pairs: list[tuple[str, str]] = []
    for key in sorted(merged):
        pairs.extend(_flatten(key, merged[key]))
    path = req.raw_path.split("?", 1)[0]
    return f"{req.base_url}{path}?{urlencode(pairs, quote_via=quote)}"


def _flatten(key: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, list):
        return [(f"{key}[]", _text(v)) for v in value]
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        for sub in sorted(value):
            out.extend(_flatten(f"{key}[{sub}]", value[sub]))
        return out
    return [(key, _text(value))]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def page_params(req: Request) -> tuple[int, int]:
    """`(page, per_page)` from the request: page ≥ 1, per_page clamped to 1..100."""
    page = param_int(req, "page", 1) or 1
    per_page = param_int(req, "per_page", DEFAULT_PER_PAGE) or DEFAULT_PER_PAGE
    return max(page, 1), min(max(per_page, 1), MAX_PER_PAGE)


def paginate(req: Request, items: list[Any], serialize: Callable[[Any], Any]) -> Response:
    """Offset pagination with GitLab's X-* headers and a Link header carrying every param."""
    page, per_page = page_params(req)
    total = len(items)
    total_pages = max(1, -(-total // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    next_page = page + 1 if page < total_pages else None
    prev_page = page - 1 if page > 1 else None
    links = []
    if prev_page:
        links.append(f'<{_link_url(req, {"page": prev_page, "per_page": per_page})}>; rel="prev"')
    if next_page:
        links.append(f'<{_link_url(req, {"page": next_page, "per_page": per_page})}>; rel="next"')
    links.append(f'<{_link_url(req, {"page": 1, "per_page": per_page})}>; rel="first"')
    links.append(f'<{_link_url(req, {"page": total_pages, "per_page": per_page})}>; rel="last"')
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Next-Page": str(next_page or ""),
        "X-Prev-Page": str(prev_page or ""),
        "X-Total": str(total),
        "X-Total-Pages": str(total_pages),
        "Link": ", ".join(links),
    }
    return Response(200, [serialize(item) for item in chunk], headers)


def keyset_paginate(
    req: Request,
    items: list[Any],
    serialize: Callable[[Any], Any],
    key: Callable[[Any], int],
    descending: bool,
) -> Response:
    """Keyset pagination on an integer key: only a `Link rel="next"` with `id_after`/`id_before`."""
    _, per_page = page_params(req)
    chunk = items[:per_page]
    headers: dict[str, str] = {}
    if len(items) > per_page and chunk:
        cursor = "id_before" if descending else "id_after"
        url = _link_url(
            req,
            {cursor: key(chunk[-1]), "per_page": per_page},
            drop=("page", "id_after", "id_before"),
        )
        headers["Link"] = f'<{url}>; rel="next"'
    return Response(200, [serialize(item) for item in chunk], headers)


def json_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """Parse a JSON or form body into params; 400 for malformed JSON."""
    if not raw:
        return {}
    if "json" in content_type:
        try:
            data = json.loads(raw)
        except ValueError:
            raise bad_request_error(
                "The provided content-type 'application/json' is not valid JSON"
            ) from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise bad_request_error("body must be a JSON object")
        return data
    if "x-www-form-urlencoded" in content_type:
        return parse_query(raw.decode("utf-8", "replace"))
    return {}
