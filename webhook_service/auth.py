"""Who is calling: every API and UI request resolves its caller through GitLab, once.

The resolver is the process's (`services().permissions`); the caller of
the current request is memoised on `g`. Nothing here decides what a caller may read — that
is `indexer.read.search.Viewer.can_read`, used by every route.
"""

from __future__ import annotations

from flask import g, request

from indexer.errors import NotAuthenticated
from indexer.gitlab.permissions import token_from_headers
from indexer.read.search import Viewer
from webhook_service.app_settings import services


def current_viewer() -> Viewer:
    """The caller of the current request; raises `NotAuthenticated` for a token GitLab refuses."""
    cached: Viewer | None = g.get("dshub_viewer")
    if cached is not None:
        return cached
    token = token_from_headers(dict(request.headers), dict(request.cookies))
    try:
        viewer = services().permissions.resolve(token)
    except NotAuthenticated:
        raise NotAuthenticated(
            "GitLab did not accept this token; sign in again or create a new personal access token"
        ) from None
    g.dshub_viewer = viewer
    return viewer


def refresh_viewer() -> Viewer:
    """Forget the caller's cached permissions and ask GitLab again (after a write of theirs,
    so their next read — this one included — sees what they just created or changed)."""
    token = token_from_headers(dict(request.headers), dict(request.cookies))
    if token:
        services().permissions.forget(token)
    g.pop("dshub_viewer", None)
    return current_viewer()
