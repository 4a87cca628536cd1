"""Who is calling: every API and UI request resolves its caller through GitLab, once.

The resolver is the process's (`services().permissions`); the caller of
the current request is memoised on `g`. Nothing here decides what a caller may read — that
is `indexer.read.search.Viewer.can_read`, used by every route.
"""

from __future__ import annotations

from flask import current_app, g, request

from indexer.errors import NotAuthenticated
from indexer.gitlab.permissions import token_from_headers
from indexer.gitlab.tokens import OAuthToken, is_oauth
from indexer.read.search import Viewer
from webhook_service.app_settings import services
from webhook_service.csrf import OAUTH_COOKIE
from webhook_service.oauth_sessions import sessions_of


def request_token() -> str | None:
    """The GitLab token the current request acts with: a header credential (`PRIVATE-TOKEN`,
    `Authorization: Bearer`), else the access token of the "Sign in with GitLab" session the
    `dshub_oauth` cookie names (an `OAuthToken`, refreshed when due), else the `tokenGitLab`
    cookie. Memoised on `g` for the request."""
    if "dshub_token" in g:
        known: str | None = g.dshub_token
        return known
    token = token_from_headers(dict(request.headers))
    if token is None:
        session_id = request.cookies.get(OAUTH_COOKIE)
        sessions = sessions_of(current_app)
        if session_id and sessions is not None:
            token = sessions.access_token(session_id)
    if token is None:
        token = token_from_headers(None, dict(request.cookies))
    g.dshub_token = token
    return token


def _refreshed(token: str | None) -> OAuthToken | None:
    """After GitLab refused an OAuth session's access token: a fresh one (None: not OAuth,
    or the session can no longer be refreshed)."""
    session_id = request.cookies.get(OAUTH_COOKIE)
    sessions = sessions_of(current_app)
    if not is_oauth(token) or not session_id or sessions is None or token is None:
        return None
    services().permissions.forget(token)
    fresh = sessions.refresh(session_id, token)
    g.dshub_token = fresh
    return fresh


def current_viewer() -> Viewer:
    """The caller of the current request; raises `NotAuthenticated` for a token GitLab refuses."""
    cached: Viewer | None = g.get("dshub_viewer")
    if cached is not None:
        return cached
    token = request_token()
    try:
        viewer = services().permissions.resolve(token)
    except NotAuthenticated:
        fresh = _refreshed(token)
        if fresh is None:
            raise NotAuthenticated(
                "GitLab did not accept this token; sign in again or create a new personal "
                "access token"
            ) from None
        viewer = services().permissions.resolve(fresh)
    g.dshub_viewer = viewer
    return viewer


def refresh_viewer() -> Viewer:
    """Forget the caller's cached permissions and ask GitLab again (after a write of theirs,
    so their next read — this one included — sees what they just created or changed)."""
    token = request_token()
    if token:
        services().permissions.forget(token)
    g.pop("dshub_viewer", None)
    return current_viewer()
