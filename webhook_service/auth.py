"""Who is calling: every API and UI request resolves its caller through GitLab, once.

The resolver lives on the application (built from the settings at start-up); the caller of
the current request is memoised on `g`. Nothing here decides what a caller may read — that
is `indexer.search.Viewer.can_read`, used by every route.
"""

from __future__ import annotations

from flask import Flask, current_app, g, request

from dshub.config import Settings
from indexer.errors import NotAuthenticated
from indexer.gitlab_reader import GitLabReader
from indexer.permissions import (
    PermissionResolver,
    generation_for,
    token_from_headers,
)
from indexer.search import Viewer
from webhook_service.gitlab_access import request_reader

EXTENSION = "dshub.permissions"


def init_app(app: Flask, settings: Settings) -> None:
    """Attach a `PermissionResolver` talking to the configured GitLab (never another host)."""

    def reader_for_token(token: str) -> GitLabReader:
        return request_reader(settings, token)

    app.extensions[EXTENSION] = PermissionResolver(
        reader_for_token, generation_for(settings.redis_url, settings.data_dir)
    )


def current_viewer() -> Viewer:
    """The caller of the current request; raises `NotAuthenticated` for a token GitLab refuses."""
    cached: Viewer | None = g.get("dshub_viewer")
    if cached is not None:
        return cached
    token = token_from_headers(dict(request.headers), dict(request.cookies))
    resolver: PermissionResolver = current_app.extensions[EXTENSION]
    try:
        viewer = resolver.resolve(token)
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
    resolver: PermissionResolver = current_app.extensions[EXTENSION]
    if token:
        resolver.forget(token)
    g.pop("dshub_viewer", None)
    return current_viewer()
