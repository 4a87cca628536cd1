"""Group commit of accepted deliveries: one journal transaction and one RQ hand-over per batch.

Request threads `submit()` a delivery and wait on its `Ticket`. Two background threads per
process form a pipeline:

1. the journal thread takes every delivery waiting at that moment and appends them all in one
   fsync'd transaction (`Journal.append_many`), then releases each ticket's "journaled" wait:
   from here the delivery survives a kill of the process;
2. the hand-over thread takes every journaled row not yet handed over (one batch or several)
   and hands them to RQ in one `RedisQueue.enqueue_many` (a few round trips for all of them),
   then releases each ticket's "settled" wait — meanwhile the journal thread is already
   committing the next batch. The rows are marked handed over in the next batch's transaction
   when one is already waiting (so a busy receiver writes the journal once per batch), else at
   once without an fsync. A mark lost to a crash is harmless: the row's claim expires and the
   drainer enqueues it again, which coalesces.

Under load, batches grow by themselves (everything that arrived during the previous batch);
a lone delivery is a batch of one and waits for nothing. If Redis is unreachable the rows
stay `accepted` and `on_deferred` wakes whoever drains the journal (drainer or embedded
worker), exactly as when a request handed over its own event.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from indexer.errors import DshubError
from indexer.ingest.journal import (
    ACCEPTED,
    Delivery,
    Entry,
    Journal,
    JournalError,
    UnstorableDelivery,
)
from indexer.ingest.queue import HandOver, RedisQueue, hand_over

log = logging.getLogger("dshub.intake")

MAX_BATCH = 256
# A request gives up on the journal after this long (503): GitLab's own timeout is 10 s.
JOURNAL_WAIT = 8.0
# ... and on the hand-over after this long (202, handed over later): Redis' socket timeout.
HAND_OVER_WAIT = 2.5
# Handed-over rows are marked in the next batch's transaction; with no batch within this
# long, in one of their own. A second write per batch contended for SQLite's one write lock
# with the other workers' commits; a mark lost to a crash only re-enqueues (coalesced).
MARK_LINGER = 0.05


@dataclass(frozen=True)
class Receipt:
    """What became of a submitted delivery."""

    entry_id: int
    duplicate: bool
    handed_over: bool


@dataclass
class Ticket:
    """One submitted delivery; the request thread waits on it."""

    delivery: Delivery
    received_at: float = field(default_factory=time.time)
    journaled: threading.Event = field(default_factory=threading.Event)
    settled: threading.Event = field(default_factory=threading.Event)
    entry_id: int = 0
    duplicate: bool = False
    handed_over: bool = False
    error: DshubError | None = None

    def wait_journaled(self, timeout: float = JOURNAL_WAIT) -> tuple[int, bool]:
        """Block until the delivery is on disk; returns (row id, duplicate).

        Raises `JournalError` if the journal could not be written (or did not answer in time),
        `UnstorableDelivery` (a 400) if this delivery has a field the journal cannot store.
        """
        if not self.journaled.wait(timeout):
            raise JournalError(f"the journal did not answer within {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self.entry_id, self.duplicate

    def wait_settled(self, timeout: float = HAND_OVER_WAIT) -> Receipt:
        """Block until the hand-over was tried: `wait_journaled`, then at most `timeout` more.

        Raises `JournalError` as `wait_journaled` does.
        """
        # One wake-up in the common case: "settled" is only ever set after "journaled" (or
        # with the batch's error), and each wake-up costs a GIL hand-off under load.
        if self.settled.wait(timeout):
            entry_id, duplicate = self.wait_journaled(0)
            return Receipt(entry_id, duplicate, self.handed_over)
        entry_id, duplicate = self.wait_journaled(max(JOURNAL_WAIT - timeout, 0.0))
        handed = self.settled.wait(timeout) and self.handed_over
        return Receipt(entry_id, duplicate, handed)


class Intake:
    """The per-process group-commit pipeline between request threads and the journal/RQ.

    Two threads: the journal thread commits whatever waits (one fsync per batch) while the
    hand-over thread enqueues the previously journaled rows to RQ, so a batch's Redis round
    trips overlap the next batch's fsync instead of delaying it.
    """

    def __init__(
        self,
        journal: Journal,
        queue: RedisQueue | None,
        *,
        redis_usable: Callable[[], bool] = lambda: True,
        redis_failed: Callable[[BaseException], None] = lambda exc: None,
        on_hand_over: Callable[[list[HandOver]], None] | None = None,
        on_deferred: Callable[[], None] | None = None,
        max_batch: int = MAX_BATCH,
        mark_linger: float = MARK_LINGER,
    ) -> None:
        self.journal = journal
        self.queue = queue
        self.redis_usable = redis_usable
        self.redis_failed = redis_failed
        self.on_hand_over = on_hand_over
        self.on_deferred = on_deferred
        self.max_batch = max_batch
        self.mark_linger = mark_linger
        self.batches = 0
        self._pending: list[Ticket] = []
        self._journaled: list[Ticket] = []  # on disk, waiting for the hand-over thread
        self._unmarked: list[int] = []  # handed over; marked with the next batch
        # One lock, two conditions: a submit wakes only the journal thread, a commit only the
        # hand-over thread (waking both on every request costs GIL hand-offs under load).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # pending deliveries, for the journal
        self._journaled_cond = threading.Condition(self._lock)  # for the hand-over thread
        self._threads: list[threading.Thread] = []
        self._pid = 0
        self._stopping = False
        self._journal_done = False
        self._committing = False  # the journal thread is inside a batch

    def submit(self, delivery: Delivery) -> Ticket:
        """Queue a delivery for the next batch and return its ticket (starts the threads)."""
        ticket = Ticket(delivery)
        with self._cond:
            if self._stopping:
                raise JournalError("the receiver is shutting down")
            if self._pid != os.getpid() or not all(t.is_alive() for t in self._threads):
                # First use, or a forked child: threads do not survive fork.
                self._start_threads()
            self._pending.append(ticket)
            self._cond.notify()
        return ticket

    def _start_threads(self) -> None:
        self._pid = os.getpid()
        self._journal_done = False
        self._threads = [
            threading.Thread(target=self._run, name="dshub-intake", daemon=True),
            threading.Thread(target=self._run_hand_over, name="dshub-hand-over", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        """How many submitted deliveries wait for the next batch."""
        with self._cond:
            return len(self._pending)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the waiting batches and hand-overs, then end the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            self._journaled_cond.notify_all()
            threads = list(self._threads)
        if self._pid == os.getpid():
            for thread in threads:
                if thread.is_alive():
                    thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    self._journal_done = True
                    self._journaled_cond.notify_all()
                    return
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                marks, self._unmarked = self._unmarked, []
                self._committing = True
            try:
                self._journal_batch(batch, marks)
            except BaseException:  # never leave a request waiting on a dead thread
                log.exception("intake batch failed")
                _fail(batch, JournalError("the journal batch failed unexpectedly"))
            with self._cond:
                self._committing = False
                if self._unmarked and not self._pending:
                    # Marks that arrived during this batch, with no next batch to carry them
                    # yet: the hand-over thread writes them if none comes within the linger.
                    self._journaled_cond.notify()

    def _journal_batch(self, batch: list[Ticket], marks: list[int]) -> None:
        self.batches += 1
        queue = self.queue if self.queue is not None and self.redis_usable() else None
        try:
            results = self.journal.append_many(
                [t.delivery for t in batch], claim=queue is not None, handed_over=marks
            )
        except JournalError as exc:
            with self._cond:
                self._unmarked[:0] = marks  # try again with the next batch
            _fail(batch, exc)
            return
        except Exception as exc:  # one delivery's own fault (UnstorableDelivery) or a bug
            self._journal_apart(batch, marks, exc)
            return
        for ticket, (entry_id, duplicate) in zip(batch, results, strict=True):
            ticket.entry_id, ticket.duplicate = entry_id, duplicate
            ticket.journaled.set()
        fresh = [ticket for ticket in batch if not ticket.duplicate]
        for ticket in batch:
            if ticket.duplicate:
                ticket.settled.set()
        if not fresh:
            return
        if queue is None:
            try:
                if self.on_deferred is not None:
                    self.on_deferred()
            finally:
                for ticket in fresh:
                    ticket.settled.set()
            return
        with self._cond:
            self._journaled.extend(fresh)
            self._journaled_cond.notify()

    def _journal_apart(self, batch: list[Ticket], marks: list[int], exc: Exception) -> None:
        """After a batch failed with `exc` (not the journal's own failure): one bad delivery
        must never fail its neighbours (GitLab counts each refusal and disables hooks after
        four), so each is journaled alone and only the bad one fails, with its own error."""
        with self._cond:
            self._unmarked[:0] = marks  # rolled back with the batch: carried by the next one
        if len(batch) > 1:
            for ticket in batch:
                self._journal_batch([ticket], [])
            return
        if not isinstance(exc, UnstorableDelivery):
            log.error("a delivery could not be journaled", exc_info=exc)
        error = exc if isinstance(exc, DshubError) else JournalError(type(exc).__name__)
        _fail(batch, error)

    def _run_hand_over(self) -> None:
        while True:
            with self._cond:
                done = self._wait_for_hand_over()
                tickets, self._journaled = self._journaled, []
                marks: list[int] = []
                if not tickets:
                    marks, self._unmarked = self._unmarked, []
            if not tickets:
                self._flush(marks)
                if done:
                    return
                continue
            try:
                self._hand_over(tickets)
            except BaseException:  # the rows are on disk: the drainer hands them over
                log.exception("hand-over failed")
            finally:
                for ticket in tickets:
                    ticket.settled.set()

    def _wait_for_hand_over(self) -> bool:
        """Under the lock: wait until rows are journaled, or the journal thread is done (True),
        or hand-over marks have waited `mark_linger` with no batch to carry them (False)."""
        deadline: float | None = None
        while not self._journaled and not self._journal_done:
            if not self._unmarked or self._pending or self._committing:
                deadline = None
                self._journaled_cond.wait()
                continue
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + self.mark_linger
            if now >= deadline:
                return False
            self._journaled_cond.wait(deadline - now)
        return self._journal_done and not self._journaled

    def _hand_over(self, tickets: list[Ticket]) -> None:
        queue = self.queue
        if queue is None:  # only rows journaled with a usable queue get here
            return
        entries = [
            Entry(
                t.entry_id,
                t.delivery.dedupe_key,
                t.delivery.kind,
                t.delivery.project_id,
                t.delivery.jobs,
                ACCEPTED,
                t.received_at,
                0,
            )
            for t in tickets
        ]
        try:
            handed = hand_over(self.journal, queue, entries, mark=False)
        except (redis.RedisError, OSError) as exc:
            self.redis_failed(exc)
            if self.on_deferred is not None:
                self.on_deferred()
            return
        with self._cond:
            # The next batch's transaction carries the marks; when none comes within
            # `mark_linger`, this thread writes them alone, without an fsync.
            self._unmarked.extend(entry.id for entry in entries)
        for ticket in tickets:
            ticket.handed_over = True
        if self.on_hand_over is not None:
            self.on_hand_over(handed)

    def _flush(self, marks: list[int]) -> None:
        if not marks:
            return
        try:
            self.journal.mark_handed_over(marks, durable=False)
        except JournalError as exc:
            # Kept for the next batch; if that never comes the claims expire and the drainer
            # enqueues these rows again, which coalesces.
            with self._cond:
                self._unmarked[:0] = marks
            log.warning("hand-over not recorded yet", extra={"error": str(exc)})


def _fail(batch: list[Ticket], error: DshubError) -> None:
    for ticket in batch:
        if not ticket.journaled.is_set():
            ticket.error = error
            ticket.journaled.set()
        ticket.settled.set()
