"""Selecting a site commits the DVC remote `dshub` as the caller; applied only when complete."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from indexer.data.dvc_env import dvc_environment
from indexer.sites.selection import dvc_config_naming
from tests.conftest import S3Bucket
from tests.sites.conftest import PUBLIC_URL, SiteEnv, s3_site
from tests.sites.test_selection import _dataset, _local_site, _select
from tests.support.dataset_repo import run


def _config(env: SiteEnv, project_id: int) -> str:
    project = env.admin.projects.get(project_id)
    return project.files.get(".dvc/config", ref="main").decode().decode()


def _clone(env: SiteEnv, project_id: int, where: Path) -> Path:
    path = env.admin.projects.get(project_id).path_with_namespace
    host = env.sandbox.url.split("://", 1)[1]
    url = f"http://oauth2:{env.sandbox.admin_token}@{host}/{path}.git"
    run(["git", "clone", "-q", url, str(where)], cwd=where.parent)
    return where


def test_selection_commits_the_remote_as_dvc_remote_add_writes_it(
    site_env: SiteEnv, tmp_path: Path
) -> None:
    project_id = _dataset(site_env)
    _local_site(site_env, tmp_path)
    answer = _select(site_env, project_id, "maintainer", "lab-disk")
    assert answer.status_code == 201, answer.get_json()
    url = f"{PUBLIC_URL}/dvc/{project_id}"
    body = answer.get_json()
    assert body["dvc_remote"] == "dshub" and body["commit"]
    commit = site_env.admin.projects.get(project_id).commits.get(body["commit"])
    assert commit.author_name == "maintainer"  # the caller's commit, not dshub's

    # A fresh clone: DVC itself reads the remote, and `dvc remote add -d` writes the same text.
    clone = _clone(site_env, project_id, tmp_path / "clone")
    env = dvc_environment(tmp_path / "dvc-state")
    listed = run(["dvc", "remote", "list"], cwd=clone, env=env)
    assert listed.split() == ["dshub", url, "(default)"]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / ".dvc").mkdir()
    (scratch / ".dvc" / "config").write_text("[core]\n    autostage = true\n")
    subprocess.run(["git", "init", "-q"], cwd=scratch, check=True)
    run(["dvc", "remote", "add", "-d", "dshub", url], cwd=scratch, env=env)
    assert _config(site_env, project_id) == (scratch / ".dvc" / "config").read_text()
    shown = site_env.call("GET", f"/api/v1/datasets/{project_id}/storage-site", "developer")
    assert shown.get_json()["applied"] is True


def test_a_foreign_default_remote_is_refused_and_nothing_is_written(
    site_env: SiteEnv, tmp_path: Path
) -> None:
    project_id = _dataset(site_env)
    project = site_env.admin.projects.get(project_id)
    f = project.files.get(".dvc/config", ref="main")
    f.content = "[core]\n    remote = lab\n['remote \"lab\"']\n    url = s3://elsewhere/x\n"
    f.save(branch="main", commit_message="own remote")
    _local_site(site_env, tmp_path)
    head = project.branches.get("main").commit["id"]
    answer = _select(site_env, project_id, "maintainer", "lab-disk")
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["code"] == "dvc_remote_conflict" and "'lab'" in error["message"]
    assert project.branches.get("main").commit["id"] == head
    shown = site_env.call("GET", f"/api/v1/datasets/{project_id}/storage-site", "maintainer")
    assert shown.get_json()["storage_site"] is None
    assert not [v for v in site_env.sandbox.state.variables if v.project_id == project_id]


def test_a_failure_part_way_is_not_applied_and_a_retry_completes_it(
    site_env: SiteEnv, tmp_path: Path
) -> None:
    project_id = _dataset(site_env)
    _local_site(site_env, tmp_path)
    site_env.sandbox.faults.fail_next(
        count=10, status=503, path_contains="/variables", method="POST"
    )
    failed = _select(site_env, project_id, "maintainer", "lab-disk")
    assert failed.status_code == 503
    shown = site_env.call("GET", f"/api/v1/datasets/{project_id}/storage-site", "maintainer")
    assert shown.get_json()["applied"] is False
    site_env.sandbox.faults.reset()
    again = _select(site_env, project_id, "maintainer", "lab-disk")
    assert again.status_code == 201, again.get_json()
    assert again.get_json()["commit"] is None  # committed by the first attempt already
    shown = site_env.call("GET", f"/api/v1/datasets/{project_id}/storage-site", "maintainer")
    assert shown.get_json() == {
        "dataset_id": project_id,
        "storage_site": "lab-disk",
        "applied": True,
    }
    commits = site_env.admin.projects.get(project_id).commits.list(
        query_parameters={"path": ".dvc/config"}, get_all=True
    )
    assert len(commits) == 2  # dvc init, then dshub's remote: once


def test_a_site_reserved_for_namespaces_refuses_others(
    site_env: SiteEnv, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    group = site_env.admin.groups.create({"name": "lab", "path": "lab"})
    inside = site_env.admin.projects.create(
        {"name": "inside", "namespace_id": group.id, "initialize_with_readme": True}
    )
    inside.members.create({"user_id": site_env.user_ids["maintainer"], "access_level": 40})
    inside.files.create(
        {"file_path": ".dvc/config", "branch": "main", "content": "", "commit_message": "dvc"}
    )
    outside = _dataset(site_env)
    body: dict[str, Any] = {**s3_site(s3_bucket), "namespaces": ["lab"]}
    registered = site_env.call("POST", "/api/v1/storage-sites", "admin", json=body)
    assert registered.status_code == 201, registered.get_json()
    assert registered.get_json()["namespaces"] == ["lab"]
    refused = _select(site_env, outside, "maintainer", "moto")
    assert refused.status_code == 403 and "reserved" in refused.get_json()["error"]["message"]
    allowed = _select(site_env, int(inside.id), "maintainer", "moto")
    assert allowed.status_code == 201, allowed.get_json()


def test_dvc_config_naming_is_idempotent() -> None:
    url = "http://dshub.test/dvc/7"
    first = dvc_config_naming("", url)
    assert first is not None and dvc_config_naming(first, url) is None
