"""The one place where errors become HTTP answers: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

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
