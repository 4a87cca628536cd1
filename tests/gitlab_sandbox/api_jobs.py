"""CI job tokens: `GET /api/v4/job` answers who a `CI_JOB_TOKEN` belongs to.

GitLab gives every running job a token (`CI_JOB_TOKEN`) that identifies the job, its
pipeline, its project (`pipeline.project_id`; the job's `project` object only carries
`ci_job_token_scope_enabled`) and the user who started it. The token works only while the
job runs: a finished, cancelled or unknown token answers `401 Unauthorized`. Accepted as
the `JOB-TOKEN` header (what python-gitlab's `job_token=` sends) or the `job_token` query
parameter; for git over HTTP it is the password of the user `gitlab-ci-token`.

Jobs live in memory only (a restarted sandbox has no running jobs). Tests mint them with
`mint_job(state, project_id, user)` / `Sandbox.create_job_token(...)` and end them with
`finish_job`.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from tests.gitlab_sandbox import entities, permissions
from tests.gitlab_sandbox.gitrepo import GitRepo
from tests.gitlab_sandbox.http import Request, Response, router, unauthorized
from tests.gitlab_sandbox.state import SandboxState, User
from tests.support import leakcheck

FINISHED = ("success", "failed", "canceled")


@dataclass
class Job:
    """A CI job of a project, started by `user_id`; its `token` is valid while `running`."""

    id: int
    token: str
    project_id: int
    user_id: int
    pipeline_id: int
    ref: str
    sha: str | None
    name: str
    stage: str
    created_at: str
    status: str = "running"
    finished_at: str | None = None


class JobRegistry:
    """The jobs of one sandbox state, by token."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_token: dict[str, Job] = {}
        self.next_id = 1000  # job ids never collide with small project/user ids in tests

    def add(self, job: Job) -> Job:
        """Record a job (its token becomes valid)."""
        with self.lock:
            self.by_token[job.token] = job
        return job

    def running(self, token: str) -> Job | None:
        """The running job owning `token`, or None (unknown, finished or cancelled)."""
        with self.lock:
            job = self.by_token.get(token)
        return job if job is not None and job.status == "running" else None


_REGISTRIES: weakref.WeakKeyDictionary[SandboxState, JobRegistry] = weakref.WeakKeyDictionary()
_REGISTRIES_LOCK = threading.Lock()


def registry(state: SandboxState) -> JobRegistry:
    """The job registry of `state` (created on first use)."""
    with _REGISTRIES_LOCK:
        found = _REGISTRIES.get(state)
        if found is None:
            found = _REGISTRIES[state] = JobRegistry()
        return found


def mint_job(
    state: SandboxState,
    project_id: int,
    user: User,
    *,
    ref: str | None = None,
    name: str = "dvc-gc",
    stage: str = "deploy",
) -> Job:
    """Start a job of `project_id` run by `user` (Developer+, as running a pipeline needs)."""
    project = state.find_project(str(project_id), user, "push")
    ref = ref or project.default_branch or "main"
    sha = GitRepo(project.repo_path).resolve(ref) if project.repo_path.exists() else None
    jobs = registry(state)
    with jobs.lock:
        jobs.next_id += 1
        job_id = jobs.next_id
    job = Job(
        id=job_id,
        token=f"glcbt-{secrets.token_urlsafe(20)}",
        project_id=project.id,
        user_id=user.id,
        pipeline_id=job_id + 50_000,
        ref=ref,
        sha=sha,
        name=name,
        stage=stage,
        created_at=state.now(),
    )
    leakcheck.register(job.token, "CI job token")
    return jobs.add(job)


def finish_job(state: SandboxState, token: str, status: str = "success") -> None:
    """End the job owning `token` with `status`; its token stops working."""
    if status not in FINISHED:
        raise ValueError(f"status must be one of {FINISHED}")
    jobs = registry(state)
    with jobs.lock:
        job = jobs.by_token[token]
        job.status = status
        job.finished_at = state.now()


def user_for_job_token(state: SandboxState, token: str) -> User | None:
    """The user whose running job owns `token` (git over HTTP as `gitlab-ci-token`), or None."""
    job = registry(state).running(token)
    if job is None:
        return None
    user = state.users.get(job.user_id)
    return user if user is not None and user.state == "active" else None


def job_project_id(state: SandboxState, token: str) -> int | None:
    """The project a running job token belongs to, or None."""
    job = registry(state).running(token)
    return None if job is None else job.project_id


def _commit(state: SandboxState, job: Job) -> dict[str, Any] | None:
    project = state.projects.get(job.project_id)
    if project is None or job.sha is None:
        return None
    return GitRepo(project.repo_path).commit_info(job.sha)


def job_json(state: SandboxState, job: Job) -> dict[str, Any]:
    """GitLab's `Job` entity (doc/api/jobs.md, "Get job token's job")."""
    project = state.projects[job.project_id]
    user = state.users[job.user_id]
    return {
        "commit": _commit(state, job),
        "coverage": None,
        "allow_failure": False,
        "created_at": job.created_at,
        "started_at": job.created_at,
        "finished_at": job.finished_at,
        "erased_at": None,
        "duration": None,
        "queued_duration": 0.0,
        "artifacts_expire_at": None,
        "id": job.id,
        "name": job.name,
        "pipeline": {
            "id": job.pipeline_id,
            "project_id": job.project_id,
            "ref": job.ref,
            "sha": job.sha,
            "status": job.status,
        },
        "ref": job.ref,
        "artifacts": [],
        "runner": None,
        "stage": job.stage,
        "status": job.status,
        "tag": False,
        "web_url": f"{project.web_url}/-/jobs/{job.id}",
        "project": {"ci_job_token_scope_enabled": False},
        "user": entities.user_json(state, user),
        "tag_list": [],
    }


@router.route("GET", "/api/v4/job")
def get_job(req: Request) -> Response:
    """The job a `JOB-TOKEN` (or `job_token=`) belongs to; 401 once it has finished."""
    token = req.header("job-token") or req.query.get("job_token")
    if not isinstance(token, str) or not token:
        raise unauthorized()
    job = registry(req.state).running(token)
    if job is None or job.project_id not in req.state.projects:
        raise unauthorized()
    user = req.state.users.get(job.user_id)
    project = req.state.projects[job.project_id]
    if user is None or not permissions.can(req.state, user, project, "read"):
        raise unauthorized()  # the user lost access: GitLab stops honouring the token
    return Response(200, job_json(req.state, job))
