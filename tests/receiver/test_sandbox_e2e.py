"""End to end: the GitLab sandbox delivers real events to a gunicorn-served dshub over HTTP.

The hook is registered by `dshub hooks install` (python-gitlab against the sandbox), the
events come from python-gitlab calls, and the jobs are checked in Redis.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import gitlab
import redis
from rq import Queue

from indexer.ingest.queue import QUEUE_NAME
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.conftest import SECRET
from tests.receiver.serving import ROOT, start_gunicorn
from tests.support.services import ServiceUnavailable, wait_until


def _install(sandbox: Sandbox, receiver_url: str, *target: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        DSHUB_GITLAB_URL=sandbox.url,
        DSHUB_GITLAB_TOKEN=sandbox.admin_token,
        DSHUB_WEBHOOK_SECRET=SECRET,
    )
    return subprocess.run(
        [sys.executable, "-m", "dshub", "hooks", "install", *target, "--url", receiver_url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sandbox_events_become_jobs_in_redis(
    tmp_path: Path, redis_url: str, gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    server = start_gunicorn(
        tmp_path,
        {
            "DSHUB_DATA_DIR": str(tmp_path / "data"),
            "DSHUB_WEBHOOK_SECRET": SECRET,
            "DSHUB_REDIS_URL": redis_url,
            "DSHUB_GITLAB_URL": gitlab_sandbox.url,
        },
    )
    try:
        receiver_url = f"{server.url}/webhooks/gitlab"
        first = _install(gitlab_sandbox, receiver_url, "--system")
        again = _install(gitlab_sandbox, receiver_url, "--system")
        assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
        assert first.stdout.startswith("created hook") and again.stdout.startswith("updated hook")
        hooks = [hook for hook in gitlab_admin.hooks.list(all=True) if hook.url == receiver_url]
        assert len(hooks) == 1 and hooks[0].push_events and hooks[0].repository_update_events

        project = gitlab_admin.projects.create({"name": "e2e-data"})
        project.files.create(
            {
                "file_path": "data.csv.dvc",
                "branch": "main",
                "content": "outs:\n- md5: 0123456789abcdef0123456789abcdef\n  path: data.csv\n",
                "commit_message": "Add a pointer",
            }
        )
        ref_key = hashlib.sha1(b"refs/heads/main").hexdigest()
        expected = {f"sync_project-{project.id}", f"sync_ref-{project.id}-{ref_key}"}
        queue = Queue(QUEUE_NAME, connection=redis.Redis.from_url(redis_url))
        try:
            wait_until(lambda: expected <= set(queue.job_ids), 60, "jobs from the sandbox's events")
        except ServiceUnavailable as exc:
            # Say what did happen: each delivery's outcome and what the queue holds.
            seen = [(d.event, d.outcome, d.status, d.error) for d in gitlab_sandbox.deliveries()]
            raise AssertionError(f"{exc}; deliveries {seen}; queued {queue.job_ids}") from exc
        sync = queue.fetch_job(f"sync_ref-{project.id}-{ref_key}")
        assert sync is not None
        func, args, _ = sync.args
        assert func == "indexer.sync.jobs.sync_ref"
        assert args[:2] == [project.id, "refs/heads/main"]
        assert args[3] == project.commits.list(ref_name="main", all=True)[0].id

        # Every delivery the sandbox made was answered 2xx (nothing counts toward disabling).
        gitlab_sandbox.webhooks.wait_idle()
        statuses = {delivery.status for delivery in gitlab_sandbox.deliveries()}
        assert statuses and all(
            status is not None and 200 <= status < 300 for status in statuses
        ), statuses
    finally:
        server.stop()


def test_project_hook_install_is_idempotent(
    tmp_path: Path, gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    project = gitlab_admin.projects.create({"name": "hooked"})
    url = "http://127.0.0.1:9/webhooks/gitlab"  # never called: no event is triggered here
    for expected in ("created", "updated"):
        result = _install(gitlab_sandbox, url, "--project", str(project.id))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{expected} hook")
    hooks = project.hooks.list(all=True)
    assert [hook.url for hook in hooks] == [url]
    assert hooks[0].push_events and hooks[0].tag_push_events and hooks[0].merge_requests_events
    assert not hooks[0].issues_events


def test_hooks_install_without_credentials_explains_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSHUB_")}
    env["DSHUB_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "dshub", "hooks", "install", "--system"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "dshub: set DSHUB_GITLAB_URL and DSHUB_GITLAB_TOKEN (an admin token for --system)",
        "dshub: set DSHUB_WEBHOOK_SECRET: GitLab sends it with every delivery",
    ]


def test_system_hook_install_with_a_non_admin_token_is_refused(
    gitlab_sandbox: Sandbox,
) -> None:
    _, token = gitlab_sandbox.create_user("alice")
    env = dict(
        os.environ,
        DSHUB_GITLAB_URL=gitlab_sandbox.url,
        DSHUB_GITLAB_TOKEN=token,
        DSHUB_WEBHOOK_SECRET=SECRET,
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dshub",
            "hooks",
            "install",
            "--system",
            "--url",
            "http://127.0.0.1:9/x",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 4
    assert "installing this hook needs an administrator token" in result.stderr
