"""`dvc push` / `dvc pull` through dshub's DVC remote vs straight to the storage site:
`.venv/bin/python -m bench.dvc_remote`.

Options: `--rounds 3` (fresh, empty remotes per round; the median is reported), `--files
1000` and `--file-kb 4` (the tracked directory), `--large-mb 100` (one large file),
`--sites s3,local`.

Set-up: moto S3 (loopback), the GitLab sandbox, dshub under gunicorn (the production
defaults: 2 gthread workers, 8 threads each). For each site kind, one DVC repository (`dvc init
--no-scm`) holding a tracked directory of `--files` random files and one `--large-mb` file.
Each round makes a new dataset (a sandbox project a Developer pushes to, its site selected)
so dshub's remote starts empty, and a new prefix for the direct remote. Then, in turn for
dshub (`auth basic`, the Developer's token) and for the site itself (S3 with the keys, or the
local directory): `dvc push` of the directory, of the large file, and `dvc pull` of each into
an emptied cache and workspace. Every `dvc` run is a fresh process (what a person runs);
DVC's default `jobs` apply to both. The gunicorn workers' peak RSS is sampled throughout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab
import psutil

from indexer.data.dvc_env import dvc_environment
from indexer.data.storage import StorageSite
from indexer.sites.registry import SiteRegistry
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn
from tests.support import services

MB = 1024 * 1024
BIN = Path(sys.executable).parent
STEPS = ("push dir", "push large", "pull dir", "pull large")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@dataclass
class Site:
    """One storage site kind: dshub's site record and how DVC reaches it directly."""

    kind: str  # "s3" | "local"
    repo: Path
    dir_md5s: set[str]
    large_md5: str


class Bench:
    """moto, the sandbox, dshub and the two repositories, set up once."""

    def __init__(self, root: Path, files: int, file_kb: int, large_mb: int, kinds: list[str]):
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
        self.env = {**os.environ, **dvc_environment(root / "dvc-state")}
        self.env["PATH"] = os.pathsep.join([str(BIN), self.env["PATH"]])
        self.endpoint, self.moto = services.start_moto(root / "moto")
        self.bucket = S3Bucket(endpoint_url=self.endpoint, name=f"b-{uuid.uuid4().hex[:12]}")
        self.bucket.client().create_bucket(Bucket=self.bucket.name)
        self.sandbox = Sandbox(root / "gitlab").start()
        self.admin = gitlab.Gitlab(self.sandbox.url, private_token=self.sandbox.admin_token)
        self.user, self.token = self.sandbox.create_user("dev")
        (root / "data").mkdir()
        self.index_url = f"sqlite:///{root / 'data' / 'index.sqlite3'}"
        self.registry = SiteRegistry(self.index_url)
        self.local_root = root / "local-site"
        self.registry.put(
            StorageSite(
                name="s3",
                kind="s3",
                bucket=self.bucket.name,
                prefix="proxy",
                endpoint_url=self.endpoint,
                region=self.bucket.region,
                credentials_ref="moto",
            )
        )
        self.registry.put(StorageSite(name="local", kind="local", path=str(self.local_root)))
        credentials = root / "credentials.json"
        credentials.write_text(
            json.dumps(
                {
                    "moto": {
                        "access_key_id": services.S3_ACCESS_KEY,
                        "secret_access_key": services.S3_SECRET_KEY,
                    }
                }
            )
        )
        self.server: Gunicorn = start_gunicorn(
            root / "gunicorn",
            {
                "DSHUB_DATA_DIR": str(root / "data"),
                "DSHUB_INDEX_URL": self.index_url,
                "DSHUB_GITLAB_URL": self.sandbox.url,
                "DSHUB_GITLAB_TOKEN": self.sandbox.admin_token,
                "DSHUB_WEBHOOK_SECRET": "bench-secret",
                "DSHUB_RECONCILE_INTERVAL": "0",
                "DSHUB_STORAGE_CREDENTIALS_FILE": str(credentials),
                "DSHUB_LOG_LEVEL": "WARNING",
                "DSHUB_LOG_FORMAT": "text",
            },
            workers=2,
        )
        self.sites = {kind: self._repo(kind, files, file_kb, large_mb) for kind in kinds}

    def _repo(self, kind: str, files: int, file_kb: int, large_mb: int) -> Site:
        repo = self.root / f"repo-{kind}"
        (repo / "dir").mkdir(parents=True)
        md5s = set()
        for i in range(files):
            data = os.urandom(file_kb * 1024)
            md5s.add(_md5(data))
            (repo / "dir" / f"{i:05d}.bin").write_bytes(data)
        digest = hashlib.md5(usedforsecurity=False)
        with (repo / "large.bin").open("wb") as out:
            for _ in range(large_mb):
                block = os.urandom(MB)
                digest.update(block)
                out.write(block)
        self.dvc(repo, "init", "-q", "--no-scm")
        self.dvc(repo, "add", "-q", "dir", "large.bin")
        return Site(kind, repo, md5s, digest.hexdigest())

    def dvc(self, repo: Path, *args: str) -> float:
        """Run dvc in `repo`; seconds it took (a failure stops the benchmark)."""
        start = time.perf_counter()
        result = subprocess.run(
            [str(BIN / "dvc"), *args],
            cwd=repo,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return elapsed

    def new_remotes(self, site: Site, round_no: int) -> tuple[str, str]:
        """A fresh dataset on dshub and a fresh direct prefix; returns the two remote names."""
        project = self.admin.projects.create(
            {"name": f"{site.kind}-{round_no}", "visibility": "private"}
        )
        project.members.create({"user_id": self.user.id, "access_level": 30})
        self.registry.select(project.id, site.kind, None)
        dshub, direct = f"dshub{round_no}", f"direct{round_no}"
        self.dvc(site.repo, "remote", "add", dshub, f"{self.server.url}/dvc/{project.id}")
        for option, value in (("auth", "basic"), ("user", "dev"), ("password", self.token)):
            self.dvc(site.repo, "remote", "modify", "--local", dshub, option, value)
        if site.kind == "s3":
            url = f"s3://{self.bucket.name}/direct-{round_no}"
            self.dvc(site.repo, "remote", "add", direct, url)
            self.dvc(site.repo, "remote", "modify", direct, "endpointurl", self.endpoint)
            self.dvc(site.repo, "remote", "modify", direct, "region", self.bucket.region)
        else:
            self.dvc(site.repo, "remote", "add", direct, str(self.root / f"direct-{round_no}"))
        return dshub, direct

    def close(self) -> None:
        """Stop everything this benchmark started."""
        self.server.stop()
        self.sandbox.stop()
        self.moto.stop()


def _empty_local(repo: Path) -> None:
    """Forget the data locally (cache and workspace) so a pull must fetch everything."""
    shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)
    shutil.rmtree(repo / "dir", ignore_errors=True)
    (repo / "large.bin").unlink(missing_ok=True)


def run_round(bench: Bench, site: Site, round_no: int) -> dict[tuple[str, str], float]:
    """Push and pull through dshub and directly; seconds per (route, step)."""
    dshub, direct = bench.new_remotes(site, round_no)
    backup = bench.root / f"cache-{site.kind}"
    if not backup.exists():
        shutil.copytree(site.repo / ".dvc" / "cache", backup)
    timings: dict[tuple[str, str], float] = {}
    order = [("dshub", dshub), ("direct", direct)]
    if round_no % 2:
        order.reverse()  # neither route always runs first
    for route, remote in order:
        timings[route, "push dir"] = bench.dvc(site.repo, "push", "-q", "-r", remote, "dir.dvc")
        timings[route, "push large"] = bench.dvc(
            site.repo, "push", "-q", "-r", remote, "large.bin.dvc"
        )
    for route, remote in order:
        _empty_local(site.repo)
        timings[route, "pull dir"] = bench.dvc(site.repo, "pull", "-q", "-r", remote, "dir.dvc")
        timings[route, "pull large"] = bench.dvc(
            site.repo, "pull", "-q", "-r", remote, "large.bin.dvc"
        )
        _check_pulled(site)
    shutil.rmtree(site.repo / ".dvc" / "cache", ignore_errors=True)
    shutil.copytree(backup, site.repo / ".dvc" / "cache")
    return timings


def _check_pulled(site: Site) -> None:
    got = {_md5(p.read_bytes()) for p in (site.repo / "dir").iterdir()}
    if got != site.dir_md5s:
        raise SystemExit(f"pulled directory differs ({len(got)} of {len(site.dir_md5s)} match)")
    digest = hashlib.md5(usedforsecurity=False)
    with (site.repo / "large.bin").open("rb") as handle:
        while block := handle.read(MB):
            digest.update(block)
    if digest.hexdigest() != site.large_md5:
        raise SystemExit("pulled large file differs")


@contextmanager
def peak_rss(server: Gunicorn) -> Iterator[list[int]]:
    """Sample the gunicorn workers' RSS every 50 ms; yields [peak bytes]."""
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        master = psutil.Process(server.process.pid)
        while not stop.is_set():
            for worker in master.children():
                try:
                    peak[0] = max(peak[0], worker.memory_info().rss)
                except psutil.Error:
                    continue
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def report(results: dict[str, list[dict[tuple[str, str], float]]], args: Any) -> None:
    """Print medians and the dshub/direct ratios."""
    print(
        f"\n{args.files} files x {args.file_kb} KiB in one tracked directory, one "
        f"{args.large_mb} MB file; median of {args.rounds} rounds (seconds, each a fresh `dvc`)"
    )
    print(f"{'site':6} {'step':11} {'dshub':>8} {'direct':>8} {'ratio':>6} {'added/obj':>10}")
    for kind, rounds in results.items():
        for step in STEPS:
            ours = statistics.median(r["dshub", step] for r in rounds)
            theirs = statistics.median(r["direct", step] for r in rounds)
            objects = args.files + 1 if step.endswith("dir") else 1
            added = (ours - theirs) / objects * 1000
            print(
                f"{kind:6} {step:11} {ours:8.2f} {theirs:8.2f} {ours / theirs:6.2f} {added:8.2f}ms"
            )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.dvc_remote")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--file-kb", type=int, default=4)
    parser.add_argument("--large-mb", type=int, default=100)
    parser.add_argument("--sites", default="s3,local")
    args = parser.parse_args()
    kinds = [kind.strip() for kind in args.sites.split(",") if kind.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-dvc-remote-") as tmp:
        started = time.perf_counter()
        bench = Bench(Path(tmp), args.files, args.file_kb, args.large_mb, kinds)
        print(
            f"setup {time.perf_counter() - started:.1f} s; {platform.platform()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
        )
        try:
            results: dict[str, list[dict[tuple[str, str], float]]] = {k: [] for k in kinds}
            with peak_rss(bench.server) as peak:
                for round_no in range(args.rounds):
                    for kind in kinds:
                        timings = run_round(bench, bench.sites[kind], round_no)
                        results[kind].append(timings)
                        shown = ", ".join(f"{r} {s} {t:.2f}" for (r, s), t in timings.items())
                        print(f"round {round_no + 1} {kind}: {shown}", flush=True)
            report(results, args)
            print(f"peak gunicorn worker RSS: {peak[0] / MB:.0f} MiB (budget 250 MiB)")
        finally:
            bench.close()


if __name__ == "__main__":
    main()
