"""Group commit of accepted deliveries: one journal transaction and one RQ hand-over per batch.

Request threads `submit()` a delivery and wait on its `Ticket`. One background thread per
process takes every delivery waiting at that moment and

1. appends them all in one fsync'd transaction (`Journal.append_many`), then releases each
   ticket's "journaled" wait: from here the delivery survives a kill of the process;
2. hands the new rows to RQ in one `RedisQueue.enqueue_many` (a few round trips for the whole
   batch) and releases each ticket's "settled" wait. The rows are marked handed over in the
   next batch's transaction when one is already waiting (so a busy receiver writes the
   journal once per batch), else at once without an fsync. A mark lost to a crash is
   harmless: the row's claim expires and the drainer enqueues it again, which coalesces.

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

from indexer.journal import ACCEPTED, Delivery, Entry, Journal, JournalError
from indexer.queue import HandOver, RedisQueue, hand_over

log = logging.getLogger("dshub.intake")

MAX_BATCH = 256
# A request gives up on the journal after this long (503): GitLab's own timeout is 10 s.
JOURNAL_WAIT = 8.0
# ... and on the hand-over after this long (202, handed over later): Redis' socket timeout.
HAND_OVER_WAIT = 2.5


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
    error: JournalError | None = None

    def wait_journaled(self, timeout: float = JOURNAL_WAIT) -> tuple[int, bool]:
        """Block until the delivery is on disk; returns (row id, duplicate).

        Raises `JournalError` if the journal could not be written (or did not answer in time).
        """
        if not self.journaled.wait(timeout):
            raise JournalError(f"the journal did not answer within {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self.entry_id, self.duplicate

    def wait_settled(self, timeout: float = HAND_OVER_WAIT) -> Receipt:
        """Block until the hand-over was tried (at most `timeout`); `wait_journaled` first."""
        entry_id, duplicate = self.wait_journaled()
        handed = self.settled.wait(timeout) and self.handed_over
        return Receipt(entry_id, duplicate, handed)


class Intake:
    """The per-process group-commit thread between request threads and the journal/RQ."""

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
    ) -> None:
        self.journal = journal
        self.queue = queue
        self.redis_usable = redis_usable
        self.redis_failed = redis_failed
        self.on_hand_over = on_hand_over
        self.on_deferred = on_deferred
        self.max_batch = max_batch
        self.batches = 0
        self._pending: list[Ticket] = []
        self._unmarked: list[int] = []  # handed over; marked with the next batch
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False

    def submit(self, delivery: Delivery) -> Ticket:
        """Queue a delivery for the next batch and return its ticket (starts the thread)."""
        ticket = Ticket(delivery)
        with self._cond:
            if self._stopping:
                raise JournalError("the receiver is shutting down")
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # First use, or a forked child: threads do not survive fork.
                self._thread = threading.Thread(target=self._run, name="dshub-intake", daemon=True)
                self._pid = os.getpid()
                self._thread.start()
            self._pending.append(ticket)
            self._cond.notify()
        return ticket

    @property
    def waiting(self) -> int:
        """How many submitted deliveries wait for the next batch."""
        with self._cond:
            return len(self._pending)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the waiting batches, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                stopped = not self._pending
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
            if stopped:
                self._flush_marks()
                return
            try:
                self._process(batch)
            except BaseException:  # never leave a request waiting on a dead thread
                log.exception("intake batch failed")
                failure = JournalError("the journal batch failed unexpectedly")
                for ticket in batch:
                    if not ticket.journaled.is_set():
                        ticket.error = failure
                        ticket.journaled.set()
                    ticket.settled.set()

    def _process(self, batch: list[Ticket]) -> None:
        self.batches += 1
        queue = self.queue if self.queue is not None and self.redis_usable() else None
        try:
            results = self.journal.append_many(
                [t.delivery for t in batch], claim=queue is not None, handed_over=self._unmarked
            )
            self._unmarked = []  # marked in that same transaction
        except JournalError as exc:
            for ticket in batch:
                ticket.error = exc
                ticket.journaled.set()
                ticket.settled.set()
            return
        for ticket, (entry_id, duplicate) in zip(batch, results, strict=True):
            ticket.entry_id, ticket.duplicate = entry_id, duplicate
            ticket.journaled.set()
        fresh = [ticket for ticket in batch if not ticket.duplicate]
        try:
            if fresh:
                if queue is not None:
                    self._hand_over(queue, fresh)
                elif self.on_deferred is not None:
                    self.on_deferred()
        finally:
            for ticket in batch:
                ticket.settled.set()

    def _hand_over(self, queue: RedisQueue, tickets: list[Ticket]) -> None:
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
        self._unmarked.extend(entry.id for entry in entries)
        with self._cond:
            busy = bool(self._pending)
        if not busy:
            self._flush_marks()
        for ticket in tickets:
            ticket.handed_over = True
        if self.on_hand_over is not None:
            self.on_hand_over(handed)

    def _flush_marks(self) -> None:
        if not self._unmarked:
            return
        try:
            self.journal.mark_handed_over(self._unmarked, durable=False)
            self._unmarked = []
        except JournalError as exc:
            # Kept for the next batch; if that never comes the claims expire and the drainer
            # enqueues these rows again, which coalesces.
            log.warning("hand-over not recorded yet", extra={"error": str(exc)})
