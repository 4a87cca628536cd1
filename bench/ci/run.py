"""Benchmark the CI jobs (one command: `.venv/bin/python -m bench.ci.run`).

1. dvc-push job (`dshub ci push`: push + presence proof) vs plain `dvc push`, 1,000 files in
   a tracked directory, each against an empty prefix of the same moto S3 server (target <= 1.1x).
2. `dshub ci validate` over 10,000 single-file pointers whose objects are stored (target <= 30 s).
3. Proxy mode (`bench/ci/proxy.py`): the dvc-push job vs plain `dvc push`, both through a
   gunicorn-served dshub's DVC remote onto a proxy-mode site on the same moto server, 1,000
   files (target <= 1.1x); and validate-storage over 10,000 pointers there (target <= 30 s).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ci.proxy import proxy_benchmarks
from indexer.data.dvc_env import dvc_environment
from indexer.data.storage import Credentials
from tests.support import services

BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def _repo(base: Path, name: str, url: str, env: dict[str, str]) -> Path:
    repo = base / name
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    _run([str(BIN / "dvc"), "init", "-q"], repo, env)
    _run([str(BIN / "dvc"), "remote", "add", "-d", "storage", url], repo, env)
    return repo


def _direct(base: Path, s3: Any, env: dict[str, str], ci: dict[str, str]) -> None:
    """Parts 1 and 2: direct mode against the bucket itself."""
    timings: dict[str, float] = {}
    for label in ("plain", "job"):
        url = f"s3://bench/push-{label}/1"
        repo = _repo(base, f"push-{label}", url, env)
        for i in range(1000):
            path = repo / "files" / f"{i:04d}.bin"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(os.urandom(2048))
        _run([str(BIN / "dvc"), "add", "-q", "files"], repo, env)
        cmd = (
            [str(BIN / "dvc"), "push", "-r", "storage", "--jobs", "8"]
            if label == "plain"
            else [str(BIN / "dshub"), "ci", "push", "--jobs", "8"]
        )
        timings[label] = _run(cmd, repo, {**env, **ci, "DSHUB_DVC_REMOTE_URL": url})
    print(
        f"push 1,000 files: plain dvc push {timings['plain']:.2f} s, dvc-push job {timings['job']:.2f} s, ratio {timings['job'] / timings['plain']:.2f}x (target <= 1.1x)"
    )

    url = "s3://bench/validate/2"
    repo = _repo(base, "validate", url, env)
    for i in range(10000):
        data = f"file {i}\n".encode()
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - DVC's content address
        (repo / f"p{i:05d}.dvc").write_text(
            f"outs:\n- md5: {md5}\n  size: {len(data)}\n  hash: md5\n  path: p{i:05d}\n"
        )
        s3.put_object(Bucket="bench", Key=f"validate/2/files/md5/{md5[:2]}/{md5[2:]}", Body=data)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "pointers"],
        cwd=repo,
        check=True,
    )
    seconds = _run(
        [str(BIN / "dshub"), "ci", "validate", "--jobs", "8"],
        repo,
        {**env, **ci, "DSHUB_DVC_REMOTE_URL": url},
    )
    print(f"validate-storage over 10,000 pointers: {seconds:.2f} s (target <= 30 s)")


def main() -> None:
    """Run the benchmarks and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.ci.run")
    parser.add_argument("--proxy-only", action="store_true", help="skip the direct-mode parts")
    parser.add_argument("--rounds", type=int, default=2, help="proxy-mode push rounds")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-ci-"))
    endpoint, moto = services.start_moto(base / "moto")
    try:
        s3 = services.moto_client(endpoint)
        s3.create_bucket(Bucket="bench")
        aws = base / "aws"
        aws.write_text("")
        env = dvc_environment(base / "dvc-state")
        env.update(
            {
                "AWS_ACCESS_KEY_ID": services.S3_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": services.S3_SECRET_KEY,
                "AWS_DEFAULT_REGION": services.S3_REGION,
                "AWS_CONFIG_FILE": str(aws),
                "AWS_SHARED_CREDENTIALS_FILE": str(aws),
                "AWS_ENDPOINT_URL_S3": endpoint,
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        ci = {
            "DSHUB_S3_ENDPOINT_URL": endpoint,
            "DSHUB_S3_RW_ACCESS_KEY_ID": services.S3_ACCESS_KEY,
            "DSHUB_S3_RW_SECRET_ACCESS_KEY": services.S3_SECRET_KEY,
            "DSHUB_S3_RO_ACCESS_KEY_ID": services.S3_ACCESS_KEY,
            "DSHUB_S3_RO_SECRET_ACCESS_KEY": services.S3_SECRET_KEY,
            "DSHUB_CI_DVC_STATE_DIR": str(base / "ci-state"),
        }
        if not args.proxy_only:
            _direct(base, s3, env, ci)
        pushes, validate = proxy_benchmarks(
            base,
            env,
            bucket="bench",
            endpoint=endpoint,
            region=services.S3_REGION,
            keys=Credentials(services.S3_ACCESS_KEY, services.S3_SECRET_KEY),
            rounds=args.rounds,
        )
        for number, pair in enumerate(pushes, start=1):
            plain, job = pair["plain"], pair["job"]
            print(
                f"proxy mode, push 1,000 files through dshub (round {number}): plain dvc push "
                f"{plain.describe()}, dvc-push job {job.describe()}, ratio "
                f"{job.seconds / plain.seconds:.2f}x (target <= 1.1x)"
            )
        print(
            "proxy mode, validate-storage over 10,000 pointers through dshub: "
            f"{validate.describe()} (target <= 30 s)"
        )
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
