"""Selecting a dataset's storage site: who may, once only, and the CI/CD variables it sets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.conftest import S3Bucket
from tests.sites.conftest import PUBLIC_URL, RO, RW, SiteEnv, s3_site


def _dataset(env: SiteEnv, name: str = "cells", dvc: bool = True) -> int:
    """A private project with a Maintainer and a Developer; `.dvc/config` when `dvc`."""
    project = env.admin.projects.create(
        {"name": name, "visibility": "private", "initialize_with_readme": True}
    )
    project.members.create({"user_id": env.user_ids["maintainer"], "access_level": 40})
    project.members.create({"user_id": env.user_ids["developer"], "access_level": 30})
    if dvc:
        project.files.create(
            {
                "file_path": ".dvc/config",
                "branch": "main",
                "content": "[core]\n    autostage = true\n",
                "commit_message": "dvc init",
            }
        )
    return int(project.id)


def _local_site(env: SiteEnv, tmp_path: Path, name: str = "lab-disk") -> None:
    root = tmp_path / name
    root.mkdir()
    body = {"name": name, "kind": "local", "path": str(root), "prefix": "ds"}
    assert env.call("POST", "/api/v1/storage-sites", "admin", json=body).status_code == 201


def _variables(env: SiteEnv, project_id: int) -> dict[str, dict[str, Any]]:
    """The project's variables as GitLab holds them (values of hidden ones included)."""
    return {
        v.key: {"value": v.value, "masked": v.masked, "protected": v.protected, "hidden": v.hidden}
        for v in env.sandbox.state.variables
        if v.project_id == project_id
    }


def _select(env: SiteEnv, project_id: int, who: str | None, name: str) -> Any:
    path = f"/api/v1/datasets/{project_id}/storage-site"
    return env.call("POST", path, who, json={"name": name})


def test_maintainer_selects_a_proxy_site_once_and_the_index_learns_it(
    site_env: SiteEnv, tmp_path: Path
) -> None:
    project_id = _dataset(site_env)
    _local_site(site_env, tmp_path)
    _local_site(site_env, tmp_path, "other-disk")
    answer = _select(site_env, project_id, "maintainer", "lab-disk")
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["dvc_remote_url"] == f"{PUBLIC_URL}/dvc/{project_id}"
    plain = {"masked": False, "protected": False, "hidden": False}
    assert _variables(site_env, project_id) == {
        "DSHUB_URL": {"value": PUBLIC_URL, **plain},
        "DSHUB_DATASET_ID": {"value": str(project_id), **plain},
        "DSHUB_STORAGE_SITE": {"value": "lab-disk", **plain},
        "DSHUB_DVC_REMOTE_URL": {"value": f"{PUBLIC_URL}/dvc/{project_id}", **plain},
    }
    for name in ("other-disk", "lab-disk"):
        again = _select(site_env, project_id, "maintainer", name)
        assert again.status_code == 409
        assert "'lab-disk'" in again.get_json()["error"]["message"]
    assert _variables(site_env, project_id)["DSHUB_STORAGE_SITE"]["value"] == "lab-disk"
    shown = site_env.call("GET", f"/api/v1/datasets/{project_id}/storage-site", "developer")
    assert shown.get_json()["storage_site"] == "lab-disk"

    # The embedded worker runs the queued sync_project: the index shows the site.
    deadline = time.monotonic() + 20
    dataset: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = site_env.call("GET", f"/api/v1/datasets/{project_id}", "maintainer")
        dataset = got.get_json() if got.status_code == 200 else {}
        if dataset.get("storage_site") == "lab-disk":
            break
        time.sleep(0.1)
    assert dataset.get("storage_site") == "lab-disk"

    # The site now holds a dataset: its placement is frozen, its description is not.
    site = site_env.call("GET", "/api/v1/storage-sites/lab-disk", "admin").get_json()
    assert site["datasets"] == 1
    body = {"kind": "local", "path": site["path"], "prefix": "ds", "description": "NAS"}
    put = site_env.call("PUT", "/api/v1/storage-sites/lab-disk", "admin", json=body)
    assert put.status_code == 200
    moved = site_env.call(
        "PUT", "/api/v1/storage-sites/lab-disk", "admin", json={**body, "prefix": "elsewhere"}
    )
    assert moved.status_code == 409 and "prefix" in moved.get_json()["error"]["message"]


def test_direct_mode_puts_the_site_keys_in_masked_variables(
    site_env: SiteEnv, s3_bucket: S3Bucket
) -> None:
    project_id = _dataset(site_env)
    body = s3_site(s3_bucket, access_mode="direct", credentials_ref_readonly="moto-ro")
    registered = site_env.call("POST", "/api/v1/storage-sites", "admin", json=body)
    assert registered.status_code == 201, registered.get_json()
    answer = _select(site_env, project_id, "maintainer", "moto")
    assert answer.status_code == 201, answer.get_json()
    text = answer.get_data(as_text=True)
    assert RW["secret_access_key"] not in text and RO["secret_access_key"] not in text
    remote = f"s3://{s3_bucket.name}/datasets/{project_id}"
    plain = {"masked": False, "protected": False, "hidden": False}
    readonly = {"masked": True, "protected": False, "hidden": False}
    readwrite = {"masked": True, "protected": True, "hidden": True}
    assert _variables(site_env, project_id) == {
        "DSHUB_URL": {"value": PUBLIC_URL, **plain},
        "DSHUB_DATASET_ID": {"value": str(project_id), **plain},
        "DSHUB_STORAGE_SITE": {"value": "moto", **plain},
        "DSHUB_DVC_REMOTE_URL": {"value": remote, **plain},
        "DSHUB_S3_ENDPOINT_URL": {"value": s3_bucket.endpoint_url, **plain},
        "DSHUB_S3_RO_ACCESS_KEY_ID": {"value": RO["access_key_id"], **readonly},
        "DSHUB_S3_RO_SECRET_ACCESS_KEY": {"value": RO["secret_access_key"], **readonly},
        "DSHUB_S3_RW_ACCESS_KEY_ID": {"value": RW["access_key_id"], **readwrite},
        "DSHUB_S3_RW_SECRET_ACCESS_KEY": {"value": RW["secret_access_key"], **readwrite},
    }
    # GitLab itself never shows the hidden values again, not even to an administrator.
    listed = {v.key: v.value for v in site_env.admin.projects.get(project_id).variables.list()}
    assert listed["DSHUB_S3_RW_SECRET_ACCESS_KEY"] is None


def test_direct_mode_needs_read_only_keys(site_env: SiteEnv, s3_bucket: S3Bucket) -> None:
    body = s3_site(s3_bucket, access_mode="direct")
    answer = site_env.call("POST", "/api/v1/storage-sites", "admin", json=body)
    assert answer.status_code == 400
    assert "credentials_ref_readonly" in answer.get_json()["error"]["message"]


def test_only_maintainers_select_and_others_change_nothing(
    site_env: SiteEnv, tmp_path: Path
) -> None:
    project_id = _dataset(site_env)
    _local_site(site_env, tmp_path)
    assert _select(site_env, project_id, None, "lab-disk").status_code == 401
    developer = _select(site_env, project_id, "developer", "lab-disk")
    assert developer.status_code == 403 and "Maintainer" in developer.get_json()["error"]["message"]
    stranger = _select(site_env, project_id, "other", "lab-disk")
    assert stranger.status_code == 404  # a private project the caller cannot see
    path = f"/api/v1/datasets/{project_id}/storage-site"
    assert site_env.call("GET", path, "other").status_code == 404
    assert _variables(site_env, project_id) == {}
    assert site_env.call("GET", path, "developer").get_json()["storage_site"] is None


def test_a_project_without_dvc_config_is_not_a_dataset(site_env: SiteEnv, tmp_path: Path) -> None:
    project_id = _dataset(site_env, "plain", dvc=False)
    _local_site(site_env, tmp_path)
    answer = _select(site_env, project_id, "maintainer", "lab-disk")
    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "not_a_dataset"
    assert ".dvc/config" in answer.get_json()["error"]["message"]
    assert _variables(site_env, project_id) == {}


def test_an_unknown_site_is_named_in_a_404(site_env: SiteEnv) -> None:
    project_id = _dataset(site_env)
    answer = _select(site_env, project_id, "maintainer", "nowhere")
    assert answer.status_code == 404 and "'nowhere'" in answer.get_json()["error"]["message"]
    assert _variables(site_env, project_id) == {}
