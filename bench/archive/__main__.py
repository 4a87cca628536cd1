"""Whole-version downloads: `.venv/bin/python -m bench.archive`.

Options: `--files 1000`, `--total-mb 1024` (the tracked directory's size, split evenly),
`--rounds 2` (interleaved rounds per method; medians reported), `--jobs 8`, `--workers 2`
(gunicorn worker processes, dshub's default `DSHUB_WORKERS`).

Builds one dataset with real git + dvc: a tracked directory `data/` of `--files` files pushed
to moto S3 (loopback) and tagged `v1` in the GitLab sandbox, indexed into SQLite (directory
sizes filled as the worker does), served by gunicorn (gthread, `--workers` processes of 8
threads). Then, in the same run and on the same objects:

- the materialised zip (`GET /archive?ref=v1&materialize=1`) streamed to a file on disk,
  versus boto3 `get_object` of the same keys from moto, `--jobs` in parallel, written to
  disk (the baseline); the gunicorn worker's peak RSS is sampled every 20 ms during the zips;
- `dshub get --ref v1` into a fresh folder versus `dvc pull` in a fresh `git clone` (clone
  time reported apart).

Targets: zip throughput >= 0.8x the boto3 baseline's; `dshub get` <= 1.0x `dvc pull`'s time.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gitlab
import psutil
import requests

from indexer.data.dvc_env import dvc_environment
from indexer.data.storage import StorageSite
from indexer.gitlab.reader import GitLabReader
from indexer.sites.registry import SiteRegistry
from indexer.store import open_index
from indexer.sync import refs as sync
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import ROOT, Gunicorn, start_gunicorn
from tests.support import services
from tests.support.dataset_repo import DatasetRepo

MB = 1024 * 1024
CHUNK = MB


def _data(seed: int, size: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


class Bench:
    """The services and the dataset, set up once."""

    def __init__(self, root: Path, files: int, total_mb: int, workers: int) -> None:
        self.root = root
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": services.S3_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": services.S3_SECRET_KEY,
                "AWS_DEFAULT_REGION": services.S3_REGION,
                "AWS_EC2_METADATA_DISABLED": "true",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        aws_config = root / "aws-config"
        aws_config.touch()
        os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(aws_config)
        os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
        self.dvc_env = dvc_environment(root / "dvc-state")
        os.environ.update(self.dvc_env)
        self.endpoint, self.moto = services.start_moto(root / "moto")
        self.bucket = S3Bucket(endpoint_url=self.endpoint, name=f"b-{uuid.uuid4().hex[:12]}")
        self.s3 = self.bucket.client()
        self.s3.create_bucket(Bucket=self.bucket.name)
        self.sandbox = Sandbox(root / "gitlab").start()
        self.admin = gitlab.Gitlab(self.sandbox.url, private_token=self.sandbox.admin_token)
        self.index_url = f"sqlite:///{root / 'data' / 'index.sqlite3'}"
        (root / "data").mkdir()
        self.registry = SiteRegistry(self.index_url)
        self.registry.put(
            StorageSite(
                name="lab",
                kind="s3",
                bucket=self.bucket.name,
                prefix="team",
                endpoint_url=self.endpoint,
                region=self.bucket.region,
            )
        )
        self.size = total_mb * MB // files
        self.total = self.size * files
        self.project, self.keys = self._dataset(files)
        env = {
            "DSHUB_DATA_DIR": str(root / "data"),
            "DSHUB_INDEX_URL": self.index_url,
            "DSHUB_GITLAB_URL": self.sandbox.url,
            "DSHUB_GITLAB_TOKEN": self.sandbox.admin_token,
            "DSHUB_WEBHOOK_SECRET": "bench-secret",
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_LEVEL": "WARNING",
            "DSHUB_LOG_FORMAT": "text",
        }
        self.server: Gunicorn = start_gunicorn(root / "g1", env, workers=workers)
        self.token = self.sandbox.admin_token

    def _dataset(self, files: int) -> tuple[Any, list[str]]:
        project = self.admin.projects.create(
            {"name": "bench", "visibility": "private", "initialize_with_readme": True}
        )
        project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "lab"})
        (self.root / "work").mkdir()
        repo = DatasetRepo(
            self.root / "work" / "bench",
            self.sandbox.url,
            project.path_with_namespace,
            self.sandbox.admin_token,
            self.dvc_env,
        )
        repo.init_dvc_s3(self.bucket, f"team/{project.id}")
        keys = []
        for i in range(files):
            data = _data(i, self.size)
            repo.write(f"data/f{i:05d}.bin", data)
            digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
            keys.append(f"team/{project.id}/files/md5/{digest[:2]}/{digest[2:]}")
        repo.track("data")
        repo.commit_and_push("Bench data")
        repo.tag("v1")
        shutil.rmtree(repo.path / ".dvc" / "cache", ignore_errors=True)
        shutil.rmtree(repo.path / "data", ignore_errors=True)
        self.git_url = repo.remote
        with open_index(self.index_url) as store:
            ctx = sync.SyncContext(
                reader=GitLabReader(self.sandbox.url, self.sandbox.admin_token),
                store=store,
                sites=self.registry.get,
            )
            sync.sync_project(ctx, project.id)
            sync.fill_sizes(ctx, project.id)  # what the worker does after indexing a directory
        return project, keys

    def close(self) -> None:
        self.server.stop()
        self.sandbox.stop()
        self.moto.stop()


class PeakRss:
    """The largest gunicorn worker RSS while measurements run (each sampled every 20 ms)."""

    def __init__(self, server: Gunicorn) -> None:
        self.workers = psutil.Process(server.process.pid).children()
        self.before = self.peak = self._largest()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _largest(self) -> int:
        return max(int(worker.memory_info().rss) for worker in self.workers)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._largest())
            time.sleep(0.02)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def zip_via_dshub(bench: Bench, out: Path) -> int:
    """Stream the materialised zip to `out`; check it holds every file."""
    target = out / "v1.zip"
    with requests.get(
        f"{bench.server.url}/api/v1/datasets/{bench.project.id}/archive",
        params={"ref": "v1", "materialize": "1"},
        headers={"PRIVATE-TOKEN": bench.token},
        stream=True,
        timeout=600,
    ) as answer:
        if answer.status_code != 200:
            raise SystemExit(f"archive answered {answer.status_code}: {answer.text[:300]}")
        with target.open("wb") as handle:
            for chunk in answer.iter_content(CHUNK):
                handle.write(chunk)
    with zipfile.ZipFile(target) as archive:
        infos = [i for i in archive.infolist() if i.filename.startswith("data/")]
        if len(infos) != len(bench.keys) or sum(i.file_size for i in infos) != bench.total:
            raise SystemExit(f"zip holds {len(infos)} files, expected {len(bench.keys)}")
    return bench.total


def boto3_parallel(bench: Bench, out: Path, jobs: int) -> int:
    """The baseline: the same objects straight from moto, `jobs` at a time, to disk."""
    client = services.moto_client(bench.endpoint)

    def fetch(item: tuple[int, str]) -> int:
        index, key = item
        body = client.get_object(Bucket=bench.bucket.name, Key=key)["Body"]
        written = 0
        with (out / f"f{index:05d}.bin").open("wb") as handle:
            for chunk in body.iter_chunks(CHUNK):
                written += handle.write(chunk)
        return written

    with ThreadPoolExecutor(jobs) as pool:
        got = sum(pool.map(fetch, enumerate(bench.keys)))
    if got != bench.total:
        raise SystemExit(f"boto3 got {got} bytes, expected {bench.total}")
    return got


def dshub_get(bench: Bench, out: Path, jobs: int) -> int:
    env = {**os.environ, "DSHUB_URL": bench.server.url, "DSHUB_TOKEN": bench.token}
    env["DSHUB_CONFIG"] = "/nonexistent"
    subprocess.run(
        [sys.executable, "-m", "dshub", "get", "--quiet", "--project-id", str(bench.project.id),
         "--ref", "v1", "--output", str(out), "-j", str(jobs)],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=1800,
    )  # fmt: skip
    return _folder_bytes(out / "data")


def clone(bench: Bench, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["git", "clone", "-q", "--branch", "v1", bench.git_url, str(out)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return time.perf_counter() - start


def dvc_pull(bench: Bench, out: Path, jobs: int) -> int:
    subprocess.run(
        ["dvc", "pull", "-q", "-j", str(jobs)],
        cwd=out, check=True, capture_output=True, timeout=1800,
    )  # fmt: skip
    return _folder_bytes(out / "data")


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _timed(fn: Callable[[], int], expected: int, label: str) -> float:
    start = time.perf_counter()
    got = fn()
    elapsed = time.perf_counter() - start
    if got != expected:
        raise SystemExit(f"{label}: {got} bytes, expected {expected}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--total-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (dshub's default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dshub-bench-archive-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        bench = Bench(root, args.files, args.total_mb, args.workers)
        print(
            f"setup {time.perf_counter() - started:.1f} s; {platform.platform()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}; "
            f"{args.files} files x {bench.size / MB:.2f} MiB = {bench.total / MB:.0f} MiB; "
            f"gunicorn {args.workers} workers"
        )
        try:
            report(bench, root, args)
        finally:
            bench.close()


def report(bench: Bench, root: Path, args: argparse.Namespace) -> None:
    """Interleaved rounds of every method, then the medians, ratios and verdicts."""
    times: dict[str, list[float]] = {k: [] for k in ("zip", "boto3", "get", "pull", "clone")}
    jobs = args.jobs
    methods: dict[str, Callable[[Path], int]] = {
        "zip": lambda out: zip_via_dshub(bench, out),
        "boto3": lambda out: boto3_parallel(bench, out, jobs),
        "get": lambda out: dshub_get(bench, out, jobs),
        "pull": lambda out: dvc_pull(bench, out, jobs),
    }
    rss = PeakRss(bench.server)
    for pair in (("zip", "boto3"), ("get", "pull")):
        for index in range(args.rounds):
            for method in pair if index % 2 == 0 else pair[::-1]:
                out = root / f"{method}-{index}"
                if method == "pull":
                    times["clone"].append(clone(bench, out))
                else:
                    out.mkdir()
                times[method].append(
                    _timed(functools.partial(methods[method], out), bench.total, method)
                )
                shutil.rmtree(out)
        if pair[0] == "zip":
            rss.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    mib = bench.total / MB
    print(f"\nmedians of {args.rounds} interleaved rounds (all samples in seconds)")
    labels = {
        "zip": "dshub materialised zip -> disk",
        "boto3": f"boto3 get_object x{args.jobs} parallel -> disk",
        "get": f"dshub get -j {args.jobs} (fresh folder)",
        "pull": f"dvc pull -j {args.jobs} (fresh clone)",
        "clone": "git clone (before dvc pull, not counted)",
    }
    for key, label in labels.items():
        samples = ", ".join(f"{s:.1f}" for s in times[key])
        print(f"  {label:44} {med[key]:7.2f} s  {mib / med[key]:7.1f} MiB/s  [{samples}]")
    ratio = med["boto3"] / med["zip"]
    get_ratio = med["get"] / med["pull"]
    print("\ntargets")
    print(
        f"  zip throughput / boto3 x{args.jobs}: {ratio:.2f}x (target >= 0.8x: {_ok(ratio >= 0.8)})"
    )
    print(
        f"  dshub get / dvc pull time: {get_ratio:.2f}x (target <= 1.0x: {_ok(get_ratio <= 1.0)})"
    )
    print(
        f"  largest gunicorn worker RSS during the zips: {rss.before / MB:.0f} MiB before, peak {rss.peak / MB:.0f} MiB"
    )


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


if __name__ == "__main__":
    main()
