"""Who may read and write a dataset's objects through dshub's DVC remote (proxy mode).

GitLab decides, never the search index (a new dataset pushes its bytes before dshub has
indexed it): a person's token is checked with `GET /user` and `GET /projects/:id` (plus
`members/all/:user_id` for memberships inherited from groups), a CI job token with
`GET /job`. The rules are GitLab's own for the repository: read = the project is public,
internal (any signed-in user) or private with Reporter or more; write = Developer or more
(who may push), administrators, or a running job of the project itself. A running job of
another project may read exactly when GitLab lets its token fetch the dataset's repository
(`job_tokens.job_token_fetches`: the allowlist and the job user's role are GitLab's to apply;
the job token scope API would need the Maintainer role and miss the user's role, group
allowlists and instance settings); it never writes. A `dvc push` of a
thousand files makes thousands of requests, so each decision is cached per hash of the
token and project for a short time (`permissions.TokenCache`, dropped early on membership
and visibility events); no token is kept, and concurrent misses for one key ask GitLab once.
A refused job token of another project is cached too (a `dvc pull` asks per object), so an
allowlist change (which sends no webhook) takes effect within the cache's TTL.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from indexer.errors import NotAuthenticated
from indexer.gitlab.job_tokens import (
    JOB_TOKEN_USER,
    JobIdentity,
    job_token_from_headers,
    wrong_project,
)
from indexer.gitlab.permissions import (
    DEFAULT_TTL,
    Generation,
    TokenCache,
    token_from_headers,
    token_key,
)
from indexer.gitlab.reader import REPORTER, GitLabReader
from indexer.gitlab.tokens import header_safe

DEVELOPER = 30


@dataclass(frozen=True)
class Credential:
    """What a request authenticates with: a person's GitLab token or a CI job token."""

    kind: str  # "user" | "job"
    token: str = field(repr=False)


@dataclass(frozen=True)
class Grant:
    """What one caller may do with one dataset's objects. `visible` False means the caller
    may not even know the project exists (answered like a missing one)."""

    who: str  # "anonymous", "user <id>", "job <id>" — for logs
    visible: bool
    read: bool
    write: bool
    anonymous: bool = False
    foreign_job: bool = False  # a job token of another project that GitLab does not let in


def credential_from_headers(
    headers: Mapping[str, str], cookies: Mapping[str, str] | None = None
) -> Credential | None:
    """The request's credential: `JOB-TOKEN`, HTTP Basic (user `gitlab-ci-token` = job token,
    any other user = personal token as password, like GitLab's `oauth2:<token>`), then what the
    API takes (`PRIVATE-TOKEN`, `Authorization: Bearer`, cookie `tokenGitLab`). None when
    there is none; `NotAuthenticated` for a malformed one."""
    job = job_token_from_headers(headers)
    if job:
        return Credential("job", job)
    lowered = {key.lower(): value for key, value in headers.items()}
    authorization = lowered.get("authorization", "").strip()
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "basic":
        user, password = _basic(value.strip())
        return Credential(
            "job" if user == JOB_TOKEN_USER else "user",
            header_safe(password, "the HTTP Basic password"),
        )
    token = token_from_headers(dict(headers), dict(cookies or {}))
    return Credential("user", token) if token else None


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise NotAuthenticated("Authorization: Basic must carry base64 of 'user:token'") from None
    user, colon, password = decoded.partition(":")
    if not colon or not password:
        raise NotAuthenticated(
            "HTTP Basic auth needs your GitLab token as the password (any user name), or "
            f"'{JOB_TOKEN_USER}' and the CI job token"
        )
    return user, password


class RemoteAccess:
    """Decides `Grant`s through GitLab and caches them per (token hash, project)."""

    def __init__(
        self,
        reader_for_token: Callable[[str | None], GitLabReader],
        verify_job: Callable[[str], JobIdentity],
        generation: Generation,
        *,
        job_fetches: Callable[[str, int], bool] | None = None,
        ttl: float = DEFAULT_TTL,
    ) -> None:
        """`job_fetches(token, project_id)`: whether GitLab lets a job token fetch the
        project's repository (None: another project's job token is always refused)."""
        self.reader_for_token = reader_for_token
        self.verify_job = verify_job
        self.job_fetches = job_fetches
        self._cache: TokenCache[Grant] = TokenCache(generation, ttl=ttl)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def grant(self, credential: Credential | None, project_id: int) -> Grant:
        """What the caller may do with dataset `project_id`'s objects.

        Raises `NotAuthenticated` when GitLab refuses the token (or the job has ended),
        `job_tokens.WrongProject` for another project's job token GitLab does not let fetch
        the dataset's repository, `Unavailable` when GitLab cannot answer."""
        if credential is None:
            key = token_key("", f"anonymous:{project_id}")
        else:
            key = token_key(credential.token, f"{credential.kind}:{project_id}")
        found, generation = self._cache.get(key)
        if found is None:
            with self._lock_for(key):
                found, generation = self._cache.get(key)
                if found is None:
                    found = self._ask_gitlab(credential, project_id)
                    self._cache.put(key, found, generation)
        if found.foreign_job:
            raise wrong_project()
        return found

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            if len(self._locks) > 10_000:
                # Locks are only for collapsing concurrent misses; dropping idle ones is safe.
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault(key, threading.Lock())

    def _ask_gitlab(self, credential: Credential | None, project_id: int) -> Grant:
        if credential is None:
            access = self.reader_for_token(None).project_access(project_id, None)
            public = access is not None and access.visibility == "public"
            return Grant("anonymous", public, public, False, anonymous=True)
        if credential.kind == "job":
            return self._job_grant(credential.token, project_id)
        reader = self.reader_for_token(credential.token)
        user = reader.current_user()
        who = f"user {user.id}"
        access = reader.project_access(project_id, user.id, enough=DEVELOPER)
        if access is None:
            return Grant(who, False, False, False)
        if user.is_admin:
            return Grant(who, True, True, True)
        read = access.visibility in ("public", "internal") or access.level >= REPORTER
        return Grant(who, True, read, access.level >= DEVELOPER)

    def _job_grant(self, token: str, project_id: int) -> Grant:
        """A running job's grant: everything on its own project; elsewhere read when GitLab
        lets the token fetch the repository, else the `foreign_job` refusal."""
        job = self.verify_job(token)
        who = f"job {job.job_id}"
        if job.project_id == project_id:
            return Grant(who, True, True, True)
        if self.job_fetches is not None and self.job_fetches(token, project_id):
            return Grant(f"{who} of project {job.project_id}", True, True, False)
        return Grant(who, False, False, False, foreign_job=True)
