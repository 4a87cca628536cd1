"""`POST /api/v1/datasets` end to end: GitLab project, first commit, searchable at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gitlab

from tests.gitlab_sandbox.server import Sandbox
from tests.manage.conftest import ManageWorld, build_world
from webhook_service import create_app


def test_maintainer_creates_a_dataset_that_is_searchable_when_the_call_returns(
    manage: ManageWorld,
) -> None:
    created = manage.create(
        "maintainer",
        name="Lung CT 2024",
        namespace="imaging",
        description="Chest CT scans, anonymised",
        visibility="internal",
        topics=["ct", "lung"],
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    pid = body["id"]
    assert created.headers["Location"] == f"/api/v1/datasets/{pid}"
    shown = manage.call("maintainer", "GET", f"/api/v1/datasets/{pid}")
    assert shown.status_code == 200 and shown.get_json() == body
    assert body["path_with_namespace"] == "imaging/lung-ct-2024"
    assert body["topics"] == ["ct", "lung"] and body["visibility"] == "internal"
    assert body["archived"] is False and body["storage_site"] is None
    found = manage.call("reporter", "GET", "/api/v1/datasets", q="anonymised").get_json()
    assert [item["id"] for item in found["items"]] == [pid]


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _dvc(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dvc = str(Path(sys.executable).parent / "dvc")
    return subprocess.run(
        [dvc, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_first_commit_is_dvc_inits_own_files_and_a_fresh_clone_is_a_clean_dvc_repository(
    manage: ManageWorld, tmp_path: Path, dvc_env: dict[str, str]
) -> None:
    body = manage.create(
        "maintainer", name="Retina", namespace="imaging", description="Fundus photographs"
    ).get_json()
    pid = body["id"]
    project = manage.admin.projects.get(pid)
    url = project.http_url_to_repo.replace("://", f"://oauth2:{manage.tokens['maintainer']}@")
    clone = tmp_path / "clone"
    _git("clone", "-q", url, str(clone))

    reference = tmp_path / "reference"
    reference.mkdir()
    _git("init", "-q", cwd=reference)
    assert _dvc(dvc_env, reference, "init", "-q").returncode == 0
    for name in (".dvc/config", ".dvc/.gitignore", ".dvcignore"):
        assert (clone / name).read_bytes() == (reference / name).read_bytes(), name
    shipped = Path(__file__).resolve().parents[2] / "gitlab-ci" / "dataset.gitlab-ci.yml"
    assert (clone / ".gitlab-ci.yml").read_bytes() == shipped.read_bytes()
    readme = (clone / "README.md").read_text()
    assert readme.startswith("# Retina\n\nFundus photographs\n")
    assert f"git clone {project.http_url_to_repo}" in readme and "dvc pull" in readme
    assert f"dshub download --project-id {pid}" in readme

    status = _dvc(dvc_env, clone, "status")
    assert status.returncode == 0, status.stderr
    remotes = _dvc(dvc_env, clone, "remote", "list")
    assert remotes.returncode == 0 and remotes.stdout == ""  # until a site is selected
    assert _git("status", "--porcelain", cwd=clone) == ""
    author = _git("log", "-1", "--format=%an|%s", cwd=clone).strip()
    assert author == "maintainer|Create dataset Retina"
    history = manage.call("maintainer", "GET", f"/api/v1/datasets/{pid}/commits").get_json()
    assert [(c["author_name"], c["title"]) for c in history["items"]] == [
        ("maintainer", "Create dataset Retina")
    ]


def test_owner_of_a_personal_namespace_creates_there_and_may_select_the_site(
    tmp_path: Path, gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    world = build_world(
        tmp_path, gitlab_sandbox, gitlab_admin, f"sqlite:///{tmp_path / 'index.sqlite3'}"
    )
    created = world.create("nonmember", name="My scans", namespace="nonmember", visibility="public")
    assert created.status_code == 201, created.get_json()
    pid = created.get_json()["id"]
    assert created.get_json()["path_with_namespace"] == "nonmember/my-scans"
    # GitLab records the owner as a direct Owner member, so dshub's role check passes.
    selected = world.call(
        "nonmember", "POST", f"/api/v1/datasets/{pid}/storage-site", {"name": "local"}
    )
    assert selected.status_code == 201, selected.get_json()
    assert world.call("anonymous", "GET", f"/api/v1/datasets/{pid}").status_code == 200


def test_create_to_searchable_also_for_a_private_dataset_of_its_creator(
    manage: ManageWorld,
) -> None:
    pid = manage.create("maintainer", name="Secret", namespace="imaging").get_json()["id"]
    assert manage.call("maintainer", "GET", f"/api/v1/datasets/{pid}").status_code == 200
    assert manage.call("nonmember", "GET", f"/api/v1/datasets/{pid}").status_code == 404
    found = manage.call("maintainer", "GET", "/api/v1/datasets", q="secret").get_json()
    assert [item["id"] for item in found["items"]] == [pid]


def test_a_new_private_dataset_is_listed_for_its_creator_and_members_by_every_process(
    manage: ManageWorld,
) -> None:
    """Two apps on one data directory are two gunicorn workers: answers cached by the other
    worker before the create must not hide the new private dataset from its creator or from
    the namespace's other members."""
    other = create_app(manage.settings).test_client()

    def listed(who: str) -> list[int]:
        answer = other.get("/api/v1/datasets", headers=manage.headers(who))
        return [item["id"] for item in answer.get_json()["items"]]

    for who in ("maintainer", "developer", "nonmember"):
        listed(who)  # the other worker now holds each caller's answer
    answer = manage.create("maintainer", name="Hidden", namespace="imaging", visibility="private")
    assert answer.status_code == 201, answer.get_json()
    made = answer.get_json()["id"]
    assert made in listed("maintainer")
    assert made in listed("developer")
    assert made not in listed("nonmember")


def test_a_create_gitlab_made_but_dshub_could_not_index_says_so_and_the_sync_repairs_it(
    manage: ManageWorld,
) -> None:
    # The in-line sync reads the storage-site variable with the service token; GitLab
    # failing that (past python-gitlab's retries) leaves a project that is not indexed yet.
    manage.sandbox.faults.fail_next(20, 503, path_contains="/variables/", method="GET")
    response = manage.create("maintainer", name="Flaky", namespace="imaging")
    assert response.status_code == 503, response.get_json()
    message = response.get_json()["error"]["message"]
    assert "was created in GitLab but is not indexed yet" in message
    assert "do not create it again" in message
    manage.sandbox.faults.reset()
    pid = manage.admin.projects.get("imaging/flaky").id
    assert str(pid) in message
    from indexer.sync import jobs
    from indexer.sync import refs as sync

    assert sync.sync_project(jobs.context(), pid) == "synced"
    assert manage.call("maintainer", "GET", f"/api/v1/datasets/{pid}").status_code == 200
