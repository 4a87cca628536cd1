"""One world for the archive tests, built once per module and indexed on both backends.

The download tests' datasets (`tests.download.world`: `cats` private in S3 with v0.1.0,
v0.2.0, v0.3.0 and an unindexed branch; `dogs` public on a local site) plus `hostile`, a
dataset planted by hand: tracked directories whose `.dir` manifests name unsafe entries,
a file/folder clash, a pointer whose object holds other bytes, and a git file with the
same name as a tracked one. The service runs under gunicorn once per index backend.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gitlab
import pytest

from indexer.data.dvc_env import dvc_environment
from indexer.data.pointers import object_key
from indexer.sites.registry import SiteRegistry
from tests.conftest import S3Bucket
from tests.download.world import World, blob, build, md5
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn
from tests.support import services

HOSTILE_NAMES = {
    "backslash": "evil\\..\\name.txt",
    "drive": "C:evil.txt",
    "control": "bell\x07.txt",
    "dot": "a/./b.txt",
    "encoded": "%2e%2e/up.txt",
}
GOOD = blob(21, 4000)
TAMPERED = blob(22, 3000)
PROMISED = b"what the pointer promised"  # the bytes the pointer was made from


@dataclasses.dataclass
class ArchiveWorld:
    """The shared world and the hand-planted dataset."""

    base: World
    hostile: Any = None


def _put(bucket: S3Bucket, pid: int, key: str, body: bytes) -> None:
    bucket.client().put_object(Bucket=bucket.name, Key=f"team/{pid}/{key}", Body=body)


def _dir_pointer(name: str, manifest: list[dict[str, str]], bucket: S3Bucket, pid: int) -> str:
    raw = json.dumps(manifest).encode()
    digest = md5(raw)
    _put(bucket, pid, object_key("", digest, "md5", is_dir=True), raw)
    return f"outs:\n- md5: {digest}.dir\n  nfiles: {len(manifest)}\n  hash: md5\n  path: {name}\n"


def _build_hostile(world: World) -> Any:
    group = world.admin.groups.list(search="vision")[0]
    project = world.admin.projects.create(
        {"name": "hostile", "namespace_id": group.id, "initialize_with_readme": True}
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "lab"})
    pid, bucket = project.id, world.bucket
    good = md5(GOOD)
    _put(bucket, pid, object_key("", good, "md5", is_dir=False), GOOD)
    actions: list[dict[str, str]] = [
        {"action": "create", "file_path": ".dvc/config", "content": "[core]\n"}
    ]

    def pointer(path: str, content: str) -> None:
        actions.append({"action": "create", "file_path": path, "content": content})

    for label, name in HOSTILE_NAMES.items():
        entries = [{"md5": good, "relpath": "fine.txt"}, {"md5": good, "relpath": name}]
        pointer(f"{label}.dvc", _dir_pointer(label, entries, bucket, pid))
    pointer("good.dvc", _dir_pointer("good", [{"md5": good, "relpath": "fine.txt"}], bucket, pid))
    clash = [{"md5": good, "relpath": "x"}, {"md5": good, "relpath": "x/y"}]
    pointer("clash.dvc", _dir_pointer("clash", clash, bucket, pid))
    expected = md5(PROMISED)
    _put(bucket, pid, object_key("", expected, "md5", is_dir=False), TAMPERED)
    pointer(
        "bad/tampered.bin.dvc",
        f"outs:\n- md5: {expected}\n  size: {len(PROMISED)}\n  hash: md5\n  path: tampered.bin\n",
    )
    pointer("dup/same.txt.dvc", f"outs:\n- md5: {good}\n  hash: md5\n  path: same.txt\n")
    pointer("dup/same.txt", "a git file with a tracked file's name\n")
    project.commits.create({"branch": "main", "commit_message": "Plant", "actions": actions})
    return project


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[ArchiveWorld]:
    """The download world plus `hostile`, indexed into SQLite."""
    root = tmp_path_factory.mktemp("archive-world")
    sandbox = Sandbox(root / "gitlab").start()
    bucket = S3Bucket(endpoint_url=s3_endpoint, name=f"t-{uuid.uuid4().hex[:24]}")
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)
    base = World(
        sandbox=sandbox,
        admin=gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token),
        bucket=bucket,
        index_url=f"sqlite:///{root / 'data' / 'index.sqlite3'}",
        data_dir=root / "data",
        local_site=root / "site",
    )
    base.data_dir.mkdir()
    base.local_site.mkdir()
    try:
        (root / "work").mkdir()
        build(base, root / "work", dvc_environment(root / "dvc-state"))
        made = ArchiveWorld(base, _build_hostile(base))
        base.sync(made.hostile.id)
        yield made
    finally:
        sandbox.stop()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket.name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket.name)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest,
    world: ArchiveWorld,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin_url: str,
) -> Iterator[Gunicorn]:
    """The service under gunicorn on each index backend (the same datasets in both)."""
    if request.param == "sqlite":
        started = start_gunicorn(tmp_path_factory.mktemp("gunicorn"), world.base.env(), workers=1)
        yield started
        started.stop()
        return
    name = f"dshub_t_{uuid.uuid4().hex[:16]}"
    with services.scratch_database(postgres_admin_url, name) as url:
        data_dir = Path(tmp_path_factory.mktemp("data-pg"))
        other = dataclasses.replace(world.base, index_url=url, data_dir=data_dir)
        registry = SiteRegistry(url)
        for site in SiteRegistry(world.base.index_url).list():
            registry.put(site)
        for project in (other.cats, other.dogs, other.offline, world.hostile):
            other.sync(project.id)
        started = start_gunicorn(tmp_path_factory.mktemp("gunicorn-pg"), other.env(), workers=1)
        yield started
        started.stop()
