"""Scale-out on one machine: two web processes and two `dshub worker`s on one PostgreSQL and Redis.

Each web process (gunicorn, `deploy/gunicorn.conf.py`) has its own data directory (journal);
both workers and both webs share the index (PostgreSQL) and the queue (Redis). The sandbox's
project hooks spread the deliveries over the two web processes; every event is journaled by
exactly one of them, handed over once, and every version is indexed exactly once, read alike
through either web process. A redelivery to the same process is dropped as a duplicate; one
to the other process changes nothing in the index.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest
import redis
import requests
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry

from dshub.receiver_cli import PROJECT_FLAGS, WEBHOOK_PATH
from indexer.ingest.queue import QUEUE_NAME
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import ROOT, Gunicorn, start_gunicorn
from tests.support.services import wait_until

SECRET = "scale-out-webhook-secret"
PROJECTS = 6
TAGS = ("v1", "v2")

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_url: str, redis_url: str, gitlab_sandbox: Sandbox
) -> Iterator[tuple[list[Gunicorn], dict[str, str]]]:
    """Two web processes and two workers; yields the webs and the shared settings."""
    shared = {
        "DSHUB_INDEX_URL": postgres_url,
        "DSHUB_REDIS_URL": redis_url,
        "DSHUB_GITLAB_URL": gitlab_sandbox.url,
        "DSHUB_GITLAB_TOKEN": gitlab_sandbox.admin_token,
        "DSHUB_WEBHOOK_SECRET": SECRET,
        "DSHUB_RECONCILE_INTERVAL": "0",
        "DSHUB_LOG_FORMAT": "text",
        "DSHUB_LOG_LEVEL": "WARNING",
    }
    webs: list[Gunicorn] = []
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("web-a", "web-b"):
            env = {**shared, "DSHUB_DATA_DIR": str(tmp_path / name / "data")}
            webs.append(start_gunicorn(tmp_path / name, env, workers=1))
        for name in ("worker-1", "worker-2"):
            env = {**os.environ, **shared, "DSHUB_DATA_DIR": str(tmp_path / name)}
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            log = (tmp_path / f"{name}.log").open("wb")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "dshub", "worker"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        connection = redis.Redis.from_url(redis_url)
        wait_until(lambda: len(Worker.all(connection=connection)) == 2, 60, "two RQ workers")
        yield webs, shared
    finally:
        for process in workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for web in webs:
            web.stop()


def _pointer(number: int) -> str:
    return f"outs:\n- md5: {number:032x}\n  size: {number}\n  path: data.csv\n"


def _metric(base: str, pattern: str) -> float:
    """The sum of the samples of /metrics whose line matches `pattern` (regex, from the start)."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if re.match(pattern, line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _versions(base: str, project_id: int, token: str) -> list[str]:
    answer = requests.get(
        f"{base}/api/v1/datasets/{project_id}/versions",
        headers={"PRIVATE-TOKEN": token},
        timeout=10,
    )
    return [item["name"] for item in answer.json()["items"]] if answer.ok else []


def _settled(redis_url: str, webs: list[Gunicorn]) -> bool:
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(QUEUE_NAME, connection=connection)
    return (
        queue.count == 0
        and StartedJobRegistry(queue=queue).count == 0
        and all(_metric(web.url, r"dshub_journal_backlog ") == 0 for web in webs)
    )


def test_two_webs_and_two_workers_index_every_event_exactly_once(
    cluster: tuple[list[Gunicorn], dict[str, str]],
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    redis_url: str,
) -> None:
    webs, _ = cluster
    token = gitlab_sandbox.admin_token
    group = gitlab_admin.groups.create({"name": "lab", "path": "lab"})
    projects = []
    for number in range(PROJECTS):
        project = gitlab_admin.projects.create({"name": f"set-{number}", "namespace_id": group.id})
        # Alternate the projects' hooks over the two web processes (a load balancer's spread).
        web = webs[number % 2]
        project.hooks.create({"url": web.url + WEBHOOK_PATH, "token": SECRET, **PROJECT_FLAGS})
        projects.append(project)
    for number, project in enumerate(projects):
        # One push making the project a DVC repository with a pointer, then two tags.
        project.commits.create(
            {
                "branch": "main",
                "commit_message": "Track data.csv with DVC",
                "actions": [
                    {"action": "create", "file_path": ".dvc/config", "content": "[core]\n"},
                    {"action": "create", "file_path": "data.csv.dvc", "content": _pointer(number)},
                ],
            }
        )
        for tag in TAGS:
            project.tags.create({"tag_name": tag, "ref": "main"})

    def all_indexed() -> bool:
        return all(
            sorted(_versions(web.url, int(p.id), token)) == sorted(TAGS)
            for p in projects
            for web in webs
        )

    wait_until(all_indexed, 180, "every project's versions, read through both web processes")
    assert gitlab_sandbox.webhooks.wait_idle(30)
    wait_until(lambda: _settled(redis_url, webs), 60, "an empty queue and empty journals")

    deliveries = [d for d in gitlab_sandbox.deliveries() if d.hook_kind == "project"]
    assert len(deliveries) == PROJECTS * (1 + len(TAGS)), [(d.event, d.url) for d in deliveries]
    assert {d.outcome for d in deliveries} == {"delivered"}, [
        (d.status, d.error) for d in deliveries
    ]
    # Spread: each web process journaled exactly the deliveries addressed to it.
    for web in webs:
        addressed = sum(1 for d in deliveries if d.url.startswith(web.url))
        assert addressed == PROJECTS // 2 * (1 + len(TAGS))
        accepted = _metric(web.url, r'dshub_webhook_events_total\{.*outcome="accepted"')
        assert accepted == addressed, (web.url, accepted, addressed)
    # Both workers ran jobs; none failed.
    connection = redis.Redis.from_url(redis_url)
    counts = sorted(w.successful_job_count for w in Worker.all(connection=connection))
    assert len(counts) == 2 and counts[0] > 0, counts
    assert FailedJobRegistry(queue=Queue(QUEUE_NAME, connection=connection)).count == 0

    # A redelivery (same Idempotency-Key) to the same web process is a duplicate; to the other
    # one it is journaled there, and the index still lists each version once.
    delivery = next(d for d in deliveries if d.event == "Tag Push Hook")
    same = next(web for web in webs if delivery.url.startswith(web.url))
    other = next(web for web in webs if web is not same)
    headers = {k: v for k, v in delivery.request_headers.items() if k.lower() != "content-length"}
    for target in (same, other):
        answer = requests.post(
            target.url + WEBHOOK_PATH, json=delivery.body, headers=headers, timeout=10
        )
        assert answer.status_code in (200, 202), answer.text
    assert _metric(same.url, r'dshub_webhook_events_total\{.*outcome="duplicate"') == 1
    wait_until(lambda: _settled(redis_url, webs), 60, "the redelivery's jobs")
    for project in projects:
        for web in webs:
            assert sorted(_versions(web.url, int(project.id), token)) == sorted(TAGS)
