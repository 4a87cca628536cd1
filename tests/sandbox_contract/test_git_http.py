"""Git smart HTTP: real `git clone` / `git push` against GitHttpApp on a loopback werkzeug server."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from tests.gitlab_sandbox.git_http import GitAccess, GitHttpApp, Update, is_git_path
from tests.gitlab_sandbox.gitrepo import ZERO_SHA, GitRepo
from tests.support.services import free_port

TOKENS = {"tok-ann": "ann", "tok-bob": "bob", "tok-rita": "rita"}


@dataclass
class World:
    """Projects, memberships and recorded pushes behind the callbacks."""

    root: Path
    # project path -> (visibility, {username: role})
    projects: dict[str, tuple[str, dict[str, str]]]
    pushes: list[tuple[str, str, list[Update]]] = field(default_factory=list)
    protected: set[str] = field(default_factory=set)

    def access(self) -> GitAccess:
        def authenticate(username: str, password: str) -> dict[str, str] | None:
            owner = TOKENS.get(password)
            if owner is None or username not in ("oauth2", owner):
                return None
            return {"username": owner}

        def can_read(user: dict[str, str] | None, project: str) -> bool:
            visibility, roles = self.projects[project]
            role = roles.get(user["username"]) if user else None
            return visibility == "public" or role in ("reporter", "developer")

        def check_push(user: dict[str, str], project: str, updates: list[Update]) -> str | None:
            if self.projects[project][1].get(user["username"]) != "developer":
                return "You are not allowed to push code to this project."
            if any(ref in self.protected for _, _, ref in updates):
                return "You are not allowed to push code to protected branches on this project."
            return None

        return GitAccess(
            authenticate=authenticate,
            find_project=lambda path: path if path in self.projects else None,
            can_read=can_read,
            check_push=check_push,
            repo_path=lambda project: self.root / f"{project.replace('/', '__')}.git",
            on_push=lambda project, user, updates: self.pushes.append(
                (project, user["username"], updates)
            ),
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[World, str]]:
    w = World(
        root=tmp_path / "repos",
        projects={
            "team/open": ("public", {"ann": "developer"}),
            "team/secret": ("private", {"ann": "developer", "rita": "reporter"}),
        },
    )
    for name in w.projects:
        repo = GitRepo(w.root / f"{name.replace('/', '__')}.git")
        repo.init_bare("main")
        repo.commit(
            "main",
            [{"action": "create", "file_path": "README.md", "content": "hi\n"}],
            "Initial commit",
            "Ann",
            "ann@example.com",
        )
    port = free_port()
    server = make_server("127.0.0.1", port, GitHttpApp(w.access()), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield w, f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join()


def git(
    *args: str, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "Ann",
        "GIT_AUTHOR_EMAIL": "ann@example.com",
        "GIT_COMMITTER_NAME": "Ann",
        "GIT_COMMITTER_EMAIL": "ann@example.com",
    }
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def url(base: str, project: str, creds: str | None = None) -> str:
    host = base.split("://", 1)[1]
    return f"http://{creds}@{host}/{project}.git" if creds else f"{base}/{project}.git"


def test_anonymous_clone_of_a_public_project(world: tuple[World, str], tmp_path: Path) -> None:
    _, base = world
    git("clone", "-q", url(base, "team/open"), str(tmp_path / "c"))
    assert (tmp_path / "c" / "README.md").read_text() == "hi\n"


def test_push_of_commits_tags_and_deletions_reports_each_ref_update(
    world: tuple[World, str], tmp_path: Path
) -> None:
    w, base = world
    work = tmp_path / "c"
    git("clone", "-q", url(base, "team/open", "oauth2:tok-ann"), str(work))
    old = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    (work / "data.txt").write_text("data\n")
    git("add", "data.txt", cwd=work)
    git("commit", "-q", "-m", "Add data", cwd=work)
    new = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    git("push", "-q", "origin", "main", cwd=work)
    assert w.pushes == [("team/open", "ann", [(old, new, "refs/heads/main")])]

    git("tag", "-a", "v1", "-m", "Version 1", cwd=work)
    tag_object = git("rev-parse", "v1", cwd=work).stdout.strip()
    git("push", "-q", "origin", "v1", "main:refs/heads/copy", cwd=work)
    assert sorted(w.pushes[1][2]) == sorted(
        [(ZERO_SHA, tag_object, "refs/tags/v1"), (ZERO_SHA, new, "refs/heads/copy")]
    )

    git("push", "-q", "origin", "--delete", "copy", cwd=work)
    assert w.pushes[2][2] == [(new, ZERO_SHA, "refs/heads/copy")]
    server_repo = GitRepo(w.root / "team__open.git")
    assert server_repo.refs() == {"refs/heads/main": new, "refs/tags/v1": tag_object}


def test_large_push_streams_through(world: tuple[World, str], tmp_path: Path) -> None:
    w, base = world
    work = tmp_path / "c"
    git("clone", "-q", url(base, "team/open", "ann:tok-ann"), str(work))
    (work / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    git("add", "big.bin", cwd=work)
    git("commit", "-q", "-m", "Big", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    blob = GitRepo(w.root / "team__open.git").read_blob("main", "big.bin")
    assert blob is not None and blob.content == (work / "big.bin").read_bytes()


def test_private_project_asks_anonymous_callers_to_authenticate(
    world: tuple[World, str], tmp_path: Path
) -> None:
    _, base = world
    response = requests.get(f"{base}/team/secret.git/info/refs?service=git-upload-pack", timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="GitLab"'
    proc = git("clone", "-q", url(base, "team/secret"), str(tmp_path / "c"), check=False)
    assert proc.returncode != 0 and not (tmp_path / "c" / "README.md").exists()


def test_private_project_is_not_found_for_signed_in_non_members(
    world: tuple[World, str], tmp_path: Path
) -> None:
    _, base = world
    auth = "Basic " + base64.b64encode(b"bob:tok-bob").decode()
    response = requests.get(
        f"{base}/team/secret.git/info/refs?service=git-upload-pack",
        headers={"Authorization": auth},
        timeout=10,
    )
    assert response.status_code == 404
    proc = git(
        "clone", "-q", url(base, "team/secret", "bob:tok-bob"), str(tmp_path / "c"), check=False
    )
    assert proc.returncode != 0 and "could not be found" in proc.stderr
    missing = requests.get(
        f"{base}/team/none.git/info/refs?service=git-upload-pack",
        headers={"Authorization": auth},
        timeout=10,
    )
    assert missing.status_code == 404


def test_wrong_token_is_refused_with_a_basic_challenge(world: tuple[World, str]) -> None:
    _, base = world
    for creds in (b"oauth2:nope", b"bob:tok-ann", b"garbage"):
        auth = "Basic " + base64.b64encode(creds).decode()
        response = requests.get(
            f"{base}/team/open.git/info/refs?service=git-upload-pack",
            headers={"Authorization": auth},
            timeout=10,
        )
        assert response.status_code == 401, creds
        assert response.headers["WWW-Authenticate"] == 'Basic realm="GitLab"'


def test_reporter_may_clone_but_not_push(world: tuple[World, str], tmp_path: Path) -> None:
    w, base = world
    work = tmp_path / "c"
    git("clone", "-q", url(base, "team/secret", "rita:tok-rita"), str(work))
    (work / "x").write_text("x")
    git("add", "x", cwd=work)
    git("commit", "-q", "-m", "x", cwd=work)
    proc = git("push", "origin", "main", cwd=work, check=False)
    assert proc.returncode != 0
    assert "You are not allowed to push code to this project." in proc.stderr
    assert w.pushes == []


def test_anonymous_push_to_a_public_project_needs_credentials(world: tuple[World, str]) -> None:
    _, base = world
    response = requests.get(f"{base}/team/open.git/info/refs?service=git-receive-pack", timeout=10)
    assert response.status_code == 401


def test_refused_ref_is_rejected_by_the_pre_receive_check_and_left_unchanged(
    world: tuple[World, str], tmp_path: Path
) -> None:
    w, base = world
    w.protected.add("refs/heads/main")
    work = tmp_path / "c"
    git("clone", "-q", url(base, "team/open", "oauth2:tok-ann"), str(work))
    before = GitRepo(w.root / "team__open.git").refs()
    (work / "x").write_text("x")
    git("add", "x", cwd=work)
    git("commit", "-q", "-m", "x", cwd=work)
    proc = git("push", "origin", "main", cwd=work, check=False)
    assert proc.returncode != 0
    assert (
        "GitLab: You are not allowed to push code to protected branches on this project."
        in proc.stderr
    )
    assert "pre-receive hook declined" in proc.stderr
    assert GitRepo(w.root / "team__open.git").refs() == before
    assert w.pushes == []


def test_dumb_http_and_unknown_paths_are_not_served(world: tuple[World, str]) -> None:
    _, base = world
    assert requests.get(f"{base}/team/open.git/HEAD", timeout=10).status_code == 404
    assert requests.get(f"{base}/team/open.git/info/refs", timeout=10).status_code == 403
    assert is_git_path("/g/sub/p.git/info/refs") and not is_git_path("/api/v4/projects")


def test_sandbox_git_http_protects_the_default_branch_from_developers(
    gitlab_sandbox: Any, gitlab_admin: Any, tmp_path: Path
) -> None:
    project = gitlab_admin.projects.create({"name": "guarded", "initialize_with_readme": True})
    dev, token = gitlab_sandbox.create_user("dev")
    project.members.create({"user_id": dev.id, "access_level": 30})
    host = gitlab_sandbox.url.split("://", 1)[1]
    work = tmp_path / "w"
    git("clone", "-q", f"http://dev:{token}@{host}/{project.path_with_namespace}.git", str(work))
    (work / "x").write_text("x")
    git("add", "x", cwd=work)
    git("commit", "-q", "-m", "x", cwd=work)
    refused = git("push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0
    assert (
        "You are not allowed to push code to protected branches on this project." in refused.stderr
    )
    git("push", "-q", "origin", "main:refs/heads/work", cwd=work)
    assert (
        project.branches.get("work").commit["id"]
        == git("rev-parse", "HEAD", cwd=work).stdout.strip()
    )
    wrong_user = git(
        "ls-remote", f"http://other:{token}@{host}/{project.path_with_namespace}.git", check=False
    )
    assert wrong_user.returncode != 0
