"""Who is calling: every API and UI request resolves its caller through GitLab, once.

The resolver lives on the application (built from the settings at start-up); the caller of
the current request is memoised on `g`. Nothing here decides what a caller may read — that
is `indexer.search.Viewer.can_read`, used by every route.
"""

from __future__ import annotations

from flask import Flask, current_app, g, request

from dshub.config import Settings
from indexer.errors import NotAuthenticated, Unavailable
from indexer.gitlab_reader import GitLabReader
from indexer.permissions import (
    PermissionResolver,
    generation_for,
    token_from_headers,
)
from indexer.search import Viewer

EXTENSION = "dshub.permissions"


def init_app(app: Flask, settings: Settings) -> None:
    """Attach a `PermissionResolver` talking to the configured GitLab (never another host)."""
    gitlab_url = settings.gitlab_url

    def reader_for_token(token: str) -> GitLabReader:
        if gitlab_url is None:
            raise Unavailable("no GitLab is configured (DSHUB_GITLAB_URL); sign-in is unavailable")
        return GitLabReader(gitlab_url, token, timeout=10, max_retries=1, obey_rate_limit=False)

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
