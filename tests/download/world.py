"""The datasets the download tests share, built once: real git + dvc pushed to the sandbox.

`cats` (private, group `vision`) keeps its bytes in moto S3 (site `lab`): v0.1.0 and v0.2.0
change the seed-shaped JPEG, v0.3.0 adds a DVC 2 pointer (no `hash:`, CRLF text, legacy key
uploaded with boto3) and a pointer whose object was never pushed; branch `feature` is not
indexed, so it is resolved live. `dogs` (public, group `pets`) keeps images in a local
site (`disk`). `offline` names an S3 site nothing listens on.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
from PIL import Image

from indexer.data.storage import StorageSite
from indexer.gitlab.reader import GitLabReader
from indexer.sites.registry import SiteRegistry
from indexer.store import open_index
from indexer.sync import refs as sync
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.support.dataset_repo import DatasetRepo
from tests.support.services import free_port

SEED_NAME = "1-410fad37671c209905a07d7b6867a9d1.jpg"
SEED_PATH = f"dataset/VITVI/{SEED_NAME}"
CRLF_TEXT = b"line one\r\nline two\r\nline three\r\n"


def md5(data: bytes) -> str:
    """Hex md5 of bytes."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def image(fmt: str, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> bytes:
    """A real image file in `fmt` (JPEG, PNG, WEBP, TIFF) with some structure."""
    picture = Image.new(mode, size, (seed * 40 % 256, 120, 200, 128)[: len(mode)])
    for x in range(0, size[0], 7):
        picture.putpixel((x, (x * 3 + seed) % size[1]), (255,) * len(mode))
    out = io.BytesIO()
    picture.save(out, fmt)
    return out.getvalue()


def blob(seed: int, size: int) -> bytes:
    """Distinct pseudo-random bytes (fast for megabytes)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 32  # 1 KiB
    pattern = bytes((b + i) % 256 for i, b in enumerate(block))
    return (pattern * (size // len(pattern) + 1))[:size]


@dataclass
class World:
    """Everything the download tests need, with the expected bytes of each file."""

    sandbox: Sandbox
    admin: gitlab.Gitlab
    bucket: S3Bucket
    index_url: str
    data_dir: Path
    local_site: Path
    cats: Any = None
    dogs: Any = None
    offline: Any = None
    shas: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """The service's DSHUB_* environment."""
        return {
            "DSHUB_DATA_DIR": str(self.data_dir),
            "DSHUB_INDEX_URL": self.index_url,
            "DSHUB_GITLAB_URL": self.sandbox.url,
            "DSHUB_GITLAB_TOKEN": self.sandbox.admin_token,
            "DSHUB_WEBHOOK_SECRET": "download-tests-secret",
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_FORMAT": "text",
            **extra,
        }

    def sync(self, project_id: int) -> None:
        """Index a project as the sync jobs do."""
        with open_index(self.index_url) as store:
            ctx = sync.SyncContext(
                reader=GitLabReader(self.sandbox.url, self.sandbox.admin_token, max_retries=1),
                store=store,
                sites=SiteRegistry(self.index_url).get,
            )
            assert sync.sync_project(ctx, project_id) == "synced"


def build(world: World, workdir: Path, dvc_env: dict[str, str]) -> None:
    """Create users, sites and the three datasets, push them, and index them."""
    admin, sandbox = world.admin, world.sandbox
    registry = SiteRegistry(world.index_url)
    registry.put(
        StorageSite(
            name="lab",
            kind="s3",
            bucket=world.bucket.name,
            prefix="team",
            endpoint_url=world.bucket.endpoint_url,
            region=world.bucket.region,
        )
    )
    registry.put(StorageSite(name="disk", kind="local", prefix="sets", path=str(world.local_site)))
    registry.put(
        StorageSite(
            name="offline",
            kind="s3",
            bucket="nowhere",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            region="us-east-1",
        )
    )
    vision = admin.groups.create({"name": "vision", "path": "vision", "visibility": "private"})
    pets = admin.groups.create({"name": "pets", "path": "pets", "visibility": "public"})
    for name, level in (("guest", 10), ("reporter", 20), ("outsider", None)):
        user, token = sandbox.create_user(name)
        world.tokens[name] = token
        if level is not None:
            vision.members.create({"user_id": user.id, "access_level": level})
    _, world.tokens["admin"] = sandbox.create_user("boss", admin=True)
    _build_cats(world, vision, workdir, dvc_env)
    _build_dogs(world, pets, workdir, dvc_env)
    _build_offline(world, pets)
    for project in (world.cats, world.dogs, world.offline):
        world.sync(project.id)


def _project(admin: gitlab.Gitlab, group: Any, name: str, visibility: str, site: str) -> Any:
    project = admin.projects.create(
        {
            "name": name,
            "namespace_id": group.id,
            "visibility": visibility,
            "initialize_with_readme": True,
        }
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": site})
    return project


def _build_cats(world: World, group: Any, workdir: Path, dvc_env: dict[str, str]) -> None:
    project = world.cats = _project(world.admin, group, "cats", "private", "lab")
    repo = DatasetRepo(
        workdir / "cats", world.sandbox.url, "vision/cats", world.sandbox.admin_token, dvc_env
    )
    repo.init_dvc_s3(world.bucket, f"team/{project.id}")
    files = world.files
    files["v1/seed"] = repo.write(SEED_PATH, image("JPEG", (64, 48), seed=1)).read_bytes()
    files["images/cat0.png"] = repo.write("images/cat0.png", image("PNG", (20, 20))).read_bytes()
    files["images/cat1.png"] = repo.write("images/cat1.png", blob(11, 3000)).read_bytes()
    files["images/sub/x.jpg"] = repo.write("images/sub/x.jpg", blob(12, 5000)).read_bytes()
    files["model.bin"] = repo.write("model.bin", blob(13, 2_500_000)).read_bytes()
    files["docs/notes.md"] = repo.write(
        "docs/notes.md", b"# Notes\n\nplain git file\n"
    ).read_bytes()
    repo.track(SEED_PATH, "images", "model.bin")
    world.shas["v0.1.0"] = repo.commit_and_push("First version")
    repo.tag("v0.1.0", "First version")

    files["v2/seed"] = repo.write(SEED_PATH, image("JPEG", (80, 60), seed=2)).read_bytes()
    repo.track(SEED_PATH)
    world.shas["v0.2.0"] = repo.commit_and_push("Second version")
    repo.tag("v0.2.0")

    # DVC 2 pointer by hand: no `hash:`, md5 of the LF text, object at the legacy key.
    lf_md5 = md5(CRLF_TEXT.replace(b"\r\n", b"\n"))
    files["legacy/notes.txt"] = CRLF_TEXT
    repo.write(
        "legacy/notes.txt.dvc",
        f"outs:\n- md5: {lf_md5}\n  size: {len(CRLF_TEXT)}\n  path: notes.txt\n".encode(),
    )
    world.bucket.client().put_object(
        Bucket=world.bucket.name,
        Key=f"team/{project.id}/{lf_md5[:2]}/{lf_md5[2:]}",
        Body=CRLF_TEXT,
    )
    ghost = md5(b"never pushed")
    repo.write(
        "missing/ghost.bin.dvc",
        f"outs:\n- md5: {ghost}\n  size: 12\n  hash: md5\n  path: ghost.bin\n".encode(),
    )
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "Add a DVC 2 pointer and a dangling one")
    repo.git("push", "-q", "origin", "HEAD:main")
    world.shas["v0.3.0"] = repo.git("rev-parse", "HEAD").strip()
    repo.tag("v0.3.0")

    repo.git("checkout", "-q", "-b", "feature")
    files["feature/new.bin"] = repo.write("feature/new.bin", blob(14, 7000)).read_bytes()
    repo.track("feature/new.bin")
    world.shas["feature"] = repo.commit_and_push("Feature work", branch="feature")


def _build_dogs(world: World, group: Any, workdir: Path, dvc_env: dict[str, str]) -> None:
    project = world.dogs = _project(world.admin, group, "dogs", "public", "disk")
    repo = DatasetRepo(
        workdir / "dogs", world.sandbox.url, "pets/dogs", world.sandbox.admin_token, dvc_env
    )
    remote = world.local_site / "sets" / str(project.id)
    remote.mkdir(parents=True)
    repo.init_dvc_local(remote)
    pictures = {
        "pics/photo.jpg": image("JPEG", (640, 480), seed=3),
        "pics/alpha.png": image("PNG", (300, 200), mode="RGBA", seed=4),
        "pics/pic.webp": image("WEBP", (500, 500), seed=5),
        "pics/scan.tiff": image("TIFF", (400, 300), seed=6),
        "pics/bomb.png": _bomb(),
        "pics/notes.txt": b"not an image\n",
        "pics/fake.png": b"this is no PNG at all",
        "pics/victim.bin": blob(15, 300_000),
    }
    for path, data in pictures.items():
        repo.write(path, data)
        world.files[f"dogs/{path}"] = data
    repo.track(*pictures)
    world.shas["dogs"] = repo.commit_and_push("Pictures")
    repo.tag("v1")


def _bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(out, "PNG")
    return out.getvalue()


def _build_offline(world: World, group: Any) -> None:
    project = world.offline = _project(world.admin, group, "offline", "public", "offline")
    pointer = f"outs:\n- md5: {md5(b'x')}\n  size: 1\n  hash: md5\n  path: a.bin\n"
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "Pointer to an unreachable site",
            "actions": [
                {"action": "create", "file_path": ".dvc/config", "content": "[core]\n"},
                {"action": "create", "file_path": "a.bin.dvc", "content": pointer},
            ],
        }
    )


def run_env(dvc_env: dict[str, str]) -> dict[str, str]:
    """The environment for subprocesses (curl, dshub) with the test's DVC state."""
    return {**os.environ, **dvc_env}
