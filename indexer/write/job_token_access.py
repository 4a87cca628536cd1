"""Let another project's pipelines read a dataset: add the project to the dataset's CI/CD job
token allowlist in GitLab, as the caller.

GitLab's job token scope API (doc/api/project_job_token_scopes.md) needs the Maintainer role
on the dataset. When GitLab refuses the caller, the answer names who may do it (the dataset's
Maintainers and Owners) and how. Once the project is on the list, its jobs' `CI_JOB_TOKEN`
fetches the dataset's repository (GitLab) and reads its objects through dshub's DVC remote
(which asks GitLab the same question, `indexer.read.remote_access`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gitlab.exceptions
import requests

from indexer.errors import NotAuthenticated, NotFound, Unavailable

MAINTAINER = 40
ALREADY = "already in the job token scope"


@dataclass(frozen=True)
class JobTokenAccess:
    """The outcome: `allowed` (the project's job tokens pass the dataset's allowlist now),
    `added` (by this call), and when refused, `must_ask` (user names of the dataset's
    Maintainers) and a `message` saying what they must do."""

    allowed: bool
    added: bool
    must_ask: tuple[str, ...] = ()
    message: str = ""


def allow_job_token(writer: gitlab.Gitlab, dataset_id: int, project_id: int) -> JobTokenAccess:
    """Add `project_id` to dataset `dataset_id`'s job token allowlist as the caller (`writer`).

    Raises `NotFound` when the caller cannot see the dataset or the project (GitLab's 404),
    `NotAuthenticated` for a refused token, `Unavailable` when GitLab cannot answer."""
    dataset: Any = writer.projects.get(dataset_id, lazy=True)
    try:
        scope: Any = dataset.job_token_scope.get()
        if not scope.inbound_enabled:
            return JobTokenAccess(allowed=True, added=False)
        scope.allowlist.create({"target_project_id": project_id})
    except gitlab.exceptions.GitlabError as exc:
        if exc.response_code == 403:
            return _refused(dataset, dataset_id, project_id)
        if exc.response_code == 400 and ALREADY in str(exc.error_message):
            return JobTokenAccess(allowed=True, added=False)
        raise _error(exc, dataset_id, project_id) from None
    except requests.RequestException as exc:
        raise Unavailable(f"GitLab is unreachable ({type(exc).__name__})") from None
    return JobTokenAccess(allowed=True, added=True)


def _refused(dataset: Any, dataset_id: int, project_id: int) -> JobTokenAccess:
    try:
        members = dataset.members_all.list(get_all=True)
        names = tuple(sorted(str(m.username) for m in members if int(m.access_level) >= MAINTAINER))
    except (gitlab.exceptions.GitlabError, requests.RequestException):
        names = ()
    who = ", ".join(names) if names else "a Maintainer of the dataset"
    return JobTokenAccess(
        allowed=False,
        added=False,
        must_ask=names,
        message=(
            f"only a Maintainer of dataset {dataset_id} may let project {project_id}'s "
            f"pipelines read it: ask {who} to add project {project_id} under Settings > CI/CD "
            f"> Job token permissions, or with POST /api/v4/projects/{dataset_id}/"
            f'job_token_scope/allowlist {{"target_project_id": {project_id}}}'
        ),
    )


def _error(exc: gitlab.exceptions.GitlabError, dataset_id: int, project_id: int) -> Exception:
    if exc.response_code == 401:
        return NotAuthenticated("GitLab did not accept the token")
    if exc.response_code == 404:
        return NotFound(f"dataset {dataset_id} or project {project_id} was not found")
    return Unavailable(
        f"GitLab answered {exc.response_code or 'nothing'} to adding project {project_id} to "
        f"dataset {dataset_id}'s CI/CD job token allowlist; retry"
    )
