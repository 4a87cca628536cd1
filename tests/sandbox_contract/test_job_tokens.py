"""CI job tokens in GitLab's shape: `GET /job` with `JOB-TOKEN`, valid only while the job runs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests

from tests.gitlab_sandbox.server import Sandbox

# doc/api/jobs.md, "Get job token's job": the keys of the example response.
DOCUMENTED_KEYS = {
    "commit",
    "coverage",
    "allow_failure",
    "created_at",
    "started_at",
    "finished_at",
    "duration",
    "queued_duration",
    "artifacts_expire_at",
    "id",
    "name",
    "pipeline",
    "ref",
    "artifacts",
    "runner",
    "stage",
    "status",
    "tag",
    "web_url",
    "project",
    "user",
}


@pytest.fixture
def project_and_developer(
    gitlab_admin: gitlab.Gitlab, make_client: Callable[..., tuple[Any, gitlab.Gitlab]]
) -> tuple[Any, Any]:
    project = gitlab_admin.projects.create(
        {"name": "cats", "visibility": "private", "initialize_with_readme": True}
    )
    developer, _ = make_client("dev")
    project.members.create({"user_id": developer.id, "access_level": 30})
    return project, developer


def test_job_token_identifies_its_running_job_project_and_user(
    gitlab_sandbox: Sandbox, project_and_developer: tuple[Any, Any]
) -> None:
    project, developer = project_and_developer
    token = gitlab_sandbox.create_job_token(project.id, developer)
    job = gitlab.Gitlab(gitlab_sandbox.url, job_token=token).http_get("/job")
    assert isinstance(job, dict)
    assert set(job) >= DOCUMENTED_KEYS
    assert job["status"] == "running"
    assert job["pipeline"]["project_id"] == project.id
    assert job["pipeline"]["ref"] == "main"
    assert job["pipeline"]["sha"] == project.commits.list(get_all=False)[0].id
    assert job["commit"]["id"] == job["pipeline"]["sha"]
    assert job["user"]["id"] == developer.id and job["user"]["username"] == "dev"
    assert job["project"] == {"ci_job_token_scope_enabled": False}
    assert job["web_url"].endswith(f"/-/jobs/{job['id']}")


def test_job_token_is_accepted_as_the_job_token_query_parameter(
    gitlab_sandbox: Sandbox, project_and_developer: tuple[Any, Any]
) -> None:
    project, developer = project_and_developer
    token = gitlab_sandbox.create_job_token(project.id, developer)
    answer = requests.get(
        f"{gitlab_sandbox.url}/api/v4/job", params={"job_token": token}, timeout=5
    )
    assert answer.status_code == 200
    assert answer.json()["pipeline"]["project_id"] == project.id


def test_finished_job_token_is_refused(
    gitlab_sandbox: Sandbox, project_and_developer: tuple[Any, Any]
) -> None:
    project, developer = project_and_developer
    token = gitlab_sandbox.create_job_token(project.id, developer)
    gitlab_sandbox.finish_job(token)
    with pytest.raises(gitlab.GitlabAuthenticationError) as err:
        gitlab.Gitlab(gitlab_sandbox.url, job_token=token).http_get("/job")
    assert err.value.response_code == 401
    assert err.value.error_message == "401 Unauthorized"


@pytest.mark.parametrize("headers", [{}, {"JOB-TOKEN": "glcbt-not-a-real-token"}])
def test_missing_or_unknown_job_token_is_401(
    gitlab_sandbox: Sandbox, headers: dict[str, str]
) -> None:
    answer = requests.get(f"{gitlab_sandbox.url}/api/v4/job", headers=headers, timeout=5)
    assert answer.status_code == 401
    assert answer.json() == {"message": "401 Unauthorized"}


def test_a_personal_access_token_is_not_a_job_token(gitlab_sandbox: Sandbox) -> None:
    answer = requests.get(
        f"{gitlab_sandbox.url}/api/v4/job",
        headers={"JOB-TOKEN": gitlab_sandbox.admin_token},
        timeout=5,
    )
    assert answer.status_code == 401


def test_minting_a_job_needs_a_role_that_runs_pipelines(
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    make_client: Callable[..., tuple[Any, gitlab.Gitlab]],
) -> None:
    project = gitlab_admin.projects.create({"name": "guarded", "visibility": "private"})
    reporter, _ = make_client("reporter")
    project.members.create({"user_id": reporter.id, "access_level": 20})
    from tests.gitlab_sandbox.http import ApiError

    with pytest.raises(ApiError) as err:
        gitlab_sandbox.create_job_token(project.id, reporter)
    assert err.value.status == 403


def test_job_token_clones_over_http_as_gitlab_ci_token_while_the_job_runs(
    gitlab_sandbox: Sandbox, project_and_developer: tuple[Any, Any], tmp_path: Path
) -> None:
    project, developer = project_and_developer
    token = gitlab_sandbox.create_job_token(project.id, developer)
    host = gitlab_sandbox.url.split("://", 1)[1]
    url = f"http://gitlab-ci-token:{token}@{host}/{project.path_with_namespace}.git"
    env = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"}
    cloned = subprocess.run(
        ["git", "clone", "-q", url, str(tmp_path / "clone")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "clone" / "README.md").exists()

    gitlab_sandbox.finish_job(token)
    refused = subprocess.run(
        ["git", "clone", "-q", url, str(tmp_path / "again")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert refused.returncode != 0
    assert "Access denied" in refused.stderr or "Authentication failed" in refused.stderr


def test_job_token_may_fetch_but_not_push(
    gitlab_sandbox: Sandbox, project_and_developer: tuple[Any, Any], tmp_path: Path
) -> None:
    project, developer = project_and_developer
    token = gitlab_sandbox.create_job_token(project.id, developer)
    host = gitlab_sandbox.url.split("://", 1)[1]
    url = f"http://gitlab-ci-token:{token}@{host}/{project.path_with_namespace}.git"
    env = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    work = tmp_path / "clone"
    git = ["git", "-c", "user.name=CI", "-c", "user.email=ci@example.com"]
    subprocess.run([*git, "clone", "-q", url, str(work)], env=env, check=True)
    subprocess.run(
        [*git, "commit", "-q", "--allow-empty", "-m", "x"], cwd=work, env=env, check=True
    )
    pushed = subprocess.run(
        [*git, "push", "-q", "origin", "HEAD:refs/heads/ci"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert pushed.returncode != 0
    assert "You are not allowed to push code to this project." in pushed.stderr
    assert all(b.name != "ci" for b in project.branches.list(get_all=True))
