"""The whole path: git push to GitLab → webhook → receiver → RQ → worker → index → search API.

Real git and dvc push to the sandbox (smart HTTP) and to moto S3; the sandbox delivers its
webhooks over HTTP to a gunicorn-served dshub with Redis; `dshub worker --burst` runs the
jobs; the REST API answers as GitLab's permissions say — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests

from indexer.data.storage import StorageSite
from indexer.sites.registry import SiteRegistry
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, dshub, start_gunicorn, work_until
from tests.support.dataset_repo import DatasetRepo, image_bytes

SECRET = "e2e-webhook-secret"


@pytest.fixture
def service_env(
    tmp_path: Path, redis_url: str, gitlab_sandbox: Sandbox, index_url: str, dvc_env: dict[str, str]
) -> dict[str, str]:
    return {
        **dvc_env,
        "DSHUB_DATA_DIR": str(tmp_path / "data"),
        "DSHUB_WEBHOOK_SECRET": SECRET,
        "DSHUB_REDIS_URL": redis_url,
        "DSHUB_GITLAB_URL": gitlab_sandbox.url,
        "DSHUB_GITLAB_TOKEN": gitlab_sandbox.admin_token,
        "DSHUB_INDEX_URL": index_url,
        "DSHUB_LOG_FORMAT": "text",
    }


@pytest.fixture
def service(tmp_path: Path, service_env: dict[str, str]) -> Any:
    server = start_gunicorn(tmp_path / "gunicorn", service_env, workers=1)
    yield server
    server.stop()


def _settle(sandbox: Sandbox, at_least: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = sandbox.deliveries()
        if len(records) >= at_least and all(r.outcome != "pending" for r in records):
            failed = [r for r in records if r.outcome != "delivered"]
            assert not failed, [(r.event, r.outcome, r.status, r.error) for r in failed]
            return
        time.sleep(0.05)
    raise AssertionError(f"webhooks did not settle: {sandbox.deliveries()}")


def test_pushed_dataset_becomes_searchable_and_versions_follow_tags(
    tmp_path: Path,
    service: Gunicorn,
    service_env: dict[str, str],
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    s3_bucket: S3Bucket,
    index_url: str,
    dvc_env: dict[str, str],
) -> None:
    SiteRegistry(index_url).put(
        StorageSite(
            name="lab",
            kind="s3",
            bucket=s3_bucket.name,
            prefix="team",
            endpoint_url=s3_bucket.endpoint_url,
            region=s3_bucket.region,
        )
    )
    installed = dshub(
        service_env, "hooks", "install", "--system", "--url", f"{service.url}/webhooks/gitlab"
    )
    assert installed.returncode == 0, installed.stderr
    hook = gitlab_admin.hooks.list()[0]
    assert hook.push_events and hook.tag_push_events

    group = gitlab_admin.groups.create({"name": "vision", "path": "vision"})
    project = gitlab_admin.projects.create(
        {
            "name": "cats",
            "namespace_id": group.id,
            "visibility": "private",
            "initialize_with_readme": True,
            "description": "Cat pictures",
        }
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "lab"})
    repo = DatasetRepo(
        tmp_path / "work", gitlab_sandbox.url, "vision/cats", gitlab_sandbox.admin_token, dvc_env
    )
    repo.init_dvc_s3(s3_bucket, f"team/{project.id}")
    repo.write("images/cat0.png", image_bytes(0))
    repo.write("images/cat1.png", image_bytes(1))
    repo.track("images")
    repo.commit_and_push("Add cats")
    repo.tag("v0.1.0", "First version")
    _settle(gitlab_sandbox, at_least=3)
    admin = {"PRIVATE-TOKEN": gitlab_sandbox.admin_token}

    def versions_of_project() -> list[str]:
        answer = requests.get(
            f"{service.url}/api/v1/datasets/{project.id}/versions", headers=admin, timeout=10
        )
        return [v["name"] for v in answer.json()["items"]] if answer.ok else []

    work_until(service_env, lambda: versions_of_project() == ["v0.1.0"])
    found = requests.get(
        f"{service.url}/api/v1/datasets", params={"q": "cats"}, headers=admin, timeout=10
    ).json()
    assert [item["id"] for item in found["items"]] == [project.id]
    anonymous = requests.get(
        f"{service.url}/api/v1/datasets", params={"q": "cats"}, timeout=10
    ).json()
    assert anonymous["total"] == 0 and anonymous["items"] == []
    # The seed's cookie works like a header.
    cookie = requests.get(
        f"{service.url}/api/v1/datasets/{project.id}/versions",
        cookies={"tokenGitLab": gitlab_sandbox.admin_token},
        timeout=10,
    )
    assert [v["name"] for v in cookie.json()["items"]] == ["v0.1.0"]
    assert cookie.json()["items"][0]["file_count"] == 2
    private = requests.get(f"{service.url}/api/v1/datasets/{project.id}", timeout=10)
    assert private.status_code == 404
    files = requests.get(
        f"{service.url}/api/v1/files", params={"q": "cat1"}, headers=admin, timeout=10
    ).json()
    assert [f["path"] for f in files["items"] if f["ref"] == "v0.1.0"] == ["images/cat1.png"]

    # The command line sees the same, through the REST API only.
    cli_env = {
        "DSHUB_URL": service.url,
        "DSHUB_TOKEN": gitlab_sandbox.admin_token,
        "DSHUB_CONFIG": str(tmp_path / "no-config.json"),
    }
    searched = dshub(cli_env, "search", "cats", "--json")
    assert searched.returncode == 0, searched.stderr
    assert [item["id"] for item in json.loads(searched.stdout)["items"]] == [project.id]
    listed = dshub(cli_env, "versions", "--project-id", str(project.id))
    assert listed.returncode == 0 and listed.stdout.split()[0] == "v0.1.0", listed.stdout
    hidden = dshub({**cli_env, "DSHUB_TOKEN": ""}, "versions", "--project-id", str(project.id))
    assert hidden.returncode == 3 and "not found" in hidden.stderr

    # Deleting the tag in GitLab removes the version.
    project.tags.delete("v0.1.0")
    _settle(gitlab_sandbox, at_least=4)
    work_until(service_env, lambda: versions_of_project() == [])
    versions = requests.get(
        f"{service.url}/api/v1/datasets/{project.id}/versions", headers=admin, timeout=10
    ).json()
    assert versions["items"] == []
    bad = requests.get(
        f"{service.url}/api/v1/datasets", headers={"PRIVATE-TOKEN": "nope"}, timeout=10
    )
    assert bad.status_code == 401
