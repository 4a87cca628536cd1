"""The reconcile schedule: one `reconcile` every `DSHUB_RECONCILE_INTERVAL` seconds, cluster-wide.

Time is cut into slots of `interval` seconds. Every process that runs a scheduler (each
`dshub worker`, each gunicorn worker of the embedded default) wakes at each slot boundary
and tries to *claim* the slot; only the one that wins submits the reconcile, so many
processes still reconcile once per interval. Claims are atomic where the jobs already live:

- Redis (`dshub worker`): `SET dshub:reconcile:slot:<n> NX EX` — the winner enqueues the
  `reconcile` job under its stable id (`reconcile-all`), so a reconcile still queued or
  running absorbs the next one (see `indexer.ingest.queue`);
- the journal (embedded default): a delivery whose dedupe key names the slot, submitted
  like any other; the journal's unique key lets exactly one of the gunicorn workers insert
  it, and whichever embedded worker claims the row runs it.

A process submits nothing during its first full interval (the first boundary it acts on is
the second one after start), so a restart loop never turns into a reconcile loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from indexer.ingest import routing
from indexer.ingest.intake import Receipt
from indexer.ingest.journal import Delivery
from indexer.ingest.queue import RedisQueue

log = logging.getLogger("dshub.scheduler")

SLOT_KEY_PREFIX = "dshub:reconcile:slot:"

Claim = Callable[[int], bool]


class ReconcileScheduler(threading.Thread):
    """A daemon thread submitting one reconcile per claimed slot of `interval` seconds."""

    def __init__(
        self,
        interval: float,
        claim: Claim,
        submit: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0:
            raise ValueError("the reconcile interval must be positive (0 means: no scheduler)")
        super().__init__(name="dshub-reconcile-scheduler", daemon=True)
        self.interval = float(interval)
        self.claim = claim
        self.submit = submit
        self.clock = clock
        # Skip the slot boundary right after start: a restart loop is not a reconcile loop, and
        # a short-lived process (a test, a CLI) never reconciles by surprise.
        self.last_slot = self.slot() + 1
        self.submitted = 0
        self.stopping = threading.Event()

    def slot(self) -> int:
        """The number of the slot the clock is in now."""
        return int(self.clock() // self.interval)

    def tick(self) -> bool:
        """Claim the current slot if it is new; submit a reconcile when this process won it."""
        slot = self.slot()
        if slot <= self.last_slot:
            return False
        self.last_slot = slot
        if not self.claim(slot):
            return False
        self.submit()
        self.submitted += 1
        log.info("reconcile scheduled", extra={"slot": slot})
        return True

    def run(self) -> None:
        """Wake at every slot boundary until `stop()`; errors are logged and retried next slot."""
        while not self.stopping.is_set():
            wait = (self.last_slot + 1) * self.interval - self.clock()
            if wait > 0 and self.stopping.wait(wait):
                return
            try:
                self.tick()
            except Exception:
                log.exception("scheduling a reconcile failed; trying again next interval")
                self.last_slot = self.slot()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to finish and wait for it."""
        self.stopping.set()
        if self.is_alive():
            self.join(timeout)


def redis_claim(connection: redis.Redis, interval: float) -> Claim:
    """Claim slots with `SET NX EX` in Redis: one winner per slot among every worker."""

    def claim(slot: int) -> bool:
        key = f"{SLOT_KEY_PREFIX}{int(interval)}:{slot}"
        return bool(connection.set(key, "1", nx=True, ex=max(2, int(interval) * 2)))

    return claim


def redis_scheduler(queue: RedisQueue, interval: float) -> ReconcileScheduler:
    """The scheduler of `dshub worker`: the winner enqueues `reconcile()` (stable id, coalesced)."""

    def submit() -> None:
        queue.enqueue(routing.reconcile_job())

    return ReconcileScheduler(interval, redis_claim(queue.connection, interval), submit)


def journal_dedupe_key(interval: float, slot: int) -> str:
    """The journal row key of one scheduled reconcile (unique per interval length and slot)."""
    return f"schedule:reconcile:{int(interval)}:{slot}"


def journal_scheduler(submit: Callable[[Delivery], Receipt], interval: float) -> ReconcileScheduler:
    """The scheduler of the embedded default: the slot's journal row is the claim and the job.

    `submit` is the receiver's (`indexer.ingest.receiver.Receiver.submit`): the delivery's dedupe key
    names the slot, so exactly one process's row is new, and that row is the reconcile job.
    """

    def claim(slot: int) -> bool:
        delivery = Delivery(
            journal_dedupe_key(interval, slot), "schedule", None, [routing.reconcile_job()]
        )
        return not submit(delivery).duplicate

    return ReconcileScheduler(interval, claim, lambda: None)
