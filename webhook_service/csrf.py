"""One CSRF rule for every state-changing request a cookie authenticates.

A browser sends the `tokenGitLab` cookie (or the `dshub_oauth` session cookie) on its own, so any POST/PUT/PATCH/DELETE that the
cookie would authenticate — API routes, `/dvc/<id>` uploads, the UI's forms, and every route
added later — must prove it came from one of our pages. Checked once, before routing reaches
a view (`before_request`), so no route can forget it:

- **same origin**: `Sec-Fetch-Site` (when the browser sends it) must be `same-origin` or
  `none`, and `Origin` (when sent) must be this service's origin (the request's host or
  `DSHUB_PUBLIC_URL`);
- **a CSRF token** in the form field `csrf_token` or the `X-CSRF-Token` header: an HMAC with
  `DSHUB_SECRET_KEY` of what the browser authenticates with (the `tokenGitLab` cookie, or
  before sign-in a random `dshub_csrf` cookie), so it is worthless to anyone without that
  cookie and needs no server-side state;
- **JSON routes** (`/api/...`) need `Content-Type: application/json` (a `PUT` of raw bytes
  may say `application/octet-stream`), which a cross-site HTML form cannot send.

Requests that carry their own credential in a header (`PRIVATE-TOKEN`, `Authorization:
Bearer|Basic`, `JOB-TOKEN`) are not cookie-authenticated and pass untouched: a page on
another site cannot make the browser add those headers. The UI's own forms (sign-in before
any `tokenGitLab` exists) are always checked, which also stops login CSRF.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, request

from indexer.errors import DshubError
from webhook_service.app_settings import settings_of

SESSION_COOKIE = "tokenGitLab"
OAUTH_COOKIE = "dshub_oauth"  # the opaque id of a "Sign in with GitLab" session
ANONYMOUS_COOKIE = "dshub_csrf"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
HEADER_CREDENTIALS = ("PRIVATE-TOKEN", "Authorization", "JOB-TOKEN")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
UI_BLUEPRINT = "ui"


class CsrfRefused(DshubError):
    """A cookie-authenticated state change that did not prove it came from our own pages."""

    status = 403
    code = "csrf_refused"
    exit_code = 4


def header_authenticated() -> bool:
    """True when the request names its credential in a header (the cookie is then unused)."""
    return any(request.headers.get(name, "").strip() for name in HEADER_CREDENTIALS)


def needs_check() -> bool:
    """True for a state-changing request that the `tokenGitLab` cookie would authenticate, and
    for every state-changing request to the UI's own forms."""
    if request.method in SAFE_METHODS or header_authenticated():
        return False
    signed_in = SESSION_COOKIE in request.cookies or OAUTH_COOKIE in request.cookies
    return signed_in or request.blueprint == UI_BLUEPRINT


def _binding() -> str | None:
    """What the token is bound to: the sign-in cookie (a token, or an OAuth session's id),
    else the pre-sign-in random cookie."""
    return (
        request.cookies.get(SESSION_COOKIE)
        or request.cookies.get(OAUTH_COOKIE)
        or request.cookies.get(ANONYMOUS_COOKIE)
    )


def token_for(binding: str, secret: str) -> str:
    """The CSRF token of one cookie value (hex HMAC-SHA256 under the service's secret key)."""
    digest = hashlib.sha256(binding.encode("utf-8")).digest()
    return hmac.new(secret.encode("utf-8"), b"dshub-csrf\x00" + digest, hashlib.sha256).hexdigest()


def csrf_token() -> str:
    """The token the current page's forms carry (a Jinja global). Before sign-in it creates
    the random `dshub_csrf` cookie the token is bound to (set on the response)."""
    binding = _binding() or g.get("dshub_csrf_nonce")
    if binding is None:
        binding = g.dshub_csrf_nonce = secrets.token_urlsafe(32)
    return token_for(binding, current_app.config["SECRET_KEY"])


def _allowed_origins() -> set[str]:
    public = urlsplit(settings_of(current_app).public_url)
    return {
        request.host_url.rstrip("/").lower(),
        f"{public.scheme}://{public.netloc}".lower(),
    }


def check() -> None:
    """Refuse (403 `csrf_refused`) a request `needs_check` selects unless it passes the rule."""
    if not needs_check():
        return
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise CsrfRefused(
            f"refused a {fetch_site} request: changes authenticated by the sign-in cookie must "
            "come from dshub's own pages (API clients: send your token in a PRIVATE-TOKEN header)"
        )
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/").lower() not in _allowed_origins():
        raise CsrfRefused(
            "refused a request from another origin: changes authenticated by the sign-in cookie "
            "must come from dshub's own pages"
        )
    if request.path.startswith("/api/") and not _api_type_allowed():
        raise CsrfRefused(
            "a cookie-authenticated API request must send Content-Type: application/json "
            "(or authenticate with a PRIVATE-TOKEN header)"
        )
    binding = _binding()
    sent = request.headers.get(HEADER) or _form_token()
    if not binding or not sent:
        raise CsrfRefused(
            "the CSRF token is missing: reload the page and try again "
            f"(scripts send it in the {HEADER} header)"
        )
    if not hmac.compare_digest(sent, token_for(binding, current_app.config["SECRET_KEY"])):
        raise CsrfRefused("the CSRF token does not match your session: reload the page and retry")


def _api_type_allowed() -> bool:
    """JSON, or the raw bytes of a PUT (upload sessions): an HTML form sends neither."""
    if request.mimetype == "application/json":
        return True
    return request.method == "PUT" and request.mimetype == "application/octet-stream"


def _form_token() -> str | None:
    # Only form bodies are parsed: an upload's bytes are never read here.
    if request.mimetype not in FORM_TYPES:
        return None
    value = request.form.get(FORM_FIELD)
    return value or None


def _set_anonymous_cookie(response: Response) -> Response:
    nonce = g.get("dshub_csrf_nonce")
    if nonce is not None:
        response.set_cookie(
            ANONYMOUS_COOKIE,
            nonce,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure,
            path="/",
        )
    return response


def init_app(app: Flask) -> None:
    """Enforce the rule before every request and offer `csrf_token()` to templates."""
    app.before_request(check)
    app.after_request(_set_anonymous_cookie)
    app.jinja_env.globals["csrf_token"] = csrf_token
