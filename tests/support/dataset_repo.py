"""Real dataset repositories for tests: git + dvc in a working copy, pushed to the sandbox.

`DatasetRepo` clones a sandbox project over smart HTTP, runs the real `dvc` command to track
files and push their bytes to a storage site (moto S3 or a local directory), and pushes
commits and tags back with `git push` — exactly what a user does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from indexer.data.pointers import LEGACY_HASH
from indexer.data.pointers import object_key as pointer_object_key
from tests.conftest import S3Bucket


def object_key(oid: str, legacy: bool = False) -> str:
    """The remote key of an object id (`<md5>` or `<md5>.dir`), by the indexer's own rule."""
    md5, is_dir = oid.removesuffix(".dir"), oid.endswith(".dir")
    return pointer_object_key("", md5, LEGACY_HASH if legacy else "md5", is_dir)


class _WorkingCopy(Protocol):
    @property
    def path(self) -> Path: ...


def pointer_md5(repo: _WorkingCopy, pointer: str) -> str:
    """The `md5:` of a pointer's first output in `repo`'s working copy (`.dir` for directories)."""
    return (repo.path / pointer).read_text().split("md5: ", 1)[1].split()[0]


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, failing the test with its output when it fails."""
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


class DatasetRepo:
    """A working copy of a sandbox project, set up as a DVC repository."""

    def __init__(
        self,
        workdir: Path,
        sandbox_url: str,
        project_path: str,
        token: str,
        dvc_env: dict[str, str],
    ) -> None:
        self.path = workdir
        self.env = {**dvc_env, "GIT_TERMINAL_PROMPT": "0"}
        host = urlsplit(sandbox_url).netloc
        self.remote = f"http://oauth2:{token}@{host}/{project_path}.git"
        run(["git", "clone", "-q", self.remote, str(workdir)], cwd=workdir.parent, env=self.env)
        self.git("config", "user.name", "Test User")
        self.git("config", "user.email", "test@example.com")

    def git(self, *args: str) -> str:
        """Run git in the working copy."""
        return run(["git", *args], cwd=self.path, env=self.env)

    def dvc(self, *args: str) -> str:
        """Run dvc in the working copy (with the test's private DVC state)."""
        return run(["dvc", *args], cwd=self.path, env=self.env)

    def init_dvc_s3(self, bucket: S3Bucket, prefix: str) -> None:
        """`dvc init` with the default remote at `s3://bucket/prefix` on the moto server."""
        self.dvc("init", "-q")
        self.dvc("remote", "add", "-d", "site", f"s3://{bucket.name}/{prefix}")
        self.dvc("remote", "modify", "site", "endpointurl", bucket.endpoint_url)
        self.dvc("remote", "modify", "site", "region", bucket.region)

    def init_dvc_local(self, directory: Path) -> None:
        """`dvc init` with the default remote in a local directory."""
        self.dvc("init", "-q")
        self.dvc("remote", "add", "-d", "site", str(directory))

    def write(self, relative: str, data: bytes) -> Path:
        """Write a file in the working copy (directories created)."""
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    def track(self, *paths: str) -> None:
        """`dvc add` the paths and stage their pointers."""
        self.dvc("add", "-q", *paths)
        self.git("add", "-A")

    def commit_and_push(self, message: str, branch: str = "main") -> str:
        """Commit everything, `dvc push` the bytes, `git push` the commit; returns its sha."""
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.dvc("push", "-q")
        self.git("push", "-q", "origin", f"HEAD:{branch}")
        return self.git("rev-parse", "HEAD").strip()

    def tag(self, name: str, message: str | None = None) -> None:
        """Create a tag (annotated when a message is given) and push it."""
        if message:
            self.git("tag", "-a", name, "-m", message)
        else:
            self.git("tag", name)
        self.git("push", "-q", "origin", name)


def image_bytes(seed: int, size: int = 2048) -> bytes:
    """Deterministic, distinct binary content."""
    return bytes((seed * 31 + i * 7) % 256 for i in range(size))
