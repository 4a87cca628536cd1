"""Handing journaled jobs to whoever runs them: RQ on Redis, or the embedded in-process worker.

Coalescing (RQ): every `JobRequest` has a stable id. A small state key per id says whether
that job is `queued` or `running`; `RedisQueue.enqueue_many` compares it with RQ's own status
atomically (a Lua script, one round trip for a whole batch), so that

- a job still queued absorbs the new event (jobs re-read GitLab, so one run covers both);
- a job running gets a `rerun` flag, and `run_coalesced` (the function RQ actually executes)
  runs the job once more after the current run when it finds the flag: exactly one more run,
  however many events arrived meanwhile;
- otherwise a new RQ job is enqueued under the stable id: the script's verdict is checked
  again under WATCH and RQ itself writes the job in the same MULTI (one WATCH, one check and
  one EXEC for all the batch's new jobs).

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

from indexer.ingest.journal import DONE, FAILED, Entry, Journal, JournalError
from indexer.ingest.routing import JOBS_MODULE, JobRequest

log = logging.getLogger("dshub.queue")

QUEUE_NAME = "dshub"
JOB_TIMEOUT = 3600
STATE_PREFIX = "dshub:coalesce:"
STATE_TTL = 7 * 24 * 3600
ENQUEUED, COALESCED, RERUN = "enqueued", "coalesced", "rerun"
_NEEDS_ENQUEUE = "enqueue"

# KEYS: per job, its state key, rerun key and RQ job hash; ARGV[1]: the state keys' TTL.
# Per job: `coalesced` (queued and still waiting in RQ), `rerun` (running: flag set here,
# atomically with the check) or `enqueue` (idle, finished, or a stale marker).
_DECIDE = """
local verdicts = {}
for i = 1, #KEYS, 3 do
  local state = redis.call('GET', KEYS[i])
  local status = redis.call('HGET', KEYS[i + 2], 'status')
  if state == 'queued' and (status == 'queued' or status == 'deferred'
      or status == 'scheduled') then
    verdicts[#verdicts + 1] = 'coalesced'
  elseif state == 'running' and status == 'started' then
    redis.call('SET', KEYS[i + 1], '1', 'EX', ARGV[1])
    verdicts[#verdicts + 1] = 'rerun'
  else
    verdicts[#verdicts + 1] = 'enqueue'
  end
end
return verdicts
"""


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
        self._script = connection.register_script(_DECIDE)

    @classmethod
    def from_url(cls, url: str, name: str = QUEUE_NAME) -> RedisQueue:
        """Connect lazily to the Redis at `url` (nothing is sent until the first enqueue)."""
        return cls(redis_client(url), name)

    def enqueue(self, job: JobRequest) -> str:
        """Hand one job to RQ, coalescing by id; returns `enqueued`, `coalesced` or `rerun`.

        Raises `redis.RedisError` (or `OSError`) when Redis cannot be reached.
        """
        return self.enqueue_many([job])[0]

    def enqueue_many(self, jobs: list[JobRequest]) -> list[str]:
        """`enqueue` for several jobs in a few round trips; outcomes in input order.

        A job id repeated in `jobs` coalesces into its first occurrence. Raises
        `redis.RedisError` (or `OSError`) when Redis cannot be reached; jobs already decided
        by then stay decided (enqueueing again later only coalesces).
        """
        distinct: dict[str, JobRequest] = {}
        for job in jobs:
            distinct.setdefault(job.job_id, job)
        verdicts = dict(zip(distinct, self._decide(list(distinct.values())), strict=True))
        fresh = [
            distinct[job_id] for job_id, verdict in verdicts.items() if verdict == _NEEDS_ENQUEUE
        ]
        if fresh:
            verdicts.update(self._enqueue_fresh(fresh))
        seen: set[str] = set()
        outcomes = []
        for job in jobs:
            outcomes.append(COALESCED if job.job_id in seen else verdicts[job.job_id])
            seen.add(job.job_id)
        return outcomes

    def _decide(self, jobs: list[JobRequest], client: Any = None) -> list[str]:
        keys: list[str] = []
        for job in jobs:
            keys.extend((*_keys(job.job_id), Job.key_for(job.job_id)))
        if client is None:
            verdicts = self._script(keys=keys, args=[STATE_TTL])
        else:
            # On a watching pipeline the command runs at once; going through `Script` would
            # register it with the pipeline, which then re-checks it with an extra round trip.
            try:
                verdicts = client.evalsha(self._script.sha, len(keys), *keys, STATE_TTL)
            except redis.exceptions.NoScriptError:
                self._script.sha = client.script_load(_DECIDE)
                verdicts = client.evalsha(self._script.sha, len(keys), *keys, STATE_TTL)
        return [_text(verdict) or _NEEDS_ENQUEUE for verdict in verdicts]

    def _enqueue_fresh(self, jobs: list[JobRequest]) -> dict[str, str]:
        """Enqueue jobs the script found idle, unless that changed meanwhile (WATCH)."""
        decided: dict[str, str] = {}
        pending = jobs
        with self.connection.pipeline() as pipe:
            while pending:
                watched: list[str] = []
                for job in pending:
                    state_key, _ = _keys(job.job_id)
                    watched.extend((state_key, Job.key_for(job.job_id)))
                try:
                    pipe.watch(*watched)  # type: ignore[no-untyped-call]
                    verdicts = self._decide(pending, client=pipe)
                    fresh = []
                    for job, verdict in zip(pending, verdicts, strict=True):
                        if verdict == _NEEDS_ENQUEUE:
                            fresh.append(job)
                        else:
                            decided[job.job_id] = verdict
                    if not fresh:
                        pipe.unwatch()
                        return decided
                    pipe.multi()
                    for job in fresh:
                        self._enqueue_in(pipe, job)
                    pipe.execute()
                    decided.update((job.job_id, ENQUEUED) for job in fresh)
                    return decided
                except redis.WatchError:
                    # Something touched one of these jobs: decide the undecided ones again.
                    pending = [job for job in pending if job.job_id not in decided]
                    continue
        return decided

    def _enqueue_in(self, pipe: Any, job: JobRequest) -> None:
        state_key, _ = _keys(job.job_id)
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


def hand_over(
    journal: Journal,
    queue: RedisQueue,
    entries: list[Entry],
    durable: bool = True,
    mark: bool = True,
) -> list[HandOver]:
    """Enqueue the jobs of `entries` (one batch) and mark them handed over.

    On a Redis error, gives the rows back to the journal (they stay `accepted`) and re-raises
    it. `durable=False` marks them without an fsync (see `Journal.mark_handed_over`);
    `mark=False` leaves marking to the caller.
    """
    if not entries:
        return []
    try:
        outcomes = queue.enqueue_many([job for entry in entries for job in entry.jobs])
    except (redis.RedisError, OSError) as exc:
        with contextlib.suppress(JournalError):
            journal.release([entry.id for entry in entries], f"redis: {type(exc).__name__}")
        raise
    if mark:
        journal.mark_handed_over([entry.id for entry in entries], durable=durable)
    now = time.time()
    done: list[HandOver] = []
    start = 0
    for entry in entries:
        mine = tuple(outcomes[start : start + len(entry.jobs)])
        start += len(entry.jobs)
        done.append(HandOver(entry.id, mine, now - entry.received_at))
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
            handed = hand_over(self.journal, self.queue, entries, durable=False)
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
