"""The convergence harness: a fresh sandbox and index per example, a running receiver, RQ jobs.

The receiver is gunicorn (Redis mode) shared by all examples of a test; each example gets
its own GitLab sandbox (with a system hook pointing at the receiver), its own SQLite index
and a flushed Redis database. Jobs run through RQ in-process (`SimpleWorker`, burst) with
the real job functions of `indexer.sync.jobs`, configured for this example's sandbox and index.
"""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gitlab
import redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

from dshub.receiver_cli import SYSTEM_FLAGS
from indexer.gitlab.reader import GitLabReader
from indexer.ingest import routing
from indexer.ingest.queue import QUEUE_NAME, RedisQueue
from indexer.sites.registry import SiteRegistry
from indexer.store import IndexStore, open_index
from indexer.sync import jobs
from indexer.sync import refs as sync
from tests.gitlab_sandbox.server import Sandbox

SECRET = "convergence-secret"
_examples = itertools.count()


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return frozenset((k, _freeze(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass
class History:
    """Every per-project state GitLab passed through: dataset facts, and each ref's content."""

    facts: dict[str, set[Any]] = field(default_factory=dict)
    refs: dict[str, set[Any]] = field(default_factory=dict)

    def record(self, truth: dict[str, Any]) -> None:
        """Add GitLab's current truth (`expected_index` shape)."""
        for pid, dataset in truth.items():
            facts = {k: v for k, v in dataset.items() if k != "refs"}
            self.facts.setdefault(pid, set()).add(_freeze(facts))
            for name, ref in dataset["refs"].items():
                self.refs.setdefault(pid, set()).add((name, _freeze(ref)))

    def never_seen(self, snapshot: dict[str, Any]) -> list[str]:
        """What in an index snapshot GitLab never had (empty when all is well)."""
        problems = []
        for pid, dataset in snapshot.items():
            facts = {k: v for k, v in dataset.items() if k != "refs"}
            if _freeze(facts) not in self.facts.get(pid, set()):
                problems.append(f"project {pid}: facts {facts} never were GitLab's")
            for name, ref in dataset["refs"].items():
                if (name, _freeze(ref)) not in self.refs.get(pid, set()):
                    problems.append(f"project {pid}: ref {name} {ref['commit_sha'][:8]} never was")
        return problems


class Example:
    """One example's world: sandbox, admin client, index, queue; closed at the end."""

    def __init__(self, workdir: Path, redis_url: str, receiver_url: str) -> None:
        number = next(_examples)
        self.workdir = workdir / f"example-{number}"
        self.sandbox = Sandbox(self.workdir / "gitlab").start()
        self.gl = gitlab.Gitlab(self.sandbox.url, private_token=self.sandbox.admin_token)
        self.gl.auth()
        # Public groups: the steps give projects any visibility, and GitLab refuses a
        # project more visible than its group.
        self.groups = [
            int(self.gl.groups.create({"name": name, "path": name, "visibility": "public"}).id)
            for name in ("lab", "zoo")
        ]
        # After the groups: a group event would enqueue a reconcile and hide drift.
        self.gl.hooks.create({"url": receiver_url, "token": SECRET, **SYSTEM_FLAGS})
        self.connection = redis.Redis.from_url(redis_url)
        self.connection.flushdb()
        self.queue = RedisQueue(self.connection)
        index_url = f"sqlite:///{self.workdir / 'index.sqlite3'}"
        self.store: IndexStore = open_index(index_url)
        context = sync.SyncContext(
            reader=GitLabReader(self.sandbox.url, self.sandbox.admin_token, max_retries=1),
            store=self.store,
            sites=SiteRegistry(index_url).get,
        )
        jobs.install(lambda: context)

    def close(self) -> None:
        """Stop the sandbox, close the index, forget the job context."""
        jobs.clear()
        self.store.close()
        self.sandbox.stop()
        self.connection.close()

    def settle(self) -> None:
        """Deliver every webhook (held reorders too), then run every queued job."""
        hooks = self.sandbox.webhooks
        assert hooks.wait_idle(30)
        hooks.release_held()
        assert hooks.wait_idle(30)
        self.sandbox.faults.delay_webhooks(0)
        failed = [d for d in self.sandbox.deliveries() if d.outcome == "failed"]
        assert not failed, [(d.event, d.status, d.error) for d in failed]
        self.work()

    def work(self) -> None:
        """Run the RQ queue dry in this process (the real job functions, through RQ)."""
        queue = Queue(QUEUE_NAME, connection=self.connection)
        SimpleWorker([queue], connection=self.connection).work(burst=True, logging_level="WARNING")
        registry = FailedJobRegistry(queue=queue)
        failures = [queue.fetch_job(job_id) for job_id in registry.get_job_ids()]
        assert not failures, [job.exc_info for job in failures if job is not None]

    def reconcile(self) -> None:
        """Enqueue a full reconcile as the scheduler would, and run it."""
        self.queue.enqueue(routing.reconcile_job())
        self.work()

    def clone(self, path_with_namespace: str) -> Path:
        """A git clone of a project over smart HTTP (for multi-ref pushes)."""
        target = self.workdir / f"clone-{next(_examples)}"
        host = urlsplit(self.sandbox.url).netloc
        remote = f"http://oauth2:{self.sandbox.admin_token}@{host}/{path_with_namespace}.git"
        git(["clone", "-q", remote, str(target)], self.workdir)
        return target


def git(argv: list[str], cwd: Path) -> str:
    """Run git, failing loudly."""
    result = subprocess.run(
        ["git", *argv], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
