"""The UI tests' world: the download tests' datasets (sandbox + moto S3 + a local site, real
git and dvc), one more dataset whose description, topic and file names hold markup, and the
service under gunicorn. Built once for the package; the tests only read it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest

from indexer.data.dvc_env import dvc_environment
from tests.conftest import S3Bucket
from tests.download.world import World, build, md5
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn

XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
XSS_FILE = '<img src=x onerror="window.__pwned=3">.txt'
MANY = 205  # files in tricks/tricky's folder `many/`: three pages of 100
LOST = "pics/victim.bin"  # pets/dogs' file whose bytes are deleted from the site


def _lose_bytes(world: World) -> None:
    """Delete the object of `LOST` from the `disk` site and re-sync, so the index marks it."""
    data = world.files[f"dogs/{LOST}"]
    digest = md5(data)
    stored = world.local_site / "sets" / str(world.dogs.id) / "files" / "md5" / digest[:2]
    (stored / digest[2:]).unlink()
    world.sync(world.dogs.id)


def _add_markup_dataset(world: World) -> None:
    """A public dataset whose user-written fields try to inject script (and a folder of
    `MANY` files), and a public dataset with no storage site selected."""
    group = world.admin.groups.create({"name": "tricks", "path": "tricks", "visibility": "public"})
    project = world.admin.projects.create(
        {
            "name": "tricky",
            "namespace_id": group.id,
            "visibility": "public",
            "description": f"Sneaky {XSS}",
            "topics": ["<b>bold</b>"],
        }
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "disk"})
    pointer = f"outs:\n- md5: {md5(b'x')}\n  size: 1\n  hash: md5\n  path: {XSS_FILE}\n"
    readme = f"# Tricky\n\n{XSS}\n\n[click](javascript:alert(1))\n"
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "Markup everywhere",
            "actions": [
                {"action": "create", "file_path": ".dvc/config", "content": "[core]\n"},
                {"action": "create", "file_path": "README.md", "content": readme},
                {"action": "create", "file_path": f"{XSS_FILE}.dvc", "content": pointer},
                *(
                    {"action": "create", "file_path": f"many/f{i:03d}.txt", "content": str(i)}
                    for i in range(MANY)
                ),
            ],
        }
    )
    world.sync(project.id)
    bare = world.admin.projects.create(
        {"name": "bare", "namespace_id": group.id, "visibility": "public"}
    )
    bare.commits.create(
        {
            "branch": "main",
            "commit_message": "A dataset without a storage site",
            "actions": [{"action": "create", "file_path": ".dvc/config", "content": "[core]\n"}],
        }
    )
    world.sync(bare.id)


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[World]:
    """The download world plus the markup dataset, indexed."""
    root = tmp_path_factory.mktemp("ui-world")
    sandbox = Sandbox(root / "gitlab").start()
    bucket = S3Bucket(endpoint_url=s3_endpoint, name=f"t-{uuid.uuid4().hex[:24]}")
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)
    made = World(
        sandbox=sandbox,
        admin=gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token),
        bucket=bucket,
        index_url=f"sqlite:///{root / 'data' / 'index.sqlite3'}",
        data_dir=root / "data",
        local_site=root / "site",
    )
    made.data_dir.mkdir()
    made.local_site.mkdir()
    try:
        (root / "work").mkdir()
        build(made, root / "work", dvc_environment(root / "dvc-state"))
        _add_markup_dataset(made)
        _lose_bytes(made)
        yield made
    finally:
        sandbox.stop()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket.name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket.name)


@pytest.fixture(scope="package")
def server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """The service under gunicorn."""
    started = start_gunicorn(tmp_path_factory.mktemp("gunicorn"), world.env(), workers=1)
    yield started
    started.stop()


@pytest.fixture(scope="package")
def artifacts() -> Path:
    """The git-ignored folder screenshots go to."""
    folder = Path(__file__).resolve().parents[2] / "artifacts" / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
