"""Scale-out on one machine: two web processes and two `dshub worker`s on one PostgreSQL and Redis.

Each web process (gunicorn, `deploy/gunicorn.conf.py`) has its own data directory (journal);
both workers and both webs share the index (PostgreSQL) and the queue (Redis). The sandbox's
project hooks spread the deliveries over the two web processes; every event is journaled by
exactly one of them, handed over once, and every version is indexed exactly once, read alike
through either web process. A redelivery to the same process is dropped as a duplicate; one
to the other process changes nothing in the index.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab
import pytest
import redis
import requests
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.worker import BaseWorker

from dshub.receiver_cli import PROJECT_FLAGS, SYSTEM_FLAGS, WEBHOOK_PATH
from indexer.data.storage import StorageSite
from indexer.ingest import routing
from indexer.ingest.queue import QUEUE_NAME, RedisQueue
from indexer.sites.registry import SiteRegistry
from indexer.store import open_index
from tests.convergence.gitlab_ops import expected_index, md5_of, pointer_text
from tests.convergence.harness import Example
from tests.convergence.operations import converge
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import ROOT, Gunicorn, start_gunicorn
from tests.support.index_snapshot import index_snapshot
from tests.support.services import scratch_database, wait_until

SECRET = "scale-out-webhook-secret"
PROJECTS = 6
TAGS = ("v1", "v2")

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    """The module's 2x2 deployment and what it runs on."""

    root: Path
    sandbox: Sandbox
    admin: gitlab.Gitlab
    index_url: str
    redis_url: str
    webs: list[Gunicorn]
    workers: list[subprocess.Popen[bytes]]

    def queue(self) -> Queue:
        return Queue(QUEUE_NAME, connection=redis.Redis.from_url(self.redis_url))

    def live_webs(self) -> list[Gunicorn]:
        return [web for web in self.webs if web.process.poll() is None]

    def settled(self, abandoned: frozenset[str] = frozenset()) -> bool:
        """Queue empty, nothing running (but `abandoned`: jobs of a killed worker), journals empty."""
        queue = self.queue()
        return (
            queue.count == 0
            and set(StartedJobRegistry(queue=queue).get_job_ids()) <= abandoned
            and all(_metric(web.url, r"dshub_journal_backlog ") == 0 for web in self.live_webs())
        )

    def settle(self, abandoned: frozenset[str] = frozenset()) -> None:
        """Wait for the workers to run everything the webs handed over; no job may fail."""
        wait_until(lambda: self.settled(abandoned), 90, "an empty queue and empty journals")
        queue = self.queue()
        registry = FailedJobRegistry(queue=queue)
        failures = [queue.fetch_job(job_id) for job_id in registry.get_job_ids()]
        assert not failures, [job.exc_info for job in failures if job is not None]


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str, module_redis_url: str
) -> Iterator[Cluster]:
    """Two web processes and two workers on one PostgreSQL and one Redis, shared by the module."""
    root = tmp_path_factory.mktemp("scale-out")
    webs: list[Gunicorn] = []
    workers: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        postgres_url = stack.enter_context(
            scratch_database(postgres_admin_url, f"dshub_t_{uuid.uuid4().hex[:16]}")
        )
        sandbox = Sandbox(root / "gitlab").start()
        stack.callback(sandbox.stop)
        shared = {
            "DSHUB_INDEX_URL": postgres_url,
            "DSHUB_REDIS_URL": module_redis_url,
            "DSHUB_GITLAB_URL": sandbox.url,
            "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
            "DSHUB_WEBHOOK_SECRET": SECRET,
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_FORMAT": "text",
            "DSHUB_LOG_LEVEL": "WARNING",
        }
        try:
            for name in ("web-a", "web-b"):
                env = {**shared, "DSHUB_DATA_DIR": str(root / name / "data")}
                webs.append(start_gunicorn(root / name, env, workers=1))
            for name in ("worker-1", "worker-2"):
                env = {**os.environ, **shared, "DSHUB_DATA_DIR": str(root / name)}
                env.pop("PROMETHEUS_MULTIPROC_DIR", None)
                log = (root / f"{name}.log").open("wb")
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
            connection = redis.Redis.from_url(module_redis_url)
            wait_until(lambda: len(Worker.all(connection=connection)) == 2, 60, "two RQ workers")
            admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
            admin.auth()
            yield Cluster(root, sandbox, admin, postgres_url, module_redis_url, webs, workers)
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
    return pointer_text("data.csv", f"seed{number}", number)


def _make_dataset(project: Any, number: int, more: list[dict[str, str]] | None = None) -> None:
    """One push making the project a DVC repository with a pointer (and `more` actions)."""
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "Track data.csv with DVC",
            "actions": [
                {"action": "create", "file_path": ".dvc/config", "content": "[core]\n"},
                {"action": "create", "file_path": "data.csv.dvc", "content": _pointer(number)},
                *(more or []),
            ],
        }
    )


def _rq_workers(cluster: Cluster) -> list[BaseWorker | None]:
    """The RQ worker record of each `dshub worker` process (None once it is gone)."""
    records = {w.pid: w for w in Worker.all(connection=redis.Redis.from_url(cluster.redis_url))}
    return [records.get(process.pid) for process in cluster.workers]


def _jobs_done(cluster: Cluster) -> list[int]:
    return [w.successful_job_count if w else 0 for w in _rq_workers(cluster)]


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


def test_two_webs_and_two_workers_index_every_event_exactly_once(cluster: Cluster) -> None:
    webs = cluster.webs
    gl = cluster.admin
    token = cluster.sandbox.admin_token
    accepted_before = [
        _metric(web.url, r'dshub_webhook_events_total\{.*outcome="accepted"') for web in webs
    ]
    jobs_before = _jobs_done(cluster)
    group = gl.groups.create({"name": "spread", "path": "spread"})
    projects = []
    for number in range(PROJECTS):
        project = gl.projects.create({"name": f"set-{number}", "namespace_id": group.id})
        # Alternate the projects' hooks over the two web processes (a load balancer's spread).
        web = webs[number % 2]
        project.hooks.create({"url": web.url + WEBHOOK_PATH, "token": SECRET, **PROJECT_FLAGS})
        projects.append(project)
    for number, project in enumerate(projects):
        _make_dataset(project, number)  # then two tags
        for tag in TAGS:
            project.tags.create({"tag_name": tag, "ref": "main"})

    def all_indexed() -> bool:
        return all(
            sorted(_versions(web.url, int(p.id), token)) == sorted(TAGS)
            for p in projects
            for web in webs
        )

    wait_until(all_indexed, 180, "every project's versions, read through both web processes")
    assert cluster.sandbox.webhooks.wait_idle(30)
    cluster.settle()

    ids = {int(p.id) for p in projects}
    deliveries = [
        d
        for d in cluster.sandbox.deliveries()
        if d.hook_kind == "project" and d.body.get("project_id") in ids
    ]
    assert len(deliveries) == PROJECTS * (1 + len(TAGS)), [(d.event, d.url) for d in deliveries]
    assert {d.outcome for d in deliveries} == {"delivered"}, [
        (d.status, d.error) for d in deliveries
    ]
    # Spread: each web process journaled exactly the deliveries addressed to it.
    for web, before in zip(webs, accepted_before, strict=True):
        addressed = sum(1 for d in deliveries if d.url.startswith(web.url))
        assert addressed == PROJECTS // 2 * (1 + len(TAGS))
        accepted = _metric(web.url, r'dshub_webhook_events_total\{.*outcome="accepted"') - before
        assert accepted == addressed, (web.url, accepted, addressed)
    # Both workers ran jobs; none failed.
    done = [after - before for after, before in zip(_jobs_done(cluster), jobs_before, strict=True)]
    assert min(done) > 0, done

    # A redelivery (same Idempotency-Key) to the same web process is a duplicate; to the other
    # one it is journaled there, and the index still lists each version once.
    delivery = next(d for d in deliveries if d.event == "Tag Push Hook")
    same = next(web for web in webs if delivery.url.startswith(web.url))
    other = next(web for web in webs if web is not same)
    duplicates = _metric(same.url, r'dshub_webhook_events_total\{.*outcome="duplicate"')
    headers = {k: v for k, v in delivery.request_headers.items() if k.lower() != "content-length"}
    for target in (same, other):
        answer = requests.post(
            target.url + WEBHOOK_PATH, json=delivery.body, headers=headers, timeout=10
        )
        assert answer.status_code in (200, 202), answer.text
    assert _metric(same.url, r'dshub_webhook_events_total\{.*outcome="duplicate"') == duplicates + 1
    cluster.settle()
    for project in projects:
        for web in webs:
            assert sorted(_versions(web.url, int(project.id), token)) == sorted(TAGS)


# ------------------------------------------------------- convergence through the 2x2 world


class ClusterExample(Example):
    """An `Example` of the convergence property whose world is the module's 2x2 deployment.

    GitLab is the module's sandbox (fresh groups per example), a system hook per web
    process delivers every event to both, the index is the shared PostgreSQL one, and the
    two `dshub worker` processes run the jobs (`work` waits for them instead of running RQ
    in this process).
    """

    def __init__(self, cluster: Cluster) -> None:  # the harness's set-up, on the cluster
        number = next(_examples)
        self.cluster = cluster
        self.workdir = cluster.root / f"example-{number}"
        self.workdir.mkdir()
        self.sandbox = cluster.sandbox
        self.gl = cluster.admin
        self.groups = [
            int(self.gl.groups.create({"name": n, "path": n, "visibility": "public"}).id)
            for n in (f"lab{number}", f"zoo{number}")
        ]
        self.hooks = [
            self.gl.hooks.create({"url": web.url + WEBHOOK_PATH, "token": SECRET, **SYSTEM_FLAGS})
            for web in cluster.webs
        ]
        self.connection = redis.Redis.from_url(cluster.redis_url)
        self.queue = RedisQueue(self.connection)
        self.store = open_index(cluster.index_url)

    def work(self) -> None:
        self.cluster.settle()

    def close(self) -> None:
        self.sandbox.faults.reset()
        for hook in self.hooks:
            hook.delete()
        self.store.close()
        self.connection.close()


_examples = itertools.count()


# A fixed sequence touching every fault and the operations that move a project (one run: the
# random search is tests/convergence/test_convergence.py's, on one web process).
STEPS = [
    ("create", 0, "duplicate", False),
    ("push", 1, "reorder", True),
    ("tag", 0, "drop", False),
    ("rename", 0, "delay", True),
    ("transfer", 0, "none", False),
    ("retag", 0, "duplicate", True),
    ("create", 0, "drop", False),
    ("untag", 0, "none", False),
]


def test_convergence_through_two_webs_and_two_workers(cluster: Cluster) -> None:
    example = ClusterExample(cluster)
    try:
        converge(example, STEPS)
    finally:
        example.close()


# ------------------------------------------------------------------------- gc across webs


def test_a_gc_on_one_web_is_refused_while_one_runs_on_the_other(cluster: Cluster) -> None:
    gl = cluster.admin
    web_a, web_b = cluster.webs
    site_root = cluster.root / "sites" / "lab"
    SiteRegistry(cluster.index_url).put(
        StorageSite(name="lab", kind="local", path=str(site_root), prefix="team")
    )
    group = gl.groups.create({"name": "gc", "path": "gc"})
    project = gl.projects.create({"name": "collected", "namespace_id": group.id})
    # A tracked directory: gc reads its pointer at every indexed version, under the lock.
    manifest = json.dumps([{"md5": md5_of("image"), "relpath": "a.png", "size": 5}]).encode()
    oid = hashlib.md5(manifest).hexdigest()  # DVC's content address
    stored = site_root / "team" / str(project.id) / "files" / "md5" / oid[:2] / f"{oid[2:]}.dir"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(manifest)
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "lab"})
    project.hooks.create({"url": web_a.url + WEBHOOK_PATH, "token": SECRET, **PROJECT_FLAGS})
    directory = f"outs:\n- md5: {oid}.dir\n  size: 5\n  nfiles: 1\n  hash: md5\n  path: imgs\n"
    _make_dataset(project, 1, [{"action": "create", "file_path": "imgs.dvc", "content": directory}])
    for number in range(2, 6):  # versions on distinct commits
        project.files.update(
            "data.csv.dvc",
            {"branch": "main", "content": _pointer(number), "commit_message": f"v{number}"},
        )
        project.tags.create({"tag_name": f"v{number}", "ref": "main"})
    token = cluster.sandbox.admin_token
    wait_until(
        lambda: len(_versions(web_b.url, int(project.id), token)) == 4, 60, "the four versions"
    )
    assert cluster.sandbox.webhooks.wait_idle(30)
    cluster.settle()
    url = f"/api/v1/datasets/{project.id}/gc"
    headers = {"PRIVATE-TOKEN": token}
    lock = redis.Redis.from_url(cluster.redis_url)
    answers: list[requests.Response] = []
    # A slow GitLab makes the gc on web A hold its lock while it reads the versions' pointers
    # (two reads per version); web B's gc makes one call (/user) before it asks for the lock.
    cluster.sandbox.faults.set_latency(1.0)
    try:
        running = threading.Thread(
            target=lambda: answers.append(
                requests.post(web_a.url + url, json={}, headers=headers, timeout=60)
            )
        )
        running.start()
        wait_until(
            lambda: bool(lock.exists(f"dshub:gc:{project.id}")) or not running.is_alive(),
            30,
            "web A's gc lock",
        )
        assert not answers, [(a.status_code, a.text) for a in answers]
        refused = requests.post(web_b.url + url, json={}, headers=headers, timeout=30)
        held = bool(lock.exists(f"dshub:gc:{project.id}"))
        running.join(timeout=60)
    finally:
        cluster.sandbox.faults.reset()
    assert held, f"web A's gc ended before web B's was answered ({refused.status_code})"
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "gc_in_progress"
    assert f"a gc of dataset {project.id} is already running" in error["message"]
    assert [answer.status_code for answer in answers] == [200], [a.text for a in answers]
    assert answers[0].json()["indexed_refs"]
    # The lock is gone with web A's gc: web B may collect now.
    again = requests.post(web_b.url + url, json={}, headers=headers, timeout=30)
    assert again.status_code == 200, again.text


# ------------------------------------------------------------ crashes under load lose nothing


def test_killing_a_web_and_a_worker_mid_load_loses_nothing(cluster: Cluster) -> None:
    gl = cluster.admin
    web_a, web_b = cluster.webs
    token = cluster.sandbox.admin_token
    group = gl.groups.create({"name": "load", "path": "load"})
    projects = []
    for number in range(4):
        project = gl.projects.create({"name": f"busy-{number}", "namespace_id": group.id})
        web = cluster.webs[number % 2]
        project.hooks.create({"url": web.url + WEBHOOK_PATH, "token": SECRET, **PROJECT_FLAGS})
        _make_dataset(project, number)
        projects.append(project)
    cluster.settle()
    stop = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:
        try:
            for round_no in itertools.count(1):
                if stop.is_set():
                    return
                for project in projects:
                    project.files.update(
                        "data.csv.dvc",
                        {
                            "branch": "main",
                            "content": _pointer(1000 + round_no),
                            "commit_message": f"round {round_no}",
                        },
                    )
                    project.tags.create({"tag_name": f"r{round_no}", "ref": "main"})
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    # A slow GitLab makes every job slow: a worker is caught mid-job.
    cluster.sandbox.faults.set_latency(0.1)
    loader = threading.Thread(target=load)
    loader.start()
    abandoned: set[str] = set()
    try:
        victim = cluster.workers[1]

        def victim_busy() -> bool:
            record = _rq_workers(cluster)[1]
            job = record.get_current_job_id() if record else None
            if job:
                abandoned.add(job)
            return job is not None

        wait_until(victim_busy, 60, "worker-2 running a job")
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        web_b.kill()
        time.sleep(2)  # the load goes on with one web process and one worker
        assert requests.get(web_a.url + "/healthz", timeout=5).status_code == 200
    finally:
        stop.set()
        loader.join(timeout=120)
        cluster.sandbox.faults.reset()
    assert not errors, errors
    assert cluster.sandbox.webhooks.wait_idle(30)
    lost = [d for d in cluster.sandbox.deliveries() if d.url.startswith(web_b.url)]
    assert any(d.outcome == "failed" for d in lost), "no delivery reached the killed web"
    cluster.settle(frozenset(abandoned))
    RedisQueue(redis.Redis.from_url(cluster.redis_url)).enqueue(routing.reconcile_job())
    cluster.settle(frozenset(abandoned))
    ids = {str(p.id) for p in projects}
    truth = expected_index(gl, only=ids)
    with open_index(cluster.index_url) as store:
        assert {pid: d for pid, d in index_snapshot(store).items() if pid in ids} == truth
    # The surviving web answers, and reads the recovered versions.
    for project in projects:
        tags = sorted(t.name for t in project.tags.list(get_all=True))
        assert sorted(_versions(web_a.url, int(project.id), token)) == tags
