"""The datasets of a run and what the harness knows it put there.

Datasets are made in the sandbox with API commits (DVC's own `.dvc` files), get the S3 site
selected through dshub, and receive files only through dshub's upload-session API
(`dshub.upload.upload`), so every pointer in GitLab has its object in the site and every
object the harness was told is stored can be re-hashed later.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab

from bench.reliability.system import SITE, System
from dshub.client import ApiClient
from dshub.config import ClientConfig
from dshub.upload import collect, upload

DVC_INIT = [
    {"action": "create", "file_path": ".dvc/config", "content": ""},
    {
        "action": "create",
        "file_path": ".dvc/.gitignore",
        "content": "/config.local\n/tmp\n/cache\n",
    },
    {"action": "create", "file_path": ".dvcignore", "content": ""},
]


@dataclass(frozen=True)
class StoredFile:
    """A file dshub answered as committed: where it is, and its bytes' md5."""

    project_id: int
    path: str
    md5: str
    size: int
    confirmed: float = 0.0  # time.monotonic() when dshub answered the commit


@dataclass
class World:
    """The run's datasets and every file dshub confirmed; thread-safe."""

    system: System
    seed: int
    datasets: list[int] = field(default_factory=list)
    files: list[StoredFile] = field(default_factory=list)
    heads: dict[int, str] = field(default_factory=dict)  # project → last known main sha
    quiet: set[int] = field(default_factory=set)  # datasets the load must not write to or replay
    lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: int = 0

    def client(self, timeout: float = 60) -> ApiClient:
        """dshub's REST client as the sandbox admin."""
        assert self.system.gunicorn is not None and self.system.sandbox is not None
        config = ClientConfig(self.system.gunicorn.url, self.system.sandbox.admin_token)
        return ApiClient(config, timeout=timeout)

    def create(self, count: int) -> None:
        """`count` datasets in group `soak`, each with the S3 site selected."""
        gl = self.system.gitlab()
        group = gl.groups.create({"name": "soak", "path": "soak", "visibility": "public"})
        client = self.client()
        for number in range(count):
            project = gl.projects.create(
                {
                    "name": f"soak-{number:03d}",
                    "namespace_id": group.id,
                    "visibility": "public",
                    "description": f"soak dataset {number} retina",
                }
            )
            made = project.commits.create(
                {"branch": "main", "commit_message": "dvc init", "actions": DVC_INIT}
            )
            client.request(
                "POST", f"/api/v1/datasets/{project.id}/storage-site", json={"name": SITE}
            )
            with self.lock:
                self.datasets.append(int(project.id))
                self.heads[int(project.id)] = str(made.id)

    def upload_files(
        self, project_id: int, sizes: list[int], workdir: Path, client: ApiClient | None = None
    ) -> list[StoredFile]:
        """Upload fresh random files (one commit) through dshub; record them once committed."""
        with self.lock:
            self._counter += 1
            batch = self._counter
        rng = random.Random(f"{self.seed}-{batch}")
        folder = workdir / f"batch-{batch}"
        folder.mkdir(parents=True)
        made = {}
        for number, size in enumerate(sizes):
            data = rng.randbytes(size)
            name = f"f{batch:05d}-{number}.bin"
            (folder / name).write_bytes(data)
            made[name] = (hashlib.md5(data).hexdigest(), size)  # noqa: S324 - DVC's id
        answer = upload(
            client or self.client(),
            project_id,
            collect([str(folder)]),
            options={"folder": f"b{batch:05d}", "layout": "files", "confirm": True},
            message=f"soak batch {batch}",
            jobs=2,
            progress=False,
        )
        if not answer.get("commit"):
            raise RuntimeError(f"upload did not commit: {answer}")
        stored = [
            StoredFile(project_id, f"b{batch:05d}/{name}", md5, size, time.monotonic())
            for name, (md5, size) in made.items()
        ]
        with self.lock:
            self.files.extend(stored)
            commit = answer["commit"]
            self.heads[project_id] = str(commit.get("id") if isinstance(commit, dict) else commit)
        for item in folder.iterdir():
            item.unlink()
        folder.rmdir()
        return stored

    def readme_commit(self, gl: gitlab.Gitlab, project_id: int) -> str:
        """A commit in GitLab that touches no pointer (a push event, nothing to store)."""
        project = gl.projects.get(project_id, lazy=True)
        stamp = f"{time.time_ns()}"
        made: Any = project.commits.create(
            {
                "branch": "main",
                "commit_message": f"notes {stamp}",
                "actions": [
                    {"action": "create", "file_path": f"notes/{stamp}.md", "content": stamp}
                ],
            }
        )
        with self.lock:
            self.heads[project_id] = str(made.id)
        return str(made.id)

    def pick_dataset(self, rng: random.Random) -> int:
        """A random dataset the load may write to (every one unless some are kept quiet)."""
        with self.lock:
            open_ = [d for d in self.datasets if d not in self.quiet] or self.datasets
            return rng.choice(open_)

    def pick_file(self, rng: random.Random, older_than: float = 0.0) -> StoredFile | None:
        """A random confirmed file, confirmed at least `older_than` seconds ago (or None)."""
        limit = time.monotonic() - older_than
        with self.lock:
            count = len(self.files)
            while count and self.files[count - 1].confirmed > limit:
                count -= 1
            return self.files[rng.randrange(count)] if count else None
