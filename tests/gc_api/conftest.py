"""One dataset world for the gc endpoint tests: sandbox, real git + dvc, a local storage site.

Built once per module (dvc is slow to start); each test gets the storage directory restored
to its pristine state (mtimes included) and a fresh application.

History of `vision/cats` (private):
  v1     a.bin = "A", imgs/ (i1, i2)           <- tag (indexed)
  c      + c.bin = "C"                         <- plain commit (not indexed)
  main   a.bin = "B", c.bin removed, imgs/     <- default branch (indexed)
plus an old orphan and a young orphan written straight into storage.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab
import pytest
from flask import Flask

from indexer.data.dvc_env import dvc_environment
from indexer.data.storage import StorageSite
from indexer.gitlab.reader import GitLabReader
from indexer.sites.registry import SiteRegistry
from indexer.store import open_index
from indexer.sync import refs as sync
from tests.gitlab_sandbox.server import Sandbox
from tests.support.dataset_repo import DatasetRepo, pointer_md5
from webhook_service.app import create_app

OLD = time.time() - 100 * 3600
OLD_ORPHAN = "files/md5/0a/bcdef0123456789abcdef012345678"
YOUNG_ORPHAN = "files/md5/0b/bcdef0123456789abcdef012345678"


@dataclass
class World:
    """The module's dataset and everyone who calls dshub about it."""

    sandbox: Sandbox
    root: Path
    project: Any
    other_project: Any
    users: dict[str, tuple[Any, str]]
    storage: Path
    pristine: Path
    oids: dict[str, str]
    env: dict[str, str]

    def files(self) -> set[str]:
        """Keys stored for the dataset now."""
        return {
            p.relative_to(self.storage).as_posix() for p in self.storage.rglob("*") if p.is_file()
        }

    def token(self, name: str) -> str:
        """The personal access token of user `name`."""
        return self.users[name][1]

    def job_token(self, name: str, project: Any | None = None, ref: str | None = None) -> str:
        """A running CI job token of `project` (default: the dataset) started by `name`."""
        target = project or self.project
        return self.sandbox.create_job_token(target.id, self.users[name][0], ref=ref)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("gc-world")
    sandbox = Sandbox(root / "sandbox").start()
    try:
        yield _build(sandbox, root)
    finally:
        sandbox.stop()


def _build(sandbox: Sandbox, root: Path) -> World:
    admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
    group = admin.groups.create({"name": "vision", "path": "vision"})
    project = admin.projects.create(
        {"name": "cats", "namespace_id": group.id, "visibility": "private"}
    )
    other = admin.projects.create(
        {"name": "dogs", "namespace_id": group.id, "visibility": "private"}
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "lab"})
    users: dict[str, tuple[Any, str]] = {}
    for name, level in (("mia", 40), ("dev", 30), ("rep", 20), ("out", 0)):
        users[name] = sandbox.create_user(name)
        if level:
            for target in (project, other):
                target.members.create({"user_id": users[name][0].id, "access_level": level})

    site_root = root / "sites" / "lab"
    storage = site_root / "team" / str(project.id)
    storage.mkdir(parents=True)
    dvc_env = dvc_environment(root / "_dvc_state")
    (root / "work").mkdir()
    repo = DatasetRepo(
        root / "work" / "cats", sandbox.url, "vision/cats", sandbox.admin_token, dvc_env
    )
    repo.init_dvc_local(storage)
    repo.write("a.bin", b"A" * 64)
    for name in ("i1", "i2"):
        repo.write(f"imgs/{name}.png", name.encode() * 32)
    repo.track("a.bin", "imgs")
    oids = {"a_v1": pointer_md5(repo, "a.bin.dvc"), "dir": pointer_md5(repo, "imgs.dvc")}
    repo.commit_and_push("Version 1")
    repo.tag("v1", "First version")
    repo.write("c.bin", b"C" * 64)
    repo.track("c.bin")
    oids["c"] = pointer_md5(repo, "c.bin.dvc")
    repo.commit_and_push("Add c")
    repo.git("rm", "-q", "c.bin.dvc")
    repo.write("a.bin", b"B" * 64)
    repo.track("a.bin")
    oids["a_main"] = pointer_md5(repo, "a.bin.dvc")
    repo.commit_and_push("Version 2")
    for key in (OLD_ORPHAN, YOUNG_ORPHAN):
        (storage / key).parent.mkdir(parents=True, exist_ok=True)
        (storage / key).write_bytes(b"orphan bytes")
    for path in storage.rglob("*"):
        if path.is_file() and not path.as_posix().endswith(YOUNG_ORPHAN):
            os.utime(path, (OLD, OLD))
    pristine = root / "pristine"
    shutil.copytree(storage, pristine)

    index_url = f"sqlite:///{root / 'index.sqlite3'}"
    registry = SiteRegistry(index_url)
    registry.put(StorageSite(name="lab", kind="local", path=str(site_root), prefix="team"))
    with open_index(index_url) as store:
        ctx = sync.SyncContext(
            reader=GitLabReader(sandbox.url, sandbox.admin_token, max_retries=1),
            store=store,
            sites=registry.get,
        )
        assert sync.sync_project(ctx, project.id) == "synced"
    env = {
        "DSHUB_DATA_DIR": str(root / "data"),
        "DSHUB_INDEX_URL": index_url,
        "DSHUB_GITLAB_URL": sandbox.url,
        "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
        "DSHUB_WEBHOOK_SECRET": "s3cret-for-tests",
        "DSHUB_RECONCILE_INTERVAL": "0",
        "DSHUB_LOG_FORMAT": "json",
    }
    return World(sandbox, root, project, other, users, storage, pristine, oids, env)


@pytest.fixture
def dataset_world(world: World) -> World:
    """The module's world with its storage restored to the pristine copy."""
    shutil.rmtree(world.storage)
    shutil.copytree(world.pristine, world.storage)  # copy2: mtimes kept
    return world


@pytest.fixture
def app(dataset_world: World) -> Flask:
    """A fresh dshub application over the world's index and sandbox."""
    return create_app(dataset_world.env)
