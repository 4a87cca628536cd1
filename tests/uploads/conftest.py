"""A world for the write path: the GitLab sandbox, dshub (embedded worker, SQLite index), a moto
S3 bucket as a direct-mode storage site, and a private dataset `lab/cells` whose site was
selected through dshub's API (so `.dvc/config` names the remote `dshub`).

Members of `lab/cells`: mia Maintainer, dev Developer, rep Reporter, gus Guest; out is in no
project. `UploadWorld.clone` makes a working copy that can `dvc pull` from the bucket.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import pytest
from flask import Flask
from flask.testing import FlaskClient

from indexer.data.storage import StorageSite
from indexer.sites.registry import SiteRecord, SiteRegistry, validated
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.support import services
from tests.support.dataset_repo import DatasetRepo
from webhook_service import create_app
from webhook_service.app_settings import services as app_services

ROLES = {"mia": 40, "dev": 30, "rep": 20, "gus": 10}
KEYS = {"access_key_id": services.S3_ACCESS_KEY, "secret_access_key": services.S3_SECRET_KEY}
PUBLIC_URL = "http://dshub.test:8000"
MAX_BYTES = 256 * 1024
POINTER_WARN = 40


@dataclass
class UploadWorld:
    """The service under test, its sandbox and bucket, and who calls it."""

    app: Flask
    client: FlaskClient
    sandbox: Sandbox
    admin: gitlab.Gitlab
    bucket: S3Bucket
    root: Path
    dvc_env: dict[str, str]
    project: Any = None
    group: Any = None
    config: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return int(self.project.id)

    def call(self, method: str, path: str, who: str | None = None, **kwargs: Any) -> Any:
        """A request as `who` (None = anonymous)."""
        headers = {"PRIVATE-TOKEN": self.tokens[who]} if who else {}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def upload(
        self,
        who: str | None,
        files: dict[str, bytes],
        pid: int | None = None,
        query: str = "",
        **fields: Any,
    ) -> Any:
        """`POST /api/v1/datasets/<id>/files` with `files[]` parts and form `fields`."""
        data: dict[str, Any] = {
            k: str(v).lower() if isinstance(v, bool) else v for k, v in fields.items()
        }
        data["files[]"] = [(io.BytesIO(content), name) for name, content in files.items()]
        path = f"/api/v1/datasets/{pid or self.pid}/files" + (f"?{query}" if query else "")
        return self.call("POST", path, who, data=data, content_type="multipart/form-data")

    def pointer(self, path: str, ref: str = "main") -> bytes:
        """A git file's bytes on `ref`, read from GitLab."""
        return bytes(self.admin.projects.get(self.pid).files.get(path, ref=ref).decode())

    def clone(self, name: str, ref: str | None = None) -> DatasetRepo:
        """A working copy (as root) configured to reach the bucket with DVC."""
        repo = DatasetRepo(
            self.root / name,
            self.sandbox.url,
            self.project.path_with_namespace,
            self.sandbox.admin_token,
            {
                **self.dvc_env,
                "AWS_ACCESS_KEY_ID": services.S3_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": services.S3_SECRET_KEY,
                "AWS_DEFAULT_REGION": services.S3_REGION,
            },
        )
        if ref:
            repo.git("checkout", "-q", ref)
        repo.dvc("remote", "modify", "--local", "dshub", "endpointurl", self.bucket.endpoint_url)
        return repo


def make_dataset(world: UploadWorld, group: Any, name: str) -> Any:
    """A private DVC repository (as `dvc init` leaves it) with the members of ROLES."""
    project = world.admin.projects.create(
        {"name": name, "namespace_id": group.id, "visibility": "private"}
    )
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "Initialize DVC",
            "actions": [
                {"action": "create", "file_path": ".dvc/config", "content": ""},
                {
                    "action": "create",
                    "file_path": ".dvc/.gitignore",
                    "content": "/config.local\n/tmp\n/cache\n",
                },
                {"action": "create", "file_path": ".dvcignore", "content": "# DVC ignore\n"},
                {"action": "create", "file_path": "README.md", "content": "# cells\n"},
            ],
        }
    )
    for user, level in ROLES.items():
        project.members.create({"user_id": world.user_ids[user], "access_level": level})
    return project


def select_site(world: UploadWorld, pid: int) -> None:
    """Choose the bucket for dataset `pid` through dshub, as its Maintainer."""
    answer = world.call(
        "POST", f"/api/v1/datasets/{pid}/storage-site", "mia", json={"name": "moto"}
    )
    assert answer.status_code == 201, answer.get_json()


def make_world(
    root: Path,
    sandbox: Sandbox,
    admin: gitlab.Gitlab,
    bucket: S3Bucket,
    dvc_env: dict[str, str],
) -> UploadWorld:
    """The world under `root`: `lab/cells` on the moto site (selected), users of ROLES + out.
    The caller closes `app_services(world.app)`."""
    creds = root / "credentials.json"
    creds.write_text(json.dumps({"moto-rw": KEYS, "moto-ro": KEYS}))
    index_url = f"sqlite:///{root / 'data' / 'index.sqlite3'}"
    config = {
        "DSHUB_DATA_DIR": str(root / "data"),
        "DSHUB_INDEX_URL": index_url,
        "DSHUB_GITLAB_URL": sandbox.url,
        "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
        "DSHUB_STORAGE_CREDENTIALS_FILE": str(creds),
        "DSHUB_PUBLIC_URL": PUBLIC_URL,
        "DSHUB_RECONCILE_INTERVAL": "0",
        "DSHUB_LOG_FORMAT": "text",
        "DSHUB_UPLOAD_MAX_BYTES": str(MAX_BYTES),
        "DSHUB_UPLOAD_POINTER_WARN": str(POINTER_WARN),
    }
    app = create_app(config)
    site = StorageSite(
        name="moto",
        kind="s3",
        bucket=bucket.name,
        prefix="datasets",
        endpoint_url=bucket.endpoint_url,
        region=bucket.region,
        access_mode="direct",
        credentials_ref="moto-rw",
    )
    SiteRegistry(index_url).save(validated(SiteRecord(site, "moto-ro")))
    world = UploadWorld(app, app.test_client(), sandbox, admin, bucket, root, dvc_env)
    for name in (*ROLES, "out"):
        user, token = sandbox.create_user(name)
        world.tokens[name] = token
        world.user_ids[name] = user.id
    world.tokens["admin"] = sandbox.admin_token
    world.config = config
    group = admin.groups.create({"name": "lab", "path": "lab", "visibility": "private"})
    world.group = group
    world.project = make_dataset(world, group, "cells")
    select_site(world, world.pid)
    return world


@pytest.fixture
def upload_world(
    tmp_path: Path,
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    s3_bucket: S3Bucket,
    dvc_env: dict[str, str],
) -> Iterator[UploadWorld]:
    """The world with `lab/cells` on the moto site (selected) and `lab/empty` without a site."""
    world = make_world(tmp_path, gitlab_sandbox, gitlab_admin, s3_bucket, dvc_env)
    try:
        yield world
    finally:
        app_services(world.app).close()
