"""One world for the test package of dshub's DVC remote: the GitLab sandbox, a gunicorn-served
dshub, storage sites (a local directory and moto S3, in proxy mode; an S3 site in direct
mode) and datasets in the `vision` group whose `.dvc/config` names `<dshub>/dvc/<id>`.

Datasets (all private unless noted):
  cats   local proxy site `lab` (prefix `team`), selected through dshub's API by a Maintainer
  birds  S3 proxy site `bucket` (prefix `proxy`), selected in the registry, never indexed
  seals  public, local site `lab`
  dogs   S3 site `direct` in direct access mode
  fish   no storage site
Members: mia Maintainer, dev Developer, rep Reporter, gus Guest of every project; out is in
no project. dshub's upload limit is `MAX_OBJECT_BYTES` so the 413 path is cheap to reach.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests

from indexer.data.dvc_env import dvc_environment
from indexer.data.storage import StorageSite
from indexer.sites.registry import SiteRecord, SiteRegistry
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn
from tests.support.dataset_repo import DatasetRepo
from tests.support.services import free_port

MAX_OBJECT_BYTES = 4 * 1024 * 1024
ROLES = {"mia": 40, "dev": 30, "rep": 20, "gus": 10}
SITE_CREDENTIALS = "moto-rw"


@dataclass
class World:
    """The package's sandbox, dshub, sites and datasets."""

    sandbox: Sandbox
    server: Gunicorn
    root: Path
    index_url: str
    bucket: S3Bucket
    projects: dict[str, Any]
    users: dict[str, tuple[Any, str]]
    lab: Path  # the local site's root
    dvc_env: dict[str, str]

    def token(self, name: str) -> str:
        """User `name`'s personal access token."""
        return self.users[name][1]

    def pid(self, dataset: str) -> int:
        """The project id of dataset `dataset`."""
        return int(self.projects[dataset].id)

    def remote_url(self, dataset: str) -> str:
        """dshub's DVC remote of `dataset` (what its `.dvc/config` names)."""
        return f"{self.server.url}/dvc/{self.pid(dataset)}"

    def lab_files(self, dataset: str) -> dict[str, bytes]:
        """Keys and bytes stored for `dataset` on the local site."""
        base = self.lab / "team" / str(self.pid(dataset))
        if not base.exists():
            return {}
        return {
            p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()
        }

    def bucket_keys(self, dataset: str) -> set[str]:
        """Keys stored for `dataset` in the S3 site, relative to its prefix."""
        prefix = f"proxy/{self.pid(dataset)}/"
        client = self.bucket.client()
        keys: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket.name, Prefix=prefix
        ):
            keys.update(item["Key"][len(prefix) :] for item in page.get("Contents", []))
        return keys

    def staged_uploads(self) -> list[Path]:
        """Upload temp files left in dshub's data directory."""
        uploads = self.root / "data" / "dvc-uploads"
        return sorted(uploads.glob("*")) if uploads.exists() else []

    def job_token(self, dataset: str, user: str = "dev") -> str:
        """A running CI job of `dataset`'s project started by `user`."""
        return self.sandbox.create_job_token(self.pid(dataset), self.users[user][0])

    def clone(self, dataset: str, name: str, user: str) -> DatasetRepo:
        """A working copy of `dataset` cloned with `user`'s token, DVC auth set `--local`."""
        repo = DatasetRepo(
            self.root / "work" / name,
            self.sandbox.url,
            f"vision/{dataset}",
            self.token(user),
            self.dvc_env,
        )
        use_token(repo, user, self.token(user))
        return repo


def use_token(repo: DatasetRepo, user: str, token: str) -> None:
    """What the README tells a person to run: basic auth with their token, never committed."""
    repo.dvc("remote", "modify", "--local", "dshub", "auth", "basic")
    repo.dvc("remote", "modify", "--local", "dshub", "user", user)
    repo.dvc("remote", "modify", "--local", "dshub", "password", token)


@pytest.fixture(scope="package")
def module_bucket(s3_endpoint: str) -> Iterator[S3Bucket]:
    """A bucket on the session's moto server for this package (emptied afterwards)."""
    bucket = S3Bucket(endpoint_url=s3_endpoint, name=f"r-{uuid.uuid4().hex[:24]}")
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)
    yield bucket
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket.name, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket.name)


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory, module_bucket: S3Bucket) -> Iterator[World]:
    root = tmp_path_factory.mktemp("dvc-remote")
    sandbox = Sandbox(root / "sandbox").start()
    server: Gunicorn | None = None
    try:
        credentials = root / "credentials.json"
        credentials.write_text(
            json.dumps(
                {
                    SITE_CREDENTIALS: {
                        "access_key_id": module_bucket.access_key,
                        "secret_access_key": module_bucket.secret_key,
                    },
                    "moto-ro": {
                        "access_key_id": module_bucket.access_key,
                        "secret_access_key": module_bucket.secret_key,
                    },
                }
            )
        )
        index_url = f"sqlite:///{root / 'index.sqlite3'}"
        port = free_port()
        server = start_gunicorn(
            root / "gunicorn",
            {
                # The remote URL datasets commit must be the one dshub publishes (gc compares).
                "DSHUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "DSHUB_DATA_DIR": str(root / "data"),
                "DSHUB_INDEX_URL": index_url,
                "DSHUB_GITLAB_URL": sandbox.url,
                "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
                "DSHUB_WEBHOOK_SECRET": "s3cret-for-tests",
                "DSHUB_RECONCILE_INTERVAL": "0",
                "DSHUB_STORAGE_CREDENTIALS_FILE": str(credentials),
                "DSHUB_DVC_MAX_OBJECT_BYTES": str(MAX_OBJECT_BYTES),
                "DSHUB_LOG_FORMAT": "json",
            },
            workers=2,
            port=port,
        )
        yield _build(sandbox, server, root, index_url, module_bucket)
    finally:
        if server is not None:
            server.stop()
        sandbox.stop()


def _build(
    sandbox: Sandbox, server: Gunicorn, root: Path, index_url: str, bucket: S3Bucket
) -> World:
    admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
    # Public group: GitLab refuses a project more visible than its group (seals is public).
    group = admin.groups.create({"name": "vision", "path": "vision", "visibility": "public"})
    projects: dict[str, Any] = {}
    for name in ("cats", "birds", "seals", "dogs", "fish"):
        visibility = "public" if name == "seals" else "private"
        projects[name] = admin.projects.create(
            {"name": name, "namespace_id": group.id, "visibility": visibility}
        )
    users = {name: sandbox.create_user(name) for name in (*ROLES, "out")}
    for name, level in ROLES.items():
        for project in projects.values():
            project.members.create({"user_id": users[name][0].id, "access_level": level})

    lab = root / "sites" / "lab"
    lab.mkdir(parents=True)
    registry = SiteRegistry(index_url)
    registry.put(StorageSite(name="lab", kind="local", path=str(lab), prefix="team"))
    for name, mode, prefix in (("bucket", "proxy", "proxy"), ("direct", "direct", "direct")):
        site = StorageSite(
            name=name,
            kind="s3",
            bucket=bucket.name,
            prefix=prefix,
            endpoint_url=bucket.endpoint_url,
            region=bucket.region,
            access_mode=mode,
            credentials_ref=SITE_CREDENTIALS,
        )
        readonly = "moto-ro" if mode == "direct" else None
        registry.save(SiteRecord(site, credentials_ref_readonly=readonly))
    dvc_env = dvc_environment(root / "_dvc_state")
    (root / "work").mkdir()
    world = World(sandbox, server, root, index_url, bucket, projects, users, lab, dvc_env)
    for name in projects:
        # Each dataset starts as `dvc init` + the remote naming dshub, pushed by its Maintainer.
        repo = DatasetRepo(
            root / "work" / f"{name}-init",
            sandbox.url,
            f"vision/{name}",
            world.token("mia"),
            dvc_env,
        )
        repo.dvc("init", "-q")
        repo.dvc("remote", "add", "-d", "dshub", world.remote_url(name))
        repo.git("add", "-A")
        repo.git("commit", "-q", "-m", "Start the dataset")
        repo.git("push", "-q", "origin", "HEAD:main")
    answer = requests.post(
        f"{server.url}/api/v1/datasets/{world.pid('cats')}/storage-site",
        headers={"PRIVATE-TOKEN": world.token("mia")},
        json={"name": "lab"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    registry.select(world.pid("birds"), "bucket", None)
    registry.select(world.pid("seals"), "lab", None)
    registry.select(world.pid("dogs"), "direct", None)
    return world
