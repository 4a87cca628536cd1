"""CI job tokens: which running job (and so which project) a `CI_JOB_TOKEN` belongs to.

GitLab is the only authority: dshub asks `GET /api/v4/job` with the token in the `JOB-TOKEN`
header. GitLab answers only while the job runs (401 afterwards); the job's project is
`pipeline.project_id` (the job's own `project` object carries no id). The token itself is
never logged, stored or echoed.

Whether a job token of one project may read another project's repository (the target's CI/CD
job token allowlist, its "Limit access" setting, group allowlists, the job's user's own role,
instance settings) is GitLab's decision too: `job_token_fetches` asks it by the very request
a `git fetch` starts with, `info/refs?service=git-upload-pack` as `gitlab-ci-token`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gitlab
import requests

from indexer.errors import DshubError, NotAuthenticated, Unavailable
from indexer.gitlab.tokens import header_safe

# The user name GitLab runners send with CI_JOB_TOKEN over HTTP (a name, not a secret).
JOB_TOKEN_USER = "gitlab-ci-token"  # noqa: S105


class WrongProject(DshubError):
    """A job token of one project used on another project's dataset."""

    status = 403
    code = "forbidden"
    exit_code = 4


@dataclass(frozen=True)
class JobIdentity:
    """The running job a token belongs to."""

    job_id: int
    project_id: int
    user_id: int | None
    username: str | None
    ref: str | None


def job_token_from_headers(headers: Mapping[str, str]) -> str | None:
    """The `JOB-TOKEN` header's token (None when absent or blank); `NotAuthenticated` when it
    is not header-safe (`tokens.header_safe`)."""
    for key, value in headers.items():
        if key.lower() == "job-token" and value.strip():
            return header_safe(value.strip(), "the JOB-TOKEN header")
    return None


def verify_job_token(gitlab_url: str, token: str, *, timeout: float = 10.0) -> JobIdentity:
    """The running job owning `token`; raises `NotAuthenticated` when GitLab refuses it."""
    header_safe(token, "the CI job token")
    client = gitlab.Gitlab(gitlab_url, job_token=token, timeout=timeout, keep_base_url=True)
    try:
        job: Any = client.http_get("/job", max_retries=1, obey_rate_limit=False)
    except gitlab.exceptions.GitlabAuthenticationError:
        raise NotAuthenticated(
            "GitLab did not accept this CI job token (the job has finished, or the token is wrong)"
        ) from None
    except gitlab.exceptions.GitlabError as exc:
        raise Unavailable(
            f"GitLab could not check the CI job token ({exc.response_code or 'no answer'})"
        ) from None
    except requests.RequestException as exc:
        raise Unavailable(f"GitLab is unreachable ({type(exc).__name__})") from None
    try:
        pipeline = job["pipeline"]
        user = job.get("user") or {}
        if job.get("status") != "running":
            raise NotAuthenticated("this CI job token belongs to a job that is not running")
        return JobIdentity(
            job_id=int(job["id"]),
            project_id=int(pipeline["project_id"]),
            user_id=int(user["id"]) if user.get("id") is not None else None,
            username=str(user["username"]) if user.get("username") else None,
            ref=str(job["ref"]) if job.get("ref") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise Unavailable("GitLab's answer to GET /job has no pipeline.project_id") from None


def job_token_fetches(
    gitlab_url: str, path_with_namespace: str, token: str, *, timeout: float = 10.0
) -> bool:
    """Whether GitLab lets `token` fetch the repository `path_with_namespace` over HTTP (its
    first request of a `git fetch`: 200 yes; 401, 403, 404 no). `Unavailable` otherwise."""
    header_safe(token, "the CI job token")
    url = f"{gitlab_url.rstrip('/')}/{path_with_namespace}.git/info/refs"
    try:
        with requests.get(
            url,
            params={"service": "git-upload-pack"},
            auth=(JOB_TOKEN_USER, token),
            headers={"Git-Protocol": "version=2"},
            allow_redirects=False,
            stream=True,  # the answer's refs are not needed, only its status
            timeout=timeout,
        ) as answer:
            status = answer.status_code
    except requests.RequestException as exc:
        raise Unavailable(f"GitLab is unreachable ({type(exc).__name__})") from None
    if status == 200:
        return True
    if status in (401, 403, 404):
        return False
    raise Unavailable(f"GitLab could not check the CI job token's repository access ({status})")


def wrong_project() -> WrongProject:
    """The refusal of a job token of another project (one message wherever it is refused)."""
    return WrongProject(
        "this CI job token belongs to another project; a pipeline may only reach its own "
        "dataset, or one whose CI/CD job token allowlist holds its project"
    )


def require_job_of(identity: JobIdentity, project_id: int) -> None:
    """Refuse a job token that belongs to another project than `project_id`."""
    if identity.project_id != project_id:
        raise wrong_project()
