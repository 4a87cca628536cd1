"""Group commit: concurrent deliveries share one journal transaction and one RQ hand-over,
yet each is on disk before its answer, deduplicated, and coalesced as if it came alone."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests
from rq import Queue

from indexer.ingest.intake import Intake, Ticket
from indexer.ingest.journal import Delivery, Journal, JournalError
from indexer.ingest.queue import COALESCED, ENQUEUED, QUEUE_NAME, RedisQueue
from indexer.ingest.routing import JobRequest, sync_ref_job
from tests.receiver.conftest import SECRET, gitlab_headers, push_body
from tests.receiver.serving import start_gunicorn
from tests.support.services import free_port, wait_until


def _delivery(key: str, project: int, ref: str = "refs/heads/main") -> Delivery:
    return Delivery(key, "push", project, [sync_ref_job(project, ref, None, "a" * 40)])


def _job_ids(url: str) -> list[str]:
    return list(Queue(QUEUE_NAME, connection=redis.Redis.from_url(url)).job_ids)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    handle = Journal.in_directory(tmp_path / "data")
    yield handle
    handle.close()


class _HeldJournal:
    """Holds the journal's cross-process write lock, as another gunicorn worker would."""

    def __init__(self, journal: Journal) -> None:
        self.fd = os.open(f"{journal.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> _HeldJournal:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _submit_while_held(
    intake: Intake, journal: Journal, deliveries: list[Delivery]
) -> list[Ticket]:
    """Submit the first delivery, wait until the intake thread is blocked on the journal with
    it, then submit the rest: they must all wait, then commit together in the next batch."""
    with _HeldJournal(journal):
        tickets = [intake.submit(deliveries[0])]
        wait_until(lambda: intake.waiting == 0, 10, "the intake thread to take the first one")
        tickets += [intake.submit(item) for item in deliveries[1:]]
        time.sleep(0.05)  # the thread is stuck on the lock: nothing may be journaled yet
        assert not any(ticket.journaled.is_set() for ticket in tickets)
        assert journal.counts() == {}
    return tickets


def test_concurrent_deliveries_share_one_transaction_and_one_hand_over(
    journal: Journal, redis_url: str
) -> None:
    intake = Intake(journal, RedisQueue.from_url(redis_url))
    deliveries = [_delivery(f"idempotency:k{n}", 100 + n) for n in range(12)]
    try:
        tickets = _submit_while_held(intake, journal, deliveries)
        receipts = [ticket.wait_settled() for ticket in tickets]
    finally:
        intake.stop()
    assert intake.batches == 2  # the first delivery alone, then the eleven that waited
    assert all(r.handed_over and not r.duplicate for r in receipts)
    assert len({r.entry_id for r in receipts}) == 12
    assert sorted(_job_ids(redis_url)) == sorted(d.jobs[0].job_id for d in deliveries)
    assert journal.counts() == {"handed_over": 12}
    assert journal.backlog() == 0
    # The first row's hand-over ran while the second batch was being committed, so its mark
    # was written after that batch (by the journal thread going idle), never lost.
    conn = journal._connection()
    (settled,) = conn.execute(
        "SELECT settled_at FROM deliveries WHERE dedupe_key = 'idempotency:k0'"
    ).fetchone()
    (second_batch,) = conn.execute(
        "SELECT received_at FROM deliveries WHERE dedupe_key = 'idempotency:k1'"
    ).fetchone()
    assert settled is not None and settled >= second_batch


def test_the_next_batch_is_journaled_while_the_previous_hand_over_waits_for_redis(
    journal: Journal, redis_url: str
) -> None:
    intake = Intake(journal, RedisQueue.from_url(redis_url))
    admin = redis.Redis.from_url(redis_url)
    try:
        intake.submit(_delivery("k0", 1)).wait_settled()  # the hand-over script is loaded
        # Redis refuses scripts for a while (CLIENT PAUSE WRITE): the hand-over of k1 hangs.
        admin.client_pause(1500, all=False)
        slow = intake.submit(_delivery("k1", 2))
        slow.wait_journaled()
        time.sleep(0.1)
        assert not slow.settled.is_set()
        # The journal thread is not stuck behind that hand-over: k2 reaches the disk now.
        started = time.monotonic()
        quick = intake.submit(_delivery("k2", 3))
        quick.wait_journaled(timeout=1.0)
        assert time.monotonic() - started < 1.0 and not slow.settled.is_set()
        receipts = [slow.wait_settled(5.0), quick.wait_settled(5.0)]
    finally:
        admin.client_unpause()
        intake.stop()
    assert [r.handed_over for r in receipts] == [True, True]
    assert sorted(_job_ids(redis_url)) == sorted(
        _delivery(f"k{n}", n + 1).jobs[0].job_id for n in range(3)
    )
    assert journal.counts() == {"handed_over": 3}


def test_a_redelivery_in_the_same_batch_is_a_duplicate_of_the_first(
    journal: Journal, redis_url: str
) -> None:
    intake = Intake(journal, RedisQueue.from_url(redis_url))
    first = _delivery("idempotency:same", 7)
    again = _delivery("idempotency:same", 7)
    other = _delivery("event:other", 7, "refs/heads/dev")
    try:
        tickets = _submit_while_held(intake, journal, [_delivery("x", 1), first, again, other])
        receipts = [ticket.wait_settled() for ticket in tickets[1:]]
    finally:
        intake.stop()
    assert [r.duplicate for r in receipts] == [False, True, False]
    assert receipts[0].entry_id == receipts[1].entry_id != receipts[2].entry_id
    assert sum(journal.counts().values()) == 3
    assert len(_job_ids(redis_url)) == 3


def test_a_failed_journal_write_fails_every_delivery_of_the_batch(journal: Journal) -> None:
    intake = Intake(journal, None)
    journal._connection().execute("DROP TABLE deliveries")
    try:
        tickets = [intake.submit(_delivery(f"k{n}", n)) for n in range(3)]
        for ticket in tickets:
            with pytest.raises(JournalError, match="journal write failed"):
                ticket.wait_journaled()
    finally:
        intake.stop()


def test_with_redis_down_the_batch_stays_in_the_journal_for_the_drainer(
    journal: Journal,
) -> None:
    failures: list[BaseException] = []
    deferred: list[int] = []
    dead = RedisQueue.from_url(f"redis://127.0.0.1:{free_port()}/0")
    intake = Intake(
        journal, dead, redis_failed=failures.append, on_deferred=lambda: deferred.append(1)
    )
    try:
        receipts = [intake.submit(_delivery(f"k{n}", n)).wait_settled() for n in range(2)]
    finally:
        intake.stop()
    assert [r.handed_over for r in receipts] == [False, False]
    assert journal.counts() == {"accepted": 2}
    assert len(failures) == 2 and len(deferred) == 2
    # Given back at once: a drainer may claim them now.
    assert [entry.dedupe_key for entry in journal.claim()] == ["k0", "k1"]


def test_without_redis_the_embedded_worker_is_woken_and_rows_are_unclaimed(
    journal: Journal,
) -> None:
    woken = threading.Event()
    intake = Intake(journal, None, on_deferred=woken.set)
    try:
        receipt = intake.submit(_delivery("k1", 1)).wait_settled()
    finally:
        intake.stop()
    assert receipt.handed_over is False and woken.is_set()
    assert [entry.dedupe_key for entry in journal.claim()] == ["k1"]


def test_append_many_keeps_input_order_and_marks_earlier_rows_in_the_same_transaction(
    journal: Journal,
) -> None:
    (old_id, _) = journal.append("idempotency:old", "push", 1, [], claim=False)
    results = journal.append_many(
        [_delivery("b", 2), _delivery("idempotency:old", 1), _delivery("a", 3), _delivery("b", 2)],
        claim=False,
        handed_over=[old_id],
    )
    assert [duplicate for _, duplicate in results] == [False, True, False, True]
    assert results[1][0] == old_id and results[0][0] == results[3][0]
    assert journal.counts() == {"accepted": 2, "handed_over": 1}
    entry = journal.get(results[2][0])
    assert entry is not None and entry.dedupe_key == "a" and entry.project_id == 3


def test_enqueue_many_coalesces_repeats_and_queued_jobs_in_one_call(redis_url: str) -> None:
    queue = RedisQueue.from_url(redis_url)
    queued = JobRequest("indexer.sync.jobs.sync_project", (1,), "sync_project-1")
    fresh = JobRequest("indexer.sync.jobs.sync_project", (2,), "sync_project-2")
    assert queue.enqueue(queued) == ENQUEUED
    outcomes = queue.enqueue_many([queued, fresh, fresh, queued])
    assert outcomes == [COALESCED, ENQUEUED, COALESCED, COALESCED]
    assert _job_ids(redis_url) == ["sync_project-1", "sync_project-2"]


def test_concurrent_accepted_events_survive_a_kill_of_gunicorn(tmp_path: Path) -> None:
    port = free_port()  # Redis down: every accepted event must be in the journal, unsent
    data = tmp_path / "data"
    server = start_gunicorn(
        tmp_path,
        {
            "DSHUB_DATA_DIR": str(data),
            "DSHUB_WEBHOOK_SECRET": SECRET,
            "DSHUB_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        },
    )

    def send(number: int) -> str | None:
        headers = gitlab_headers("Push Hook", key=f"kill-{number}")
        response = requests.post(
            server.url + "/webhooks/gitlab", data=push_body(number + 1), headers=headers, timeout=10
        )
        return f"idempotency:kill-{number}" if response.status_code == 202 else None

    try:
        with ThreadPoolExecutor(16) as pool:
            accepted = {key for key in pool.map(send, range(48)) if key}
    finally:
        server.kill()  # SIGKILL right after the last answer: no graceful flush
    assert len(accepted) == 48
    journal = Journal(data / "journal.sqlite3")
    rows = journal._connection().execute("SELECT dedupe_key FROM deliveries").fetchall()
    assert {key for (key,) in rows} == accepted


def test_marking_a_batch_looks_its_rows_up_by_id_not_by_state(journal: Journal) -> None:
    # Scanning the state index would make every hand-over slower as handed-over rows pile up.
    from indexer.ingest.journal import _MARK, _rows

    plan = journal._connection().execute(
        "EXPLAIN QUERY PLAN " + _MARK.format(ids=_rows(1, 8)), [0, 0, *range(8)]
    )
    details = " ".join(str(row[-1]) for row in plan)
    assert "INTEGER PRIMARY KEY" in details and "deliveries_pending" not in details
    ids = [journal.append(f"k{n}", "push", n, [], claim=False)[0] for n in range(3)]
    journal.mark_handed_over(ids[:2], durable=False)
    assert journal.counts() == {"accepted": 1, "handed_over": 2}
