"""`indexer.read.remote_access`: reading a request's credential, and GitLab's decisions cached so a
`dvc push` of many objects asks GitLab once per token and project.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import gitlab
import pytest

from indexer.errors import NotAuthenticated
from indexer.gitlab.job_tokens import JobIdentity, WrongProject, verify_job_token
from indexer.gitlab.permissions import FileGeneration
from indexer.gitlab.reader import GitLabReader
from indexer.read.remote_access import Credential, RemoteAccess, credential_from_headers
from tests.gitlab_sandbox.server import Sandbox


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("headers", "cookies", "expected"),
    [
        ({"JOB-TOKEN": "glcbt-1"}, {}, Credential("job", "glcbt-1")),
        ({"Authorization": _basic("gitlab-ci-token", "glcbt-2")}, {}, Credential("job", "glcbt-2")),
        ({"Authorization": _basic("oauth2", "glpat-3")}, {}, Credential("user", "glpat-3")),
        ({"Authorization": _basic("mia", "pa:ss")}, {}, Credential("user", "pa:ss")),
        ({"authorization": "Bearer glpat-4"}, {}, Credential("user", "glpat-4")),
        ({"PRIVATE-TOKEN": "glpat-5"}, {}, Credential("user", "glpat-5")),
        ({}, {"tokenGitLab": "glpat-6"}, Credential("user", "glpat-6")),
        # A job token wins over a personal token sent alongside it.
        ({"JOB-TOKEN": "glcbt-7", "PRIVATE-TOKEN": "glpat-7"}, {}, Credential("job", "glcbt-7")),
        ({}, {}, None),
    ],
)
def test_the_credential_of_a_request(
    headers: dict[str, str], cookies: dict[str, str], expected: Credential | None
) -> None:
    assert credential_from_headers(headers, cookies) == expected


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), _basic("mia", ""), "Digest x"],
)
def test_a_malformed_authorization_is_refused(authorization: str) -> None:
    with pytest.raises(NotAuthenticated):
        credential_from_headers({"Authorization": authorization})


def test_credentials_never_show_their_token() -> None:
    assert "glpat-secret" not in repr(Credential("user", "glpat-secret"))


class _Counted:
    """Counts the GitLab clients made (one per decision) while passing the real ones on."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.readers = 0
        self.jobs = 0
        self.lock = threading.Lock()

    def reader(self, token: str | None) -> GitLabReader:
        with self.lock:
            self.readers += 1
        return GitLabReader(self.sandbox.url, token, max_retries=1)

    def job(self, token: str) -> JobIdentity:
        with self.lock:
            self.jobs += 1
        return verify_job_token(self.sandbox.url, token)


def test_decisions_are_cached_per_token_and_project_and_dropped_on_membership_events(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, tmp_path: Any
) -> None:
    project = gitlab_admin.projects.create({"name": "cats", "visibility": "private"})
    other = gitlab_admin.projects.create({"name": "dogs", "visibility": "private"})
    user, token = gitlab_sandbox.create_user("dev")
    project.members.create({"user_id": user.id, "access_level": 30})
    counted = _Counted(gitlab_sandbox)
    generation = FileGeneration(tmp_path / "generation")
    access = RemoteAccess(counted.reader, counted.job, generation)
    credential = Credential("user", token)

    grants = []

    def ask() -> None:
        for _ in range(25):
            grants.append(access.grant(credential, project.id))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(grants) == 200
    assert {(g.who, g.visible, g.read, g.write) for g in grants} == {
        (f"user {user.id}", True, True, True)
    }
    assert counted.readers == 1  # concurrent misses waited for the first answer

    assert access.grant(credential, other.id).visible is False  # another project: asked anew
    assert counted.readers == 2

    project.members.get(user.id).delete()
    generation.bump()  # what a member-removed webhook does
    assert access.grant(credential, project.id).visible is False
    assert counted.readers == 3

    root = gitlab_sandbox.state.user_by_username("root")
    assert root is not None
    job = gitlab_sandbox.create_job_token(project.id, root)
    for _ in range(10):
        assert access.grant(Credential("job", job), project.id).write
    assert counted.jobs == 1
    with pytest.raises(WrongProject):
        access.grant(Credential("job", job), other.id)


def test_refused_tokens_are_not_cached(gitlab_sandbox: Sandbox, tmp_path: Any) -> None:
    counted = _Counted(gitlab_sandbox)
    access = RemoteAccess(counted.reader, counted.job, FileGeneration(tmp_path / "generation"))
    for _ in range(3):
        with pytest.raises(NotAuthenticated):
            access.grant(Credential("user", "glpat-wrong"), 1)
    assert counted.readers == 3
