"""The dvc-push job in proxy mode against plain `dvc push`, both through dshub's DVC remote.

Two datasets on one proxy-mode S3 site (moto) behind one gunicorn-served dshub that trusts a
GitLab sandbox: each gets 1,000 files of 2 KiB in a tracked directory. Plain `dvc push` gets
the job token in `.dvc/config.local` the way the job writes it; the job (`dshub ci push`)
does that itself, checks access, pushes and proves presence of all 1,001 objects.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from indexer.storage import Credentials, StorageSite
from tests.ci.proxy_world import ProxyWorld, create_dataset, served_dshub
from tests.gitlab_sandbox.server import Sandbox

BIN = Path(sys.executable).parent
FILES = 1000


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def _fill(world: ProxyWorld) -> None:
    folder = world.repo.work / "files"
    folder.mkdir()
    for i in range(FILES):
        (folder / f"{i:04d}.bin").write_bytes(os.urandom(2048))
    world.repo.dvc("add", "-q", "files")


def _one(world: ProxyWorld, label: str) -> float:
    token = world.job_token()
    repo = world.repo
    if label == "plain":
        for option, value in (
            ("auth", "custom"),
            ("custom_auth_header", "JOB-TOKEN"),
            ("password", token),
        ):
            repo.dvc("remote", "modify", "--local", "site", option, value)
        return _timed([str(BIN / "dvc"), "push", "-r", "site", "--jobs", "8"], repo.work, repo.env)
    env = {**repo.env, **repo.variables, "CI_JOB_TOKEN": token}
    return _timed([str(BIN / "dshub"), "ci", "push", "--jobs", "8"], repo.work, env)


def proxy_push(
    base: Path,
    dvc_env: dict[str, str],
    *,
    bucket: str,
    endpoint: str,
    region: str,
    keys: Credentials,
    rounds: int = 2,
) -> list[dict[str, float]]:
    """Per round, seconds for plain `dvc push` and for the dvc-push job, each to a new, empty
    dataset; the order alternates between rounds so neither always runs first."""
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
            results: list[dict[str, float]] = []
            for number in range(rounds):
                order = ("plain", "job") if number % 2 == 0 else ("job", "plain")
                timings: dict[str, float] = {}
                for label in order:
                    name = f"push-{label}-{number}"
                    world = create_dataset(dshub, base / name, name, site, dvc_env)
                    _fill(world)
                    timings[label] = _one(world, label)
                results.append(timings)
            return results
    finally:
        sandbox.stop()
