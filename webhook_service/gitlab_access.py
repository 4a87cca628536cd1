"""GitLab clients for request paths: one place decides timeouts and retries.

A request must not hang on GitLab: one retry of a transient error, and a 429 answers 503
at once instead of sleeping through `Retry-After` while the caller waits.
"""

from __future__ import annotations

from dshub.config import Settings
from indexer.errors import Unavailable
from indexer.gitlab_reader import GitLabReader


def request_reader(settings: Settings, token: str | None) -> GitLabReader:
    """A reader of the configured GitLab with `token`, tuned for use inside a request."""
    if settings.gitlab_url is None:
        raise Unavailable("no GitLab is configured (DSHUB_GITLAB_URL)")
    return GitLabReader(
        settings.gitlab_url, token, timeout=10, max_retries=1, obey_rate_limit=False
    )


def service_reader(settings: Settings) -> GitLabReader:
    """`request_reader` with dshub's own service token."""
    return request_reader(settings, settings.gitlab_token)
