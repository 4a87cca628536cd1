"""The web UI: server-rendered Jinja2 pages over the functions the REST API uses.

Pages live under `/` (datasets), `/datasets/<full_path>[/-/tree|blob/<path>|/-/versions]`
(GitLab-style, so they cannot collide with `/api`, `/dvc`, `/webhooks`, `/metrics` or
`/static`) and `/-/...` (sign-in, storage sites, help). Templates are in
`webhook_service/templates/ui/`, CSS and the one small script in `webhook_service/static/ui/`
(no build step; pages work without JavaScript except copy-to-clipboard). Every UI response
carries a Content-Security-Policy without inline scripts; errors on UI pages (and on unknown
URLs a browser asks for) are pages in the site's style, not JSON.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template, request
from flask.typing import ResponseReturnValue

from webhook_service.app_settings import settings_of
from webhook_service.errors import PAGE_RENDERER
from webhook_service.ui import formatting

blueprint = Blueprint("ui", __name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Paths whose unknown URLs stay JSON even for a browser: they are API surfaces.
_API_PREFIXES = ("/api/", "/dvc/", "/webhooks", "/metrics", "/healthz", "/readyz", "/ops")

_TITLES = {
    400: "That request could not be understood",
    401: "Sign in to continue",
    403: "You cannot do that here",
    404: "Page not found",
    405: "That action is not allowed here",
    413: "That is too large",
    503: "A service dshub needs is not reachable",
}


def is_page_request() -> bool:
    """True when an error should be answered as a page: a UI route, or a browser asking for
    an unknown URL outside the API surfaces."""
    if request.blueprint == blueprint.name:
        return True
    if request.url_rule is not None or request.path.startswith(_API_PREFIXES):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def render_error(code: str, message: str, status: int) -> ResponseReturnValue | None:
    """The error page for a UI request, or None to let the JSON answer stand."""
    if not is_page_request():
        return None
    if status >= 500 and code == "internal_error":
        message = "Something went wrong on our side. The operator's log has the details."
    title = _TITLES.get(status, "Something went wrong" if status >= 500 else "That did not work")
    page = render_template("ui/error.html", status=status, code=code, title=title, message=message)
    return page, status


def _security_headers(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "private, no-cache")
    return response


def init_app(app: Flask) -> None:
    """Register the UI's routes, template helpers, error pages and security headers."""
    from webhook_service.ui import (  # noqa: F401 (routes)
        browse,
        datasets,
        manage,
        new_project,
        oauth,
        session,
        sites,
        upload,
        versions,
    )

    app.register_blueprint(blueprint)
    # The signed session only holds the user name shown in the header; keep it first-party.
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = settings_of(app).public_url.startswith("https:")
    app.extensions[PAGE_RENDERER] = render_error
    app.after_request(_security_headers)
    env = app.jinja_env
    env.filters.update(
        human_size=formatting.human_size,
        short_sha=formatting.short_sha,
        date_text=formatting.date_text,
        quote_path=formatting.quote_path,
    )
    env.globals.update(
        count=formatting.count,
        highlighted=formatting.highlighted,
        with_query=formatting.with_query,
        is_image=formatting.is_image,
        breadcrumbs=formatting.breadcrumbs,
        page_window=formatting.page_window,
        current_user=session.current_user,
        oauth_enabled=lambda: settings_of(app).oauth_enabled,
        dataset_role=manage.role,
        return_to=lambda: formatting.return_path(request.path, request.args.items(multi=True)),
    )
