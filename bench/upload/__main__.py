"""Upload N images as one commit through dshub vs what a user does: `.venv/bin/python -m bench.upload`.

Options: `--count 1000` (images of about `--kb 50` KB each), `--jobs 8`.

One run builds the GitLab sandbox, moto S3 (loopback) registered as a direct-mode site and
dshub under gunicorn (gthread, 2 workers), then for each layout (per-file pointers, one
tracked directory) and a fresh dataset each time, with the same end point (pointers committed
on the default branch, bytes in the same bucket; neither side waits for search):

- dshub: `dshub.upload.upload` (an upload session, `--jobs` parallel PUTs, one commit);
- the user: `dvc add` + `dvc push -j <jobs>` (straight to S3) + `git commit` + `git push`,
  from a fresh clone with a cold DVC cache.

Prints seconds for both and the ratio (target <= 1.0x) and the gunicorn workers' peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gitlab
import psutil

from dshub.client import ApiClient
from dshub.config import ClientConfig
from dshub.upload import collect, upload
from indexer.data.dvc_env import dvc_environment
from indexer.data.storage import StorageSite
from indexer.sites.registry import SiteRecord, SiteRegistry, validated
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import start_gunicorn
from tests.support import services
from tests.support.dataset_repo import DatasetRepo

MB = 1024 * 1024


class TimedClient(ApiClient):
    """The CLI's client, adding up the seconds spent in each kind of request (PUT of a file,
    the commit, the rest), so the benchmark says where dshub's time goes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: dict[str, float] = {}
        self.commit_timing = ""  # the commit answer's Server-Timing
        self._lock = threading.Lock()

    def request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> Any:
        kind = "commit" if path.endswith("/commit") else "PUT" if method == "PUT" else "other"
        started = time.perf_counter()
        try:
            answer = super().request(method, path, stream=stream, **kwargs)
            if kind == "commit":
                self.commit_timing = answer.headers.get("Server-Timing", "")
            return answer
        finally:
            with self._lock:
                self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - started


def _images(directory: Path, count: int, kb: int) -> None:
    directory.mkdir(parents=True)
    for i in range(count):
        seed = hashlib.sha256(f"img-{i}".encode()).digest()
        (directory / f"img{i:05d}.jpg").write_bytes((seed * (kb * 1024 // 32 + 1))[: kb * 1024])


def _rss_sampler(root_pid: int, stop: threading.Event, peak: list[int]) -> None:
    parent = psutil.Process(root_pid)
    while not stop.is_set():
        try:
            for child in parent.children(recursive=True):
                peak[0] = max(peak[0], child.memory_info().rss)
        except psutil.Error:
            pass
        stop.wait(0.2)


class CpuMeter:
    """CPU seconds used by moto, dshub's gunicorn and this process (the clients, the GitLab
    sandbox, and the `dvc`/`git` commands it runs), between `start()` and `read()`."""

    def __init__(self, moto_pid: int, gunicorn_pid: int) -> None:
        self.roots = {"moto": moto_pid, "gunicorn": gunicorn_pid}
        self.before: dict[str, float] = {}

    @staticmethod
    def _tree(pid: int) -> float:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return total

    def _now(self) -> dict[str, float]:
        own = os.times()
        return {
            **{name: self._tree(pid) for name, pid in self.roots.items()},
            "bench+dvc+git": own.user + own.system + own.children_user + own.children_system,
        }

    def start(self) -> None:
        self.before = self._now()

    def read(self) -> str:
        after = self._now()
        return ", ".join(f"{k} {after[k] - self.before[k]:.1f}" for k in after)


def _dataset(admin: gitlab.Gitlab, name: str) -> Any:
    project = admin.projects.create({"name": name, "visibility": "private"})
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "dvc init",
            "actions": [
                {"action": "create", "file_path": ".dvc/config", "content": ""},
                {
                    "action": "create",
                    "file_path": ".dvc/.gitignore",
                    "content": "/config.local\n/tmp\n/cache\n",
                },
                {"action": "create", "file_path": ".dvcignore", "content": ""},
            ],
        }
    )
    return project


def _through_dshub(
    admin: gitlab.Gitlab, client: TimedClient, images: Path, layout: str, jobs: int
) -> float:
    client.seconds.clear()
    ours = _dataset(admin, f"ours-{layout}")
    client.request("POST", f"/api/v1/datasets/{ours.id}/storage-site", json={"name": "moto"})
    started = time.perf_counter()
    answer = upload(
        client,
        int(ours.id),
        collect([str(images)]),
        options={"folder": "images", "layout": layout, "confirm": True},
        message="Upload images",
        jobs=jobs,
        progress=False,
    )
    seconds = time.perf_counter() - started
    if not answer.get("commit"):
        raise SystemExit(f"dshub did not commit: {answer}")
    puts, commit = client.seconds.get("PUT", 0.0), client.seconds.get("commit", 0.0)
    print(
        f"  dshub {layout}: PUT phase {seconds - commit:.2f} s ({puts / jobs:.2f} s of PUTs per "
        f"transfer thread), commit {commit:.2f} s ({client.commit_timing}; index "
        f"{answer.get('index')})"
    )
    return seconds


def _as_a_user(
    admin: gitlab.Gitlab,
    client: ApiClient,
    images: Path,
    layout: str,
    jobs: int,
    *,
    root: Path,
    sandbox: Sandbox,
    endpoint: str,
    dvc_env: dict[str, str],
) -> float:
    theirs = _dataset(admin, f"theirs-{layout}")
    client.request("POST", f"/api/v1/datasets/{theirs.id}/storage-site", json={"name": "moto"})
    repo = DatasetRepo(
        root / f"clone-{layout}",
        sandbox.url,
        theirs.path_with_namespace,
        sandbox.admin_token,
        dvc_env,
    )
    repo.dvc("remote", "modify", "--local", "dshub", "endpointurl", endpoint)
    target = repo.path / "images"
    target.mkdir()
    for item in sorted(images.iterdir()):
        (target / item.name).write_bytes(item.read_bytes())
    started = time.perf_counter()
    if layout == "directory":
        repo.dvc("add", "-q", "images")
    else:
        repo.dvc("add", "-q", *[f"images/{p.name}" for p in sorted(target.iterdir())])
    repo.dvc("push", "-q", "-j", str(jobs))
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "Upload images")
    repo.git("push", "-q", "origin", "HEAD:main")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.upload")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--kb", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument(
        "--layouts", default="files,directory", help="comma-separated: files, directory"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    endpoint, moto = services.start_moto(root / "moto")
    sandbox = Sandbox(root / "gitlab").start()
    s3 = services.moto_client(endpoint)
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    keys = {"access_key_id": services.S3_ACCESS_KEY, "secret_access_key": services.S3_SECRET_KEY}
    (root / "credentials.json").write_text(json.dumps({"rw": keys, "ro": keys}))
    index_url = f"sqlite:///{root / 'data' / 'index.sqlite3'}"
    (root / "data").mkdir()
    site = StorageSite(
        name="moto",
        kind="s3",
        bucket=bucket,
        prefix="b",
        endpoint_url=endpoint,
        region=services.S3_REGION,
        access_mode="direct",
        credentials_ref="rw",
    )
    SiteRegistry(index_url).save(validated(SiteRecord(site, "ro")))
    env = {
        "DSHUB_DATA_DIR": str(root / "data"),
        "DSHUB_INDEX_URL": index_url,
        "DSHUB_GITLAB_URL": sandbox.url,
        "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
        "DSHUB_STORAGE_CREDENTIALS_FILE": str(root / "credentials.json"),
        "DSHUB_RECONCILE_INTERVAL": "0",
        "DSHUB_LOG_LEVEL": "WARNING",
        "DSHUB_UPLOAD_POINTER_WARN": str(args.count + 1),
    }
    server = start_gunicorn(root / "gunicorn", env, workers=2)
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(
        target=_rss_sampler, args=(server.process.pid, stop, peak), daemon=True
    )
    sampler.start()
    admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
    client = TimedClient(ClientConfig(server.url, sandbox.admin_token), timeout=600)
    images = root / "images"
    _images(images, args.count, args.kb)
    dvc_env = {
        **dvc_environment(root / "dvc-state"),
        "AWS_ACCESS_KEY_ID": services.S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": services.S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": services.S3_REGION,
    }
    print(f"machine: {platform.node()} {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"{args.count} files of {args.kb} KB, {args.jobs} parallel transfers")
    try:
        meter = CpuMeter(moto.process.pid, server.process.pid)
        for layout in args.layouts.split(","):
            meter.start()
            dshub_seconds = _through_dshub(admin, client, images, layout, args.jobs)
            print(f"  CPU seconds, dshub {layout}: {meter.read()}")
            meter.start()
            user_seconds = _as_a_user(
                admin,
                client,
                images,
                layout,
                args.jobs,
                root=root,
                sandbox=sandbox,
                endpoint=endpoint,
                dvc_env=dvc_env,
            )
            print(f"  CPU seconds, the user's way, {layout}: {meter.read()}")
            print(
                f"{layout:9}  dshub {dshub_seconds:7.2f} s   dvc add+push+git push {user_seconds:7.2f} s"
                f"   ratio {dshub_seconds / user_seconds:.2f}x (target <= 1.0x)"
            )
        print(f"gunicorn workers' peak RSS: {peak[0] / MB:.0f} MB")
    finally:
        stop.set()
        server.stop()
        sandbox.stop()
        moto.stop()


if __name__ == "__main__":
    main()
