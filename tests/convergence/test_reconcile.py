"""Reconcile on demand (`dshub reconcile`) and on schedule (`dshub worker`, the embedded app).

Drift is made the way GitLab makes it: projects changed while no webhook reaches dshub (no
hook installed at all). Only a reconcile can then bring the index to GitLab's truth.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gitlab
import pytest
import redis
import requests

from dshub.cli import main
from indexer.ingest.journal import Journal
from indexer.ingest.scheduler import ReconcileScheduler, journal_dedupe_key, redis_claim
from indexer.store import open_index
from tests.convergence.gitlab_ops import create_dataset, expected_index
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import ROOT, start_gunicorn
from tests.support.index_snapshot import index_snapshot
from tests.support.services import wait_until


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _env(tmp_path: Path, sandbox: Sandbox, **extra: str) -> dict[str, str]:
    return {
        "DSHUB_DATA_DIR": str(tmp_path / "data"),
        "DSHUB_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}",
        "DSHUB_GITLAB_URL": sandbox.url,
        "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
        "DSHUB_LOG_FORMAT": "text",
        "DSHUB_LOG_LEVEL": "WARNING",
        **extra,
    }


@pytest.fixture
def group(gitlab_admin: gitlab.Gitlab) -> int:
    # Public: the tests make public datasets, and GitLab refuses a project more visible
    # than its group.
    group = gitlab_admin.groups.create({"name": "vision", "path": "vision", "visibility": "public"})
    return int(group.id)


# -------------------------------------------------------------------------- the schedulers


def test_many_schedulers_on_one_journal_reconcile_once_per_interval(tmp_path: Path) -> None:
    from indexer.ingest.intake import Receipt
    from indexer.ingest.journal import Delivery
    from indexer.ingest.scheduler import journal_scheduler

    clock = FakeClock(1000.0)
    woken: list[int] = []

    def submitter(index: int) -> Callable[[Delivery], Receipt]:
        journal = Journal.in_directory(tmp_path)  # each gunicorn worker has its own connection

        def submit(delivery: Delivery) -> Receipt:
            entry_id, duplicate = journal.append(
                delivery.dedupe_key, delivery.kind, None, delivery.jobs, claim=False
            )
            if not duplicate:
                woken.append(index)
            return Receipt(entry_id, duplicate, False)

        return submit

    schedulers = []
    for index in range(3):  # three gunicorn workers on one journal
        scheduler = journal_scheduler(submitter(index), 10)
        scheduler.clock = clock
        scheduler.last_slot = scheduler.slot() + 1
        schedulers.append(scheduler)
    for _ in range(4):
        clock.now += 10
        for scheduler in schedulers:
            scheduler.tick()
    # Slot 101 is skipped (first interval after start); 102, 103 and 104 are each won once.
    assert len(woken) == 3
    assert sum(s.submitted for s in schedulers) == 3
    journal = Journal.in_directory(tmp_path)
    entries = journal.claim(limit=50)
    assert sorted(e.dedupe_key for e in entries) == [
        journal_dedupe_key(10, slot) for slot in (102, 103, 104)
    ]
    assert all([job.func for job in e.jobs] == ["indexer.sync.jobs.reconcile"] for e in entries)


def test_redis_slot_claims_have_one_winner(redis_url: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    claims = [redis_claim(connection, 5) for _ in range(4)]
    winners = [claim(77) for claim in claims]
    assert winners.count(True) == 1
    assert claims[0](78) and not claims[1](78)


def test_scheduler_submits_nothing_in_its_first_interval() -> None:
    clock = FakeClock(95.0)
    submitted: list[int] = []
    scheduler = ReconcileScheduler(10, lambda slot: True, lambda: submitted.append(1), clock)
    clock.now = 105.0  # the boundary right after start
    assert not scheduler.tick()
    clock.now = 115.0
    assert scheduler.tick() and submitted == [1]
    assert not scheduler.tick()  # same slot: nothing more


# ---------------------------------------------------------------------- dshub reconcile


def test_dshub_reconcile_repairs_drift_and_reports(
    tmp_path: Path,
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    group: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = _env(tmp_path, gitlab_sandbox)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cats = create_dataset(gitlab_admin, group, "cats", files={"a.csv": ("a", 10)})
    dogs = create_dataset(gitlab_admin, group, "dogs", files={"b.csv": ("b", 20)})
    gitlab_admin.projects.create({"name": "plain", "namespace_id": group})  # not a dataset

    assert main(["reconcile", "--project", str(cats.id)]) == 0
    out = capsys.readouterr().out
    assert f"reconcile of project {cats.id}: seen 1, synced 1, removed 0, failed 0" in out
    with open_index(env["DSHUB_INDEX_URL"]) as store:
        assert store.dataset_ids() == {cats.id}

    assert main(["reconcile"]) == 0
    assert "seen 3, synced 2, removed 0, failed 0" in capsys.readouterr().out
    with open_index(env["DSHUB_INDEX_URL"]) as store:
        assert index_snapshot(store) == expected_index(gitlab_admin)

    # Drift: dogs deleted, cats renamed and made public — no webhook told anyone.
    gitlab_admin.projects.delete(dogs.id)
    cats.name, cats.visibility = "Cats v2", "public"
    cats.save()
    assert main(["reconcile"]) == 0
    assert "removed 1" in capsys.readouterr().out
    with open_index(env["DSHUB_INDEX_URL"]) as store:
        assert index_snapshot(store) == expected_index(gitlab_admin)


def test_dshub_reconcile_exits_1_when_a_project_fails(
    tmp_path: Path,
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    group: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in _env(tmp_path, gitlab_sandbox).items():
        monkeypatch.setenv(key, value)
    cats = create_dataset(gitlab_admin, group, "cats", files={"a.csv": ("a", 10)})
    gitlab_sandbox.faults.fail_next(50, 500, path_contains=f"/projects/{cats.id}/repository/tree")
    assert main(["reconcile"]) == 1
    out = capsys.readouterr().out
    assert "failed 1" in out and f"failed: project {cats.id}: GitLab answered 500" in out


def test_dshub_reconcile_rejects_a_non_numeric_project(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["reconcile", "--project", "vision/cats"])
    assert exited.value.code == 2
    assert "must be a numeric GitLab project id" in capsys.readouterr().err


# ------------------------------------------------------------------ scheduled reconciles


def test_dshub_worker_reconciles_on_schedule(
    tmp_path: Path,
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    group: int,
    redis_url: str,
) -> None:
    env = _env(tmp_path, gitlab_sandbox, DSHUB_REDIS_URL=redis_url, DSHUB_RECONCILE_INTERVAL="1")
    cats = create_dataset(gitlab_admin, group, "cats", files={"a.csv": ("a", 10)})
    worker = subprocess.Popen(
        [sys.executable, "-m", "dshub", "worker", "--no-drain"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with open_index(env["DSHUB_INDEX_URL"]) as store:
            wait_until(lambda: cats.id in store.dataset_ids(), 30, "a scheduled reconcile")
            create_dataset(gitlab_admin, group, "dogs", files={"b.csv": ("b", 1)})
            truth = expected_index(gitlab_admin)
            wait_until(lambda: index_snapshot(store) == truth, 30, "the next reconcile")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)


def test_embedded_app_reconciles_on_schedule_once_per_interval_across_workers(
    tmp_path: Path, gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, group: int
) -> None:
    env = _env(tmp_path, gitlab_sandbox, DSHUB_RECONCILE_INTERVAL="1")
    cats = create_dataset(gitlab_admin, group, "cats", "public", files={"a.csv": ("a", 10)})
    started = time.time()
    server = start_gunicorn(tmp_path / "gunicorn", env, workers=2)
    try:
        wait_until(
            lambda: requests.get(f"{server.url}/api/v1/datasets/{cats.id}", timeout=5).ok,
            30,
            "a scheduled reconcile in the embedded worker",
        )
    finally:
        server.stop()
    elapsed = time.time() - started
    with sqlite3.connect(tmp_path / "data" / "journal.sqlite3") as db:
        keys = [
            row[0]
            for row in db.execute("SELECT dedupe_key FROM deliveries WHERE kind = 'schedule'")
        ]
    slots = [int(key.rsplit(":", 1)[1]) for key in keys]
    # Two gunicorn workers, one reconcile per slot: never more rows than seconds elapsed.
    assert 1 <= len(slots) == len(set(slots)) <= int(elapsed) + 1
