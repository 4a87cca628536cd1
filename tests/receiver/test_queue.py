"""Coalescing on real Redis with a real RQ worker (`dshub worker --burst`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from indexer.ingest.queue import COALESCED, ENQUEUED, RERUN, RedisQueue
from indexer.ingest.routing import JobRequest
from tests.support.services import wait_until

ROOT = Path(__file__).resolve().parents[2]
PROBES = ("tests.receiver.probe_jobs.",)


def _job(redis_url: str, name: str, func: str = "held") -> JobRequest:
    return JobRequest(f"tests.receiver.probe_jobs.{func}", (redis_url, name), f"probe-{name}")


def _runs(client: redis.Redis, name: str) -> list[str]:
    items = client.lrange(f"{name}:runs", 0, -1)
    return [item.decode() if isinstance(item, bytes) else str(item) for item in items]


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(redis.Redis.from_url(redis_url), allowed=PROBES)


def _worker(redis_url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DSHUB_REDIS_URL=redis_url, DSHUB_DATA_DIR=str(tmp_path / "data"))
    log = (tmp_path / "worker.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "dshub", "worker", "--burst"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def worker_factory(redis_url: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_events_while_queued_collapse_into_one_run(
    queue: RedisQueue, redis_url: str, tmp_path: Path, worker_factory: list[subprocess.Popen[bytes]]
) -> None:
    job = _job(redis_url, "queued")
    assert [queue.enqueue(job) for _ in range(4)] == [ENQUEUED, COALESCED, COALESCED, COALESCED]
    client = queue.connection
    client.rpush("queued:gate", "go", "go", "go")
    worker = _worker(redis_url, tmp_path)
    worker_factory.append(worker)
    assert worker.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()
    assert _runs(client, "queued") == ["start", "end"]


def test_events_while_running_cause_exactly_one_more_run(
    queue: RedisQueue, redis_url: str, tmp_path: Path, worker_factory: list[subprocess.Popen[bytes]]
) -> None:
    client = queue.connection
    job = _job(redis_url, "running")
    assert queue.enqueue(job) == ENQUEUED
    worker = _worker(redis_url, tmp_path)
    worker_factory.append(worker)
    wait_until(lambda: _runs(client, "running") == ["start"], 30, "the first run")
    assert [queue.enqueue(job) for _ in range(3)] == [RERUN, RERUN, RERUN]
    client.rpush("running:gate", "go")
    wait_until(lambda: _runs(client, "running") == ["start", "end", "start"], 30, "the rerun")
    # An event during the rerun asks for one more run again: none is ever skipped.
    assert queue.enqueue(job) == RERUN
    client.rpush("running:gate", "go")
    wait_until(lambda: len(_runs(client, "running")) == 5, 30, "the second rerun")
    client.rpush("running:gate", "go")
    assert worker.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()
    assert _runs(client, "running") == ["start", "end"] * 3
    assert client.llen("running:gate") == 0
    # Once idle, the next event is a fresh job again.
    assert queue.enqueue(job) == ENQUEUED


def test_a_failed_run_does_not_drop_the_requested_rerun(
    queue: RedisQueue, redis_url: str, tmp_path: Path, worker_factory: list[subprocess.Popen[bytes]]
) -> None:
    client = queue.connection
    job = _job(redis_url, "failing", func="failing")
    queue.enqueue(job)
    worker = _worker(redis_url, tmp_path)
    worker_factory.append(worker)
    wait_until(lambda: _runs(client, "failing") == ["start"], 30, "the first run")
    assert queue.enqueue(job) == RERUN
    client.rpush("failing:gate", "go", "go")
    assert worker.wait(timeout=60) == 0
    assert _runs(client, "failing") == ["start", "end", "start", "end"]
    from rq.job import Job

    assert Job.fetch(job.job_id, connection=client).get_status() == "failed"
    assert queue.enqueue(job) == ENQUEUED


def test_a_stale_running_marker_never_swallows_an_event(queue: RedisQueue, redis_url: str) -> None:
    # A worker killed mid-job leaves its marker behind; RQ's status no longer says "started".
    job = _job(redis_url, "stale")
    queue.connection.set(f"dshub:coalesce:{job.job_id}:state", "running")
    assert queue.enqueue(job) == ENQUEUED
    assert queue.queue.job_ids == [job.job_id]


def test_only_dshub_job_functions_are_run_by_default(redis_url: str) -> None:
    from indexer.ingest.queue import resolve

    with pytest.raises(ValueError, match="not a dshub job function"):
        resolve("os.system")
    assert resolve("tests.receiver.probe_jobs.record", PROBES).__name__ == "record"
