"""The sandbox's WSGI application: authentication, fault knobs, routing and error mapping."""

from __future__ import annotations

import importlib
import json
import logging
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request as WzRequest

from tests.gitlab_sandbox.api_oauth import user_for_access_token
from tests.gitlab_sandbox.faults import Faults
from tests.gitlab_sandbox.http import (
    ApiError,
    Request,
    Response,
    json_body,
    parse_query,
    router,
    unauthorized,
)
from tests.gitlab_sandbox.state import SandboxState, User

log = logging.getLogger("gitlab_sandbox")

# Modules whose @router.route registrations make up the API.
CORE_MODULES = (
    "tests.gitlab_sandbox.api_sandbox",
    "tests.gitlab_sandbox.api_users",
    "tests.gitlab_sandbox.api_groups",
    "tests.gitlab_sandbox.api_projects",
    "tests.gitlab_sandbox.api_members",
    "tests.gitlab_sandbox.api_hooks",
    "tests.gitlab_sandbox.api_variables",
    "tests.gitlab_sandbox.api_jobs",
    "tests.gitlab_sandbox.api_job_token_scope",
    "tests.gitlab_sandbox.api_merge_requests",
    "tests.gitlab_sandbox.api_releases",
    "tests.gitlab_sandbox.api_oauth",
)
# Owned by the sandbox-repository helper; optional until they exist.
OPTIONAL_MODULES = ("tests.gitlab_sandbox.repository_api",)

StartResponse = Callable[..., Any]


def load_routes() -> None:
    """Import every API module so its routes are registered on the shared router."""
    for name in CORE_MODULES:
        importlib.import_module(name)
    for name in OPTIONAL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


class SandboxApp:
    """WSGI callable serving the REST API, the `/-/` control endpoints and git smart HTTP."""

    def __init__(self, state: SandboxState, faults: Faults) -> None:
        load_routes()
        self.state = state
        self.faults = faults
        self.git_app = _git_http_app(state)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        raw_path = raw.split("?", 1)[0]
        if raw_path.startswith(("http://", "https://")):
            raw_path = "/" + raw_path.split("/", 3)[-1]
        if self.git_app is not None and _is_git_path(raw_path):
            result: Iterable[bytes] = self.git_app(environ, start_response)
            return result
        response = self.handle(environ, raw_path)
        headers = [("Content-Type", response.content_type), *response.headers.items()]
        if response.stream is None:
            headers.append(("Content-Length", str(len(response.body))))
        start_response(f"{response.status} {_reason(response.status)}", headers)
        if environ.get("REQUEST_METHOD") == "HEAD":
            return [b""]
        return response.stream if response.stream is not None else [response.body]

    def handle(self, environ: dict[str, Any], raw_path: str) -> Response:
        """Answer one request (never raises: errors become GitLab-shaped responses)."""
        wz = WzRequest(environ)
        method = wz.method.upper()
        try:
            if raw_path.startswith("/api/v4"):
                failure = self.faults.apply(method, raw_path)
                if failure is not None:
                    return failure
            matched = router.match(method, raw_path)
            if matched is None:
                return self._unrouted(raw_path)
            handler, path_params = matched
            req = self._request(wz, method, raw_path, path_params, environ)
            return handler(req)
        except ApiError as exc:
            return Response(exc.status, exc.body, exc.headers)
        except Exception:
            log.error("sandbox error on %s %s\n%s", method, raw_path, traceback.format_exc())
            return Response(500, {"message": "500 Internal Server Error"})

    def _unrouted(self, raw_path: str) -> Response:
        if raw_path.startswith("/api/"):
            return Response(404, {"error": "404 Not Found"})
        return Response(404, "404 Not Found\n", None, "text/plain")

    def _request(
        self,
        wz: WzRequest,
        method: str,
        raw_path: str,
        path_params: dict[str, str],
        environ: dict[str, Any],
    ) -> Request:
        query = parse_query(environ.get("QUERY_STRING", ""))
        body = wz.get_data(cache=True)
        content_type = wz.headers.get("Content-Type", "")
        params: dict[str, Any] = {**query}
        if method not in ("GET", "HEAD") or body:
            params.update(json_body(body, content_type))
        params.update(path_params)
        headers = {k.lower(): v for k, v in wz.headers.items()}
        return Request(
            method=method,
            raw_path=raw_path,
            path_params=path_params,
            params=params,
            query=query,
            headers=headers,
            body=body,
            # The OAuth endpoints read their own credentials (and answer OAuth-shaped errors).
            user=None if raw_path.startswith("/oauth/") else self._authenticate(headers, query),
            state=self.state,
            base_url=self.state.base_url,
            environ=environ,
        )

    def _authenticate(self, headers: dict[str, str], query: dict[str, Any]) -> User | None:
        """PRIVATE-TOKEN, `Authorization: Bearer` or `private_token`; a bad token is 401. An
        OAuth access token counts only as Bearer (GitLab refuses it as PRIVATE-TOKEN)."""
        secret = headers.get("private-token")
        auth = headers.get("authorization", "")
        if not secret and auth.lower().startswith("bearer "):
            is_oauth, oauth_user = user_for_access_token(self.state, auth[7:].strip())
            if is_oauth:
                if oauth_user is None:
                    raise unauthorized()
                return oauth_user
            secret = auth[7:].strip()
        elif secret and user_for_access_token(self.state, secret)[0]:
            raise unauthorized()
        if not secret and isinstance(query.get("private_token"), str):
            secret = query["private_token"]
        if not secret:
            return None
        user = self.state.user_for_token(secret)
        if user is None:
            raise unauthorized()
        return user


def _is_git_path(raw_path: str) -> bool:
    return ".git/" in raw_path or raw_path.endswith(".git")


def _git_http_app(state: SandboxState) -> Callable[..., Iterable[bytes]] | None:
    """The repository helper's smart-HTTP WSGI app, when `git_http.py` exists."""
    try:
        git_http = importlib.import_module("tests.gitlab_sandbox.git_http")
    except ModuleNotFoundError as exc:
        if exc.name != "tests.gitlab_sandbox.git_http":
            raise
        return None
    factory = getattr(git_http, "make_app", None)
    if factory is None:
        return None
    app: Callable[..., Iterable[bytes]] = factory(state)
    return app


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _reason(status: int) -> str:
    return _REASONS.get(status, "Unknown")


def error_json(status: int, message: str) -> bytes:
    """A `{"message": ...}` body (for callers outside the router)."""
    return json.dumps({"message": message}).encode()
