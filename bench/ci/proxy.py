"""The CI jobs in proxy mode, through a gunicorn-served dshub's DVC remote.

One dshub (2 gthread workers) trusting a GitLab sandbox, one proxy-mode S3 site (moto); each
measurement gets a new dataset on it:

1. the dvc-push job against plain `dvc push`: 1,000 files of 2 KiB in a tracked directory.
   Plain `dvc push` gets the job token in `.dvc/config.local` the way the job writes it; the
   job (`dshub ci push`) does that itself, checks access, pushes and proves presence of all
   1,001 objects (dshub's batch presence answer). Rounds alternate which runs first.
2. validate-storage (`dshub ci validate`) over 10,000 single-file pointers whose objects are
   stored (put into the bucket directly, as earlier pushes would have left them).

Each run also reports how many requests dshub's remote answered (its /metrics), and how the
batch presence answers asked storage.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
import requests

from indexer.data.storage import Credentials, StorageSite
from tests.ci.proxy_world import Dshub, ProxyWorld, create_dataset, served_dshub
from tests.gitlab_sandbox.server import Sandbox

BIN = Path(sys.executable).parent
FILES = 1000
POINTERS = 10_000


@dataclass(frozen=True)
class Run:
    """One timed command: seconds, requests dshub's DVC remote answered, presence methods."""

    seconds: float
    requests: int
    presence: str

    def describe(self) -> str:
        """`12.34 s, 2,003 requests to dshub (presence: list 1,001)`."""
        extra = f", presence: {self.presence}" if self.presence else ""
        return f"{self.seconds:.2f} s ({self.requests:,} requests to dshub{extra})"


def _metrics(dshub: Dshub) -> dict[str, float]:
    text = requests.get(f"{dshub.server.url}/metrics", timeout=30).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("dshub_dvc_remote_"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _timed(dshub: Dshub, cmd: list[str], cwd: Path, env: dict[str, str]) -> Run:
    before = _metrics(dshub)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    grown = {name: value - before.get(name, 0) for name, value in _metrics(dshub).items()}
    answered = sum(v for k, v in grown.items() if k.startswith("dshub_dvc_remote_requests_total"))
    methods: dict[str, float] = {}
    for name, value in grown.items():
        if name.startswith("dshub_dvc_remote_presence_keys_total") and value:
            method = name.split('method="', 1)[1].split('"', 1)[0]
            methods[method] = methods.get(method, 0) + value
    presence = ", ".join(f"{method} {count:,.0f}" for method, count in sorted(methods.items()))
    return Run(seconds, int(answered), presence)


def _push(world: ProxyWorld, label: str) -> Run:
    folder = world.repo.work / "files"
    folder.mkdir()
    for i in range(FILES):
        (folder / f"{i:04d}.bin").write_bytes(os.urandom(2048))
    world.repo.dvc("add", "-q", "files")
    token = world.job_token()
    repo = world.repo
    if label == "plain":
        for option, value in (
            ("auth", "custom"),
            ("custom_auth_header", "JOB-TOKEN"),
            ("password", token),
        ):
            repo.dvc("remote", "modify", "--local", "site", option, value)
        cmd = [str(BIN / "dvc"), "push", "-r", "site", "--jobs", "8"]
        return _timed(world.dshub, cmd, repo.work, repo.env)
    env = {**repo.env, **repo.variables, "CI_JOB_TOKEN": token}
    cmd = [str(BIN / "dshub"), "ci", "push", "--jobs", "8"]
    return _timed(world.dshub, cmd, repo.work, env)


def _validate(world: ProxyWorld, site: StorageSite, keys: Credentials) -> Run:
    """validate-storage over `POINTERS` pointers whose objects are on the site."""
    s3 = boto3.client(
        "s3",
        endpoint_url=site.endpoint_url,
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
        region_name=site.region,
    )
    prefix = site.dataset_prefix(world.project.id)

    def put(i: int) -> None:
        data = f"proxy file {i}\n".encode()
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - DVC's content address
        (world.repo.work / f"p{i:05d}.dvc").write_text(
            f"outs:\n- md5: {md5}\n  size: {len(data)}\n  hash: md5\n  path: p{i:05d}\n"
        )
        s3.put_object(Bucket=site.bucket, Key=f"{prefix}files/md5/{md5[:2]}/{md5[2:]}", Body=data)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, range(POINTERS)))
    world.repo.commit("Pointers")
    env = {**world.repo.env, **world.repo.variables, "CI_JOB_TOKEN": world.job_token()}
    cmd = [str(BIN / "dshub"), "ci", "validate", "--jobs", "8"]
    return _timed(world.dshub, cmd, world.repo.work, env)


def proxy_benchmarks(
    base: Path,
    dvc_env: dict[str, str],
    *,
    bucket: str,
    endpoint: str,
    region: str,
    keys: Credentials,
    rounds: int = 2,
) -> tuple[list[dict[str, Run]], Run]:
    """Per round, the plain `dvc push` and dvc-push job runs (each to a new, empty dataset;
    the order alternates between rounds), then the validate-storage run."""
    sandbox = Sandbox(base / "sandbox").start()
    try:
        with served_dshub(base / "dshub", sandbox, {"moto": keys}, workers=2) as dshub:
            site = StorageSite(
                name="bench-proxy",
                kind="s3",
                bucket=bucket,
                prefix="proxy",
                endpoint_url=endpoint,
                region=region,
                credentials_ref="moto",
            )
            pushes: list[dict[str, Run]] = []
            for number in range(rounds):
                order = ("plain", "job") if number % 2 == 0 else ("job", "plain")
                runs: dict[str, Run] = {}
                for label in order:
                    name = f"push-{label}-{number}"
                    world = create_dataset(dshub, base / name, name, site, dvc_env)
                    runs[label] = _push(world, label)
                pushes.append(runs)
            world = create_dataset(dshub, base / "validate", "validate", site, dvc_env)
            return pushes, _validate(world, site, keys)
    finally:
        sandbox.stop()
