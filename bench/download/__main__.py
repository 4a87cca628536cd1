"""Single-file download, time to last byte: `.venv/bin/python -m bench.download`.

Options: `--rounds 15` (warm rounds per method and size), `--large-mb 1024` (the file streamed
while the worker's RSS is sampled), `--large-site s3|local`.

Builds one dataset with real git + dvc: a 1 MB and a 100 MB file pushed to moto S3 (loopback)
and tagged `v1` in the GitLab sandbox, indexed into SQLite, served by gunicorn (gthread, one
worker) in stream mode and in redirect mode. Then, on the same data:

- warm, in this one long-lived process (median of `--rounds`): dshub stream, dshub redirect
  (302 followed to the presigned URL), a direct boto3 `get_object` of the resolved key (the
  baseline), and `dvc.api.read(..., rev="v1")`;
- cold processes (median of 5): `curl` of the seed's URL shape, `dshub download`, `python -c`
  boto3 `get_object`, and `dvc get --rev v1`;
- the gunicorn worker's peak RSS while streaming a `--large-mb` file.

Targets: stream <= 1.25x direct S3 for 100 MB; <= 5 ms added for 1 MB; >= 50x faster than
`dvc get --rev` for 1 MB; worker RSS < 250 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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
RSS_BUDGET = 250 * MB


def _data(seed: int, size: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MB // 32)
    return (
        b"".join(i.to_bytes(8, "big") + block[8:] for i in range(size // MB)) + block[: size % MB]
    )


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _time(fn: Callable[[], int], rounds: int, expected: int) -> list[float]:
    fn()  # warm-up: connections, caches
    result = []
    for _ in range(rounds):
        start = time.perf_counter()
        got = fn()
        result.append(time.perf_counter() - start)
        if got != expected:
            raise SystemExit(f"got {got} bytes, expected {expected}")
    return result


def _interleaved(
    methods: dict[str, Callable[[], int]], rounds: int, expected: int
) -> dict[str, list[float]]:
    for fn in methods.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {label: [] for label in methods}
    labels = list(methods)
    for index in range(rounds):
        for label in labels[index % len(labels) :] + labels[: index % len(labels)]:
            start = time.perf_counter()
            got = methods[label]()
            samples[label].append(time.perf_counter() - start)
            if got != expected:
                raise SystemExit(f"{label}: got {got} bytes, expected {expected}")
    return samples


class Bench:
    """The services and the dataset, set up once."""

    def __init__(self, root: Path, large_mb: int, large_site: str) -> None:
        self.root = root
        env_aws = {
            "AWS_ACCESS_KEY_ID": services.S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": services.S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": services.S3_REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        os.environ.update(env_aws)
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
        self.local_site = root / "site"
        self.registry.put(StorageSite(name="disk", kind="local", path=str(self.local_site)))
        self.files = {"small.bin": _data(1, MB), "large.bin": _data(2, 100 * MB)}
        self.project = self._dataset()
        self.big_project, self.big_md5 = self._big(large_mb, large_site)
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
        self.stream = start_gunicorn(root / "g1", env, workers=1)
        self.redirect = start_gunicorn(
            root / "g2", {**env, "DSHUB_DOWNLOAD_MODE": "redirect"}, workers=1
        )
        self.token = self.sandbox.admin_token

    def _dataset(self) -> Any:
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
        for name, data in self.files.items():
            repo.write(f"data/{name}", data)
        repo.track("data/small.bin", "data/large.bin")
        repo.commit_and_push("Bench data")
        repo.tag("v1")
        self.git_url = repo.remote
        self._sync(project.id)
        return project

    def _big(self, size_mb: int, site: str) -> tuple[int, str]:
        project = self.admin.projects.create({"name": "big", "visibility": "private"})
        project.variables.create(
            {"key": "DSHUB_STORAGE_SITE", "value": "lab" if site == "s3" else "disk"}
        )
        path = self.root / "big.bin"
        digest = hashlib.md5(usedforsecurity=False)
        block = _data(3, MB)
        with path.open("wb") as out:
            for i in range(size_mb):
                chunk = i.to_bytes(8, "big") + block[8:]
                digest.update(chunk)
                out.write(chunk)
        md5 = digest.hexdigest()
        relative = f"files/md5/{md5[:2]}/{md5[2:]}"
        if site == "s3":
            self.s3.upload_file(str(path), self.bucket.name, f"team/{project.id}/{relative}")
            path.unlink()
        else:
            target = self.local_site / str(project.id) / relative
            target.parent.mkdir(parents=True)
            path.rename(target)
        pointer = f"outs:\n- md5: {md5}\n  size: {size_mb * MB}\n  hash: md5\n  path: big.bin\n"
        project.commits.create(
            {
                "branch": "main",
                "commit_message": "big",
                "actions": [
                    {"action": "create", "file_path": ".dvc/config", "content": "[core]\n"},
                    {"action": "create", "file_path": "big.bin.dvc", "content": pointer},
                ],
            }
        )
        self._sync(project.id)
        return project.id, md5

    def _sync(self, project_id: int) -> None:
        with open_index(self.index_url) as store:
            ctx = sync.SyncContext(
                reader=GitLabReader(self.sandbox.url, self.sandbox.admin_token),
                store=store,
                sites=self.registry.get,
            )
            sync.sync_project(ctx, project_id)

    def url(self, server: Gunicorn, name: str) -> str:
        return f"{server.url}/api/v1/datasets/{self.project.id}/files/data/{name}?ref=v1"

    def key(self, name: str) -> str:
        return f"team/{self.project.id}/files/md5/{_md5(self.files[name])[:2]}/{_md5(self.files[name])[2:]}"

    def close(self) -> None:
        self.stream.stop()
        self.redirect.stop()
        self.sandbox.stop()
        self.moto.stop()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _consume(response: requests.Response) -> int:
    with response:
        if response.status_code != 200:
            raise SystemExit(f"answer {response.status_code}: {response.text[:200]}")
        return sum(len(c) for c in response.iter_content(CHUNK))


def warm(bench: Bench, rounds: int) -> dict[tuple[str, str], list[float]]:
    """Time to last byte with warm clients in this process."""
    session = requests.Session()
    session.headers["PRIVATE-TOKEN"] = bench.token
    storage = requests.Session()
    s3 = services.moto_client(bench.endpoint)
    import dvc.api
    from dvc.repo.open_repo import clean_repos

    results: dict[tuple[str, str], list[float]] = {}
    for name, data in bench.files.items():
        size = len(data)
        key = bench.key(name)

        def direct(key: str = key) -> int:
            body = s3.get_object(Bucket=bench.bucket.name, Key=key)["Body"]
            return sum(len(c) for c in body.iter_chunks(CHUNK))

        def stream(name: str = name) -> int:
            return _consume(session.get(bench.url(bench.stream, name), stream=True, timeout=120))

        def redirect(name: str = name) -> int:
            first = session.get(bench.url(bench.redirect, name), allow_redirects=False, timeout=30)
            return _consume(storage.get(first.headers["Location"], stream=True, timeout=120))

        def dvc_read(name: str = name) -> int:
            with _quiet_stderr():  # git's clone progress
                data = dvc.api.read(f"data/{name}", repo=bench.git_url, rev="v1", mode="rb")
            return len(data)

        n = rounds if size <= MB else max(5, rounds // 2)
        # Interleaved rounds, so load from other processes hits every method alike.
        methods: dict[str, Callable[[], int]] = {
            "direct boto3 get_object (baseline)": direct,
            "dshub stream": stream,
            "dshub redirect (followed)": redirect,
        }
        for label, samples in _interleaved(methods, n, size).items():
            results[(label, name)] = samples
        results[("dvc.api.read, warm process", name)] = _time(dvc_read, max(3, n // 3), size)
    clean_repos()
    return results


def cold(bench: Bench, runs: int = 5) -> dict[str, list[float]]:
    """Whole-process time to last byte for a 1 MB file (process start included)."""
    out = bench.root / "cold"
    out.mkdir()
    env = {
        **os.environ,
        "DSHUB_URL": bench.stream.url,
        "DSHUB_TOKEN": bench.token,
        "DSHUB_CONFIG": "/nonexistent",
    }
    key = bench.key("small.bin")
    commands = {
        "curl (seed URL shape, cookie)": [
            "curl", "-sSf", "-b", f"tokenGitLab={bench.token}",
            bench.url(bench.stream, "small.bin"), "--output", str(out / "c.bin"),
        ],
        "dshub download (CLI, verifies md5)": [
            sys.executable, "-m", "dshub", "download", "--quiet", "--project-id",
            str(bench.project.id), "--ref", "v1", "--output", str(out), "d.bin", "/data/small.bin",
        ],
        "python -c boto3 get_object": [
            sys.executable, "-c",
            "import boto3,sys; c=boto3.client('s3', endpoint_url=sys.argv[1]); "
            "c.get_object(Bucket=sys.argv[2], Key=sys.argv[3])['Body'].read()",
            bench.endpoint, bench.bucket.name, key,
        ],
        "python -c dvc.api.read(rev=v1)": [
            sys.executable, "-c",
            "import sys, dvc.api; from dvc.repo.open_repo import clean_repos; "
            "dvc.api.read('data/small.bin', repo=sys.argv[1], rev='v1', mode='rb'); clean_repos()",
            bench.git_url,
        ],
        "dvc get --rev v1 (clones)": [
            "dvc", "get", bench.git_url, "data/small.bin", "--rev", "v1", "-o",
            str(out / "g.bin"), "-f",
        ],
    }  # fmt: skip
    results: dict[str, list[float]] = {}
    for label, argv in commands.items():
        samples = []
        for _ in range(runs):
            for leftover in out.iterdir():
                leftover.unlink()
            start = time.perf_counter()
            subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
            samples.append(time.perf_counter() - start)
        results[label] = samples
    return results


def rss_while_streaming(bench: Bench) -> tuple[int, int, float]:
    """Peak RSS of the stream worker while it streams the large file (sampled every 20 ms)."""
    worker = psutil.Process(bench.stream.process.pid).children()[0]
    before = worker.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], worker.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    digest = hashlib.md5(usedforsecurity=False)
    start = time.perf_counter()
    with requests.get(
        f"{bench.stream.url}/api/v1/datasets/{bench.big_project}/files/big.bin",
        headers={"PRIVATE-TOKEN": bench.token},
        stream=True,
        timeout=600,
    ) as answer:
        for chunk in answer.iter_content(CHUNK):
            digest.update(chunk)
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if digest.hexdigest() != bench.big_md5:
        raise SystemExit("large file bytes differ")
    return before, peak[0], elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--large-site", choices=("s3", "local"), default="s3")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dshub-bench-download-") as tmp:
        started = time.perf_counter()
        bench = Bench(Path(tmp), args.large_mb, args.large_site)
        print(f"setup {time.perf_counter() - started:.1f} s; {platform.platform()}, "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}")  # fmt: skip
        try:
            report(bench, args)
        finally:
            bench.close()


def report(bench: Bench, args: argparse.Namespace) -> None:
    """Run every measurement and print the tables and the target verdicts."""
    results = warm(bench, args.rounds)
    print("\nwarm clients, one long-lived process: time to last byte, median ms")
    print(f"{'method':42} {'1 MB':>9} {'100 MB':>9}")
    for label in dict.fromkeys(label for label, _ in results):
        small = _median_ms(results[(label, "small.bin")])
        large = _median_ms(results[(label, "large.bin")])
        print(f"{label:42} {small:9.1f} {large:9.1f}")
    coldies = cold(bench)
    print("\ncold processes, 1 MB file: wall time per command, median of 5 (min-max) ms")
    for label, samples in coldies.items():
        print(
            f"{label:42} {_median_ms(samples):9.1f} "
            f"({min(samples) * 1000:.0f}-{max(samples) * 1000:.0f})"
        )
    before, peak, elapsed = rss_while_streaming(bench)
    size = args.large_mb * MB
    print(
        f"\nworker RSS streaming {args.large_mb} MB from {args.large_site}: {before / MB:.0f} MiB "
        f"before, peak {peak / MB:.0f} MiB ({size / elapsed / MB:.0f} MiB/s)"
    )
    direct = results[("direct boto3 get_object (baseline)", "large.bin")]
    stream = results[("dshub stream", "large.bin")]
    ratio = _median_ms(stream) / _median_ms(direct)
    added = _median_ms(results[("dshub stream", "small.bin")]) - _median_ms(
        results[("direct boto3 get_object (baseline)", "small.bin")]
    )
    speedup = _median_ms(coldies["dvc get --rev v1 (clones)"]) / _median_ms(
        results[("dshub stream", "small.bin")]
    )
    speedup_cold = _median_ms(coldies["dvc get --rev v1 (clones)"]) / _median_ms(
        coldies["curl (seed URL shape, cookie)"]
    )
    print("\ntargets")
    print(f"  stream / direct S3, 100 MB: {ratio:.2f}x (target <= 1.25x: {_ok(ratio <= 1.25)})")
    print(f"  added for 1 MB: {added:.1f} ms (target <= 5 ms: {_ok(added <= 5)})")
    print(
        f"  dvc get --rev / dshub stream, 1 MB: {speedup:.0f}x warm client, "
        f"{speedup_cold:.0f}x cold curl (target >= 50x: {_ok(speedup >= 50)})"
    )
    print(f"  worker peak RSS: {peak / MB:.0f} MiB (target < 250 MB: {_ok(peak < RSS_BUDGET)})")


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


if __name__ == "__main__":
    main()
