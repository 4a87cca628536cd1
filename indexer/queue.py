"""Handing journaled jobs to whoever runs them: RQ on Redis, or the embedded in-process worker.

Coalescing (RQ): every `JobRequest` has a stable id. A small state key per id says whether
that job is `queued` or `running`; `RedisQueue.enqueue` reads it together with RQ's own status
under WATCH, so that

- a job still queued absorbs the new event (jobs re-read GitLab, so one run covers both);
- a job running gets a `rerun` flag, and `run_coalesced` (the function RQ actually executes)
  runs the job once more after the current run when it finds the flag: exactly one more run,
  however many events arrived meanwhile;
- otherwise a new RQ job is enqueued under the stable id.

A state key left behind by a killed worker is ignored because RQ's status no longer agrees,
so the worst case is one extra run, never a skipped one.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.job import Job, get_current_job

from indexer.journal import DONE, FAILED, Entry, Journal, JournalError
from indexer.routing import JOBS_MODULE, JobRequest

log = logging.getLogger("dshub.queue")

QUEUE_NAME = "dshub"
JOB_TIMEOUT = 3600
STATE_PREFIX = "dshub:coalesce:"
STATE_TTL = 7 * 24 * 3600
ENQUEUED, COALESCED, RERUN = "enqueued", "coalesced", "rerun"
_WAITING = {"queued", "deferred", "scheduled"}


def redis_client(url: str) -> redis.Redis:
    """A Redis client with short timeouts: a webhook must never hang on a dead Redis."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=0.5, socket_timeout=2.0, health_check_interval=30
    )


def _keys(job_id: str) -> tuple[str, str]:
    return f"{STATE_PREFIX}{job_id}:state", f"{STATE_PREFIX}{job_id}:rerun"


class RedisQueue:
    """The RQ queue jobs are handed to, with per-id coalescing."""

    def __init__(
        self,
        connection: redis.Redis,
        name: str = QUEUE_NAME,
        allowed: tuple[str, ...] = (f"{JOBS_MODULE}.",),
    ) -> None:
        self.connection = connection
        self.queue = Queue(name, connection=connection)
        self.allowed = allowed

    @classmethod
    def from_url(cls, url: str, name: str = QUEUE_NAME) -> RedisQueue:
        """Connect lazily to the Redis at `url` (nothing is sent until the first enqueue)."""
        return cls(redis_client(url), name)

    def enqueue(self, job: JobRequest) -> str:
        """Hand one job to RQ, coalescing by id; returns `enqueued`, `coalesced` or `rerun`.

        Raises `redis.RedisError` (or `OSError`) when Redis cannot be reached.
        """
        state_key, rerun_key = _keys(job.job_id)
        rq_key = Job.key_for(job.job_id)
        with self.connection.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(state_key, rq_key)  # type: ignore[no-untyped-call]
                    state = _text(pipe.get(state_key))
                    status = _text(pipe.hget(rq_key, "status"))
                    if state == "queued" and status in _WAITING:
                        pipe.unwatch()
                        return COALESCED
                    if state == "running" and status == "started":
                        pipe.multi()
                        pipe.set(rerun_key, "1", ex=STATE_TTL)
                        pipe.execute()
                        return RERUN
                    pipe.multi()
                    pipe.set(state_key, "queued", ex=STATE_TTL)
                    self.queue.enqueue_call(
                        run_coalesced,
                        args=(job.func, list(job.args), job.job_id),
                        kwargs={"allowed": list(self.allowed)},
                        job_id=job.job_id,
                        timeout=JOB_TIMEOUT,
                        result_ttl=24 * 3600,
                        failure_ttl=7 * 24 * 3600,
                        description=f"{job.name}{tuple(job.args)!r}",
                        pipeline=pipe,
                    )
                    pipe.execute()
                    return ENQUEUED
                except redis.WatchError:
                    continue

    def ping(self) -> None:
        """Raise unless Redis answers."""
        self.connection.ping()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def resolve(func: str, allowed: Iterable[str] = (f"{JOBS_MODULE}.",)) -> Callable[..., Any]:
    """Import a job function by dotted name; only names under `allowed` prefixes are run."""
    if not any(func.startswith(prefix) for prefix in allowed):
        raise ValueError(f"refusing to run {func!r}: not a dshub job function")
    module_name, _, attr = func.rpartition(".")
    target = getattr(importlib.import_module(module_name), attr)
    if not callable(target):
        raise TypeError(f"{func} is not callable")
    return target  # type: ignore[no-any-return]


def run_coalesced(
    func: str, args: list[Any], job_id: str, allowed: Iterable[str] = (f"{JOBS_MODULE}.",)
) -> None:
    """What RQ executes: run `func(*args)`, then once more for each rerun request seen at the end.

    Events that arrive while a run is in progress set one flag, so they cause one more run
    after it, never more and never none. A failing run does not drop a pending rerun; the last
    run's exception is re-raised so RQ records the failure.
    """
    current = get_current_job()
    if current is None:
        raise RuntimeError("run_coalesced must run inside an RQ worker")
    connection = current.connection
    state_key, rerun_key = _keys(job_id)
    target = resolve(func, allowed)
    connection.set(state_key, "running", ex=STATE_TTL)
    while True:
        error: BaseException | None = None
        try:
            target(*args)
        except Exception as exc:
            error = exc
        if not _finish_or_rerun(connection, state_key, rerun_key):
            if error is not None:
                raise error
            return
        log.info("rerun requested while running", extra={"job_id": job_id})


def _finish_or_rerun(connection: redis.Redis, state_key: str, rerun_key: str) -> bool:
    """Atomically consume a rerun flag (True) or mark the job idle (False)."""
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(rerun_key)  # type: ignore[no-untyped-call]
                flagged = pipe.get(rerun_key) is not None
                pipe.multi()
                if flagged:
                    pipe.delete(rerun_key)
                else:
                    pipe.delete(state_key)
                pipe.execute()
                return flagged
            except redis.WatchError:
                continue


# --------------------------------------------------------------------------- hand-over


@dataclass(frozen=True)
class HandOver:
    """What happened to one journal row: its enqueue outcomes and how long it waited."""

    entry_id: int
    outcomes: tuple[str, ...]
    latency: float


def hand_over(journal: Journal, queue: RedisQueue, entries: list[Entry]) -> list[HandOver]:
    """Enqueue the jobs of `entries` and mark them handed over, one row at a time.

    Stops at the first Redis error, gives the remaining rows back to the journal (they stay
    `accepted`) and re-raises it.
    """
    done: list[HandOver] = []
    for index, entry in enumerate(entries):
        try:
            outcomes = tuple(queue.enqueue(job) for job in entry.jobs)
        except (redis.RedisError, OSError) as exc:
            rest = [item.id for item in entries[index:]]
            with contextlib.suppress(JournalError):
                journal.release(rest, f"redis: {type(exc).__name__}", retry_in=0.0)
            raise
        journal.mark_handed_over([entry.id])
        done.append(HandOver(entry.id, outcomes, time.time() - entry.received_at))
    return done


class Drainer(threading.Thread):
    """Background thread handing journal rows to RQ; retries with backoff while Redis is down."""

    def __init__(
        self,
        journal: Journal,
        queue: RedisQueue,
        interval: float = 1.0,
        max_backoff: float = 10.0,
        on_hand_over: Callable[[list[HandOver]], None] | None = None,
    ) -> None:
        super().__init__(name="dshub-journal-drainer", daemon=True)
        self.journal = journal
        self.queue = queue
        self.interval = interval
        self.max_backoff = max_backoff
        self.on_hand_over = on_hand_over
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def drain_once(self) -> int:
        """Hand over everything claimable now; returns the number of rows handed over."""
        total = 0
        while True:
            entries = self.journal.claim(limit=100)
            if not entries:
                return total
            handed = hand_over(self.journal, self.queue, entries)
            if self.on_hand_over:
                self.on_hand_over(handed)
            total += len(handed)

    def run(self) -> None:
        """Loop until `stop()`: drain, then sleep `interval` (or back off after errors)."""
        delay = self.interval
        last_prune = 0.0
        while not self.stopping.is_set():
            try:
                self.drain_once()
                delay = self.interval
                if time.monotonic() - last_prune > 3600:
                    self.journal.prune()
                    last_prune = time.monotonic()
            except (redis.RedisError, OSError) as exc:
                delay = min(self.max_backoff, max(delay * 2, self.interval))
                log.warning("redis unreachable; journal kept", extra={"error": type(exc).__name__})
            except Exception:
                delay = self.max_backoff
                log.exception("journal drainer failed; retrying")
            self.wake.wait(delay)
            self.wake.clear()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to finish and wait for it."""
        self.stopping.set()
        self.wake.set()
        if self.is_alive():
            self.join(timeout)


class EmbeddedWorker(threading.Thread):
    """The in-process worker of the embedded default: runs journaled jobs by name.

    Each batch claims every waiting row, runs each distinct job id once (coalescing), then
    marks the rows done; rows that arrive during a batch make the next batch. A crash leaves
    the rows leased; when the lease runs out they are claimed again, so nothing is lost.
    """

    def __init__(
        self,
        journal: Journal,
        interval: float = 1.0,
        lease_seconds: float = 600.0,
        max_attempts: int = 5,
        allowed: tuple[str, ...] = (f"{JOBS_MODULE}.",),
    ) -> None:
        super().__init__(name="dshub-embedded-worker", daemon=True)
        self.journal = journal
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.allowed = allowed
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.runs = 0

    def run_once(self) -> int:
        """Run one batch; returns how many rows it settled."""
        entries = self.journal.claim(limit=500, lease_seconds=self.lease_seconds)
        if not entries:
            return 0
        self.journal.mark_handed_over([e.id for e in entries], lease_seconds=self.lease_seconds)
        failures: dict[str, str] = {}
        for job in _distinct_jobs(entries):
            try:
                resolve(job.func, self.allowed)(*job.args)
                self.runs += 1
            except Exception as exc:
                failures[job.job_id] = f"{type(exc).__name__}: {exc}"[:500]
                log.warning(
                    "job failed", extra={"job_id": job.job_id, "error": failures[job.job_id]}
                )
        for entry in entries:
            errors = [failures[job.job_id] for job in entry.jobs if job.job_id in failures]
            if not errors:
                self.journal.settle([entry.id], DONE)
            elif entry.attempts + 1 >= self.max_attempts:
                self.journal.settle([entry.id], FAILED, errors[0])
            else:
                backoff = min(300.0, 5.0 * 2**entry.attempts)
                self.journal.release([entry.id], errors[0], retry_in=backoff)
        return len(entries)

    def run(self) -> None:
        """Loop until `stop()`."""
        while not self.stopping.is_set():
            try:
                while self.run_once() and not self.stopping.is_set():
                    pass
            except Exception:
                log.exception("embedded worker failed; retrying")
            self.wake.wait(self.interval)
            self.wake.clear()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish its current job and wait for it."""
        self.stopping.set()
        self.wake.set()
        if self.is_alive():
            self.join(timeout)


def _distinct_jobs(entries: list[Entry]) -> list[JobRequest]:
    seen: dict[str, JobRequest] = {}
    for entry in entries:
        for job in entry.jobs:
            seen.setdefault(job.job_id, job)
    return list(seen.values())
