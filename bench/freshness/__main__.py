"""Freshness benchmark: `.venv/bin/python -m bench.freshness [--runs 50] [--files 100]`.

Tag push → searchable, the whole real path: the GitLab sandbox in a subprocess delivers a
system hook to dshub under gunicorn (deploy/gunicorn.conf.py), the receiver hands the event
to Redis/RQ, a long-running `dshub worker` (not burst) runs the sync, and the REST API lists
the new version. One dataset of `--files` files in a tracked directory (bytes in a local
storage site) gets a new tag per run; the clock starts when `git push` of the tag returns and
stops when `GET /api/v1/datasets/<id>/versions` (polled every 10 ms) lists the tag.

Milestones (from the sandbox's delivery records and RQ's job timestamps), each measured
from the push's return: the receiver answered the webhook, the job was enqueued in RQ, a
worker started it, it finished, the API listed the tag.
Needs `redis-server`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gitlab
import requests
from rq.job import Job
from rq.registry import FinishedJobRegistry

from indexer.data.dvc_env import dvc_environment
from indexer.data.storage import StorageSite
from indexer.ingest.queue import QUEUE_NAME, redis_client
from indexer.sites.registry import SiteRegistry
from tests.gitlab_sandbox.fixtures import run_sandbox_subprocess
from tests.receiver.serving import ROOT, start_gunicorn
from tests.support.services import start_redis, wait_until

SECRET = "bench-freshness-secret"  # noqa: S105 - a throwaway secret for a loopback benchmark
POLL_SECONDS = 0.01
DVC = str(Path(sys.executable).parent / "dvc")
TARGET_P95 = 1.0


@dataclass
class Run:
    """One measured tag push: total seconds and per-stage seconds (None when unknown)."""

    total: float
    stages: dict[str, float | None]


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _ts(value: datetime | None) -> float | None:
    """Epoch seconds of an RQ timestamp (naive ones are UTC)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _sync_job(connection: Any, tag: str, project_id: int) -> Job | None:
    """The finished RQ job that synced `tag` (by its description)."""
    registry = FinishedJobRegistry(QUEUE_NAME, connection=connection)
    found: Job | None = None
    for job_id in registry.get_job_ids():
        job = Job.fetch(job_id, connection=connection)
        description = job.description or ""
        named = f"'refs/tags/{tag}'" in description or f"'{tag}'" in description
        ours = "sync_ref" in description and named and f"({project_id}," in description
        if ours and (found is None or (_ts(job.ended_at) or 0) > (_ts(found.ended_at) or 0)):
            found = job
    return found


def main() -> int:
    """Set everything up, measure `--runs` tag pushes, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.freshness")
    parser.add_argument("--runs", type=int, default=50, help="tag pushes to measure (default 50)")
    parser.add_argument("--files", type=int, default=100, help="files in the dataset")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    if args.runs < 1 or args.files < 1:
        parser.error("--runs and --files must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="dshub-freshness-"))
    redis_url, redis_server = start_redis(work / "redis")
    sandbox = run_sandbox_subprocess(work / "sandbox")
    index_url = f"sqlite:///{work / 'index.sqlite3'}"
    storage = work / "storage"
    SiteRegistry(index_url).put(StorageSite(name="bench", kind="local", path=str(storage)))
    env = {
        "DSHUB_DATA_DIR": str(work / "data"),
        "DSHUB_WEBHOOK_SECRET": SECRET,
        "DSHUB_REDIS_URL": redis_url,
        "DSHUB_GITLAB_URL": sandbox.url,
        "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
        "DSHUB_INDEX_URL": index_url,
        "DSHUB_LOG_LEVEL": "WARNING",
        "DSHUB_LOG_FORMAT": "text",
        "DSHUB_RECONCILE_INTERVAL": "0",
    }
    server = start_gunicorn(work / "gunicorn", env, workers=args.workers)
    worker_log = (work / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "dshub", "worker"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    runs: list[Run] = []
    try:
        hook_url = f"{server.url}/webhooks/gitlab"
        hooks = subprocess.run(
            [sys.executable, "-m", "dshub", "hooks", "install", "--system", "--url", hook_url],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if hooks.returncode != 0:
            raise SystemExit(f"dshub hooks install failed: {hooks.stderr}")
        project_id, repo, git_env = _make_dataset(sandbox, work, storage, args.files)
        session = requests.Session()
        admin = {"PRIVATE-TOKEN": sandbox.admin_token}
        versions_url = f"{server.url}/api/v1/datasets/{project_id}/versions"
        wait_until(lambda: session.get(versions_url, headers=admin).status_code == 200, 60, "index")
        runs = _measure(
            args.runs,
            sandbox,
            redis_url=redis_url,
            project_id=project_id,
            repo=repo,
            git_env=git_env,
            versions_url=versions_url,
        )
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=20)
        worker_log.close()
        server.stop()
        sandbox.stop()
        redis_server.stop()
    _report(args, runs)
    return 0


def _measure(
    count: int,
    sandbox: Any,
    *,
    redis_url: str,
    project_id: int,
    repo: Path,
    git_env: dict[str, str],
    versions_url: str,
) -> list[Run]:
    """Push `count` tags (after one warm-up) and time each until the API lists it."""
    runs: list[Run] = []
    session = requests.Session()
    admin = {"PRIVATE-TOKEN": sandbox.admin_token}
    connection = redis_client(redis_url)
    for number in range(count + 1):  # run 0 warms up (manifest fetched and stored)
        tag = f"v{number}"
        _run(["git", "tag", tag], repo, git_env)
        _run(["git", "push", "-q", "origin", tag], repo, git_env)
        pushed = time.time()
        while True:
            answer = session.get(versions_url, headers=admin, timeout=10)
            if answer.ok and any(v["name"] == tag for v in answer.json()["items"]):
                visible = time.time()
                break
            if time.time() - pushed > 60:
                raise SystemExit(f"tag {tag} was not searchable after 60 s")
            time.sleep(POLL_SECONDS)
        if number == 0:
            continue
        runs.append(
            Run(
                visible - pushed,
                _stages(sandbox, connection, project_id, tag=tag, pushed=pushed, visible=visible),
            )
        )
    return runs


def _make_dataset(
    sandbox: Any, work: Path, storage: Path, files: int
) -> tuple[int, Path, dict[str, str]]:
    """A private project whose `data/` directory of `files` files is tracked and pushed."""
    dvc_env = dvc_environment(work / "dvc-state")
    gl = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
    project = gl.projects.create({"name": "fresh", "visibility": "private"})
    project_id = project.id
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "bench"})
    repo = work / "repo"
    git_env = {**dvc_env, "GIT_TERMINAL_PROMPT": "0"}
    host = sandbox.url.split("://", 1)[1]
    remote = f"http://oauth2:{sandbox.admin_token}@{host}/root/fresh.git"
    _run(["git", "init", "-q", "-b", "main", str(repo)], work, git_env)
    for key, value in (("user.name", "Bench"), ("user.email", "bench@example.com")):
        _run(["git", "config", key, value], repo, git_env)
    _run(["git", "remote", "add", "origin", remote], repo, git_env)
    _run([DVC, "init", "-q"], repo, git_env)
    _run([DVC, "remote", "add", "-d", "site", str(storage / str(project_id))], repo, git_env)
    (repo / "data").mkdir()
    for index in range(files):
        (repo / "data" / f"f{index:04d}.bin").write_bytes(os.urandom(256) + bytes([index % 256]))
    _run([DVC, "add", "-q", "data"], repo, git_env)
    _run(["git", "add", "-A"], repo, git_env)
    _run(["git", "commit", "-q", "-m", "data"], repo, git_env)
    _run([DVC, "push", "-q"], repo, git_env)
    _run(["git", "push", "-q", "origin", "main"], repo, git_env)
    return project.id, repo, git_env


def _stages(
    sandbox: Any, connection: Any, project_id: int, *, tag: str, pushed: float, visible: float
) -> dict[str, float | None]:
    """Seconds from the push's return to each milestone (None when it was not found)."""
    deliveries = requests.get(
        f"{sandbox.url}/-/sandbox/deliveries",
        headers={"PRIVATE-TOKEN": sandbox.admin_token},
        timeout=10,
    ).json()
    answered = [
        d["created_at"]
        for d in deliveries
        if d.get("body", {}).get("ref") == f"refs/tags/{tag}" and d["outcome"] == "delivered"
    ]
    delivered = min(answered) if answered else None
    job = _sync_job(connection, tag, project_id)
    enqueued = _ts(job.enqueued_at) if job else None
    started = _ts(job.started_at) if job else None
    ended = _ts(job.ended_at) if job else None
    milestones = {
        "webhook answered": delivered,
        "job enqueued": enqueued,
        "job started": started,
        "job finished": ended,
        "listed by API": visible,
    }
    return {name: None if at is None else at - pushed for name, at in milestones.items()}


def _report(args: argparse.Namespace, runs: list[Run]) -> None:
    totals = [run.total for run in runs]
    p50, p95 = statistics.median(totals), _percentile(totals, 0.95)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"freshness: {len(runs)} tag pushes of a {args.files}-file dataset")
    print(
        f"  total  p50 {p50 * 1000:.0f} ms  p95 {p95 * 1000:.0f} ms  max {max(totals) * 1000:.0f} ms"
    )
    print("  milestones, measured from the return of `git push`:")
    for name in (
        "webhook answered",
        "job enqueued",
        "job started",
        "job finished",
        "listed by API",
    ):
        values = [v for run in runs if (v := run.stages.get(name)) is not None]
        if values:
            print(
                f"  {name:<18} p50 {statistics.median(values) * 1000:7.1f} ms"
                f"  p95 {_percentile(values, 0.95) * 1000:7.1f} ms  ({len(values)} runs)"
            )
        else:
            print(f"  {name:<18} not measured")
    verdict = "met" if p95 <= TARGET_P95 else "NOT met"
    print(f"target p95 <= {TARGET_P95 * 1000:.0f} ms: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
