"""The one place where errors become HTTP answers: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from indexer.errors import DshubError

log = logging.getLogger("dshub.http")
# An optional page renderer (the UI's): (code, message, status) -> a page, or None for JSON.
PAGE_RENDERER = "dshub.error_pages"
PageRenderer = Callable[[str, str, int], ResponseReturnValue | None]


def _body(code: str, message: str, status: int) -> ResponseReturnValue:
    render: PageRenderer | None = current_app.extensions.get(PAGE_RENDERER)
    if render is not None:
        page = render(code, message, status)
        if page is not None:
            return page
    return jsonify(error={"code": code, "message": message}), status


def register(app: Flask) -> None:
    """Map our exceptions, werkzeug's HTTP errors and anything unexpected to JSON answers."""

    @app.before_request
    def _relative_redirect() -> ResponseReturnValue | None:
        # werkzeug's routing redirects (`/api//v1` to `/api/v1`) build an absolute Location
        # from the Host header, which the client chose; Flask returns them without calling
        # error handlers. Answer them here with a path on this server instead.
        redirect = request.routing_exception
        if isinstance(redirect, RequestRedirect):
            return relative_redirect(redirect)
        return None

    @app.errorhandler(DshubError)
    def _dshub_error(exc: DshubError) -> ResponseReturnValue:
        return _body(exc.code, exc.message, exc.status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        status = exc.code or 500
        name = (exc.name or "error").lower().replace(" ", "_")
        return _body(name, exc.description or exc.name or "error", status)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        # Logged with the traceback for operators; the client gets no internals.
        log.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return _body("internal_error", "internal error; the operator's log has details", 500)


def relative_redirect(redirect: RequestRedirect) -> Response:
    """`redirect` with a Location that is a path on this server, never another host: one
    leading slash (`//host` would be protocol-relative), the query string kept."""
    target = urlsplit(redirect.new_url)
    location = "/" + target.path.lstrip("/") + (f"?{target.query}" if target.query else "")
    return Response(status=redirect.code, headers={"Location": location})
