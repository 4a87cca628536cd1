"""Signing in and out of the web UI with a GitLab personal access token.

The token is checked with GitLab (`GET /user`) before it is kept, then lives only in the
`tokenGitLab` cookie (HttpOnly, SameSite=Lax, Secure over HTTPS) — the cookie every API route
already accepts, so pages, thumbnails and downloads authenticate alike. No page, URL or log
line ever holds it; the header shows the user name, kept in Flask's signed session next to a
hash of the token it belongs to. Both forms are POSTs under the CSRF rule
(`webhook_service.csrf`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import redirect, render_template, request, session
from flask.typing import ResponseReturnValue

from indexer.errors import DshubError, NotAuthenticated
from indexer.gitlab.permissions import token_key
from webhook_service.app_settings import services
from webhook_service.auth import current_viewer
from webhook_service.csrf import OAUTH_COOKIE, SESSION_COOKIE
from webhook_service.ui import blueprint

COOKIE_AGE = timedelta(days=7)
MAX_TOKEN_CHARS = 512


@dataclass(frozen=True)
class SignedIn:
    """Who the header shows; `username` is None when the session does not know the name;
    `oauth` when they signed in with GitLab (not with a personal access token)."""

    username: str | None
    oauth: bool = False


def current_user() -> SignedIn | None:
    """The signed-in user of this request as the header shows it (None: anonymous)."""
    from webhook_service.ui.oauth import oauth_session  # the OAuth routes import this module

    record = oauth_session()
    if record is not None:
        return SignedIn(username=record.username, oauth=True)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    if session.get("token") == token_key(token)[:32] and session.get("username"):
        return SignedIn(username=session["username"])
    # A cookie set elsewhere (a fresh browser, curl -b): the viewer GitLab resolved for this
    # request knows the name (the permission cache holds it; no extra GitLab call).
    try:
        return SignedIn(username=current_viewer().username)
    except DshubError:
        return SignedIn(username=None)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never `//host` or a URL)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def secure_cookies() -> bool:
    """True when sign-in cookies must be `Secure` (served, or publicly reached, over HTTPS)."""
    return request.is_secure or services().settings.public_url.startswith("https:")


@blueprint.get("/-/sign-in")
def sign_in_form() -> ResponseReturnValue:
    """The sign-in page: paste a GitLab personal access token (or, when configured, sign in
    with GitLab)."""
    return render_template("ui/sign_in.html", next=safe_next(request.args.get("next")))


@blueprint.post("/-/sign-in")
def sign_in() -> ResponseReturnValue:
    """Check the token with GitLab, keep it in the cookie, and go back where the user was."""
    token = (request.form.get("token") or "").strip()
    target = safe_next(request.form.get("next"))
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isprintable():
        return _refused("Paste a GitLab personal access token (it has the read_api scope).")
    try:
        user = services().request_reader(token).current_user()
    except NotAuthenticated:
        return _refused(
            "GitLab did not accept this token. Check that it is not expired or revoked, "
            "and that it has the read_api scope."
        )
    response = redirect(target, code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(COOKIE_AGE.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(),
        path="/",
    )
    session["token"] = token_key(token)[:32]
    session["username"] = user.username
    return response


def _refused(message: str) -> ResponseReturnValue:
    page = render_template("ui/sign_in.html", next="/", error=message)
    return page, 401


@blueprint.post("/-/sign-out")
def sign_out() -> ResponseReturnValue:
    """Forget the token (cookie, session and the permission cache) and show the datasets; a
    "Sign in with GitLab" session is revoked at GitLab as well."""
    from webhook_service.ui.oauth import sign_out_oauth

    token = request.cookies.get(SESSION_COOKIE)
    if token:
        services().permissions.forget(token)
    sign_out_oauth()
    session.clear()
    response = redirect("/", code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax")
    response.delete_cookie(OAUTH_COOKIE, path="/", httponly=True, samesite="Lax")
    return response
