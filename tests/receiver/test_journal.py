"""The journal and the embedded worker: durable, deduplicated, nothing lost across restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from indexer.ingest.journal import Journal
from indexer.ingest.queue import EmbeddedWorker
from indexer.ingest.routing import JobRequest

PROBES = ("tests.receiver.probe_jobs.",)


def _record(path: Path, job_id: str, *args: object) -> JobRequest:
    return JobRequest("tests.receiver.probe_jobs.record", (str(path), *args), job_id)  # type: ignore[arg-type]


def _calls(path: Path) -> list[list[object]]:
    if not path.exists():
        return []
    return [json.loads(line)["args"] for line in path.read_text().splitlines()]


def test_the_same_dedupe_key_is_journaled_once(tmp_path: Path) -> None:
    journal = Journal.in_directory(tmp_path)
    job = _record(tmp_path / "calls", "a", 1)
    first = journal.append("idempotency:k1", "push", 15, [job])
    second = journal.append("idempotency:k1", "push", 15, [job])
    assert first == (first[0], False) and second == (first[0], True)
    assert journal.counts() == {"accepted": 1}


def test_journal_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    journal = Journal.in_directory(tmp_path)
    conn = journal._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_embedded_worker_runs_each_job_once_per_batch(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    journal = Journal.in_directory(tmp_path)
    for number in range(3):  # three events for one ref coalesce into one run
        journal.append(f"k{number}", "push", 1, [_record(calls, "ref-main", "main")], claim=False)
    journal.append("k9", "push", 1, [_record(calls, "ref-dev", "dev")], claim=False)
    worker = EmbeddedWorker(journal, allowed=PROBES)
    assert worker.run_once() == 4
    assert _calls(calls) == [["main"], ["dev"]]
    assert journal.counts() == {"done": 4}
    assert journal.backlog() == 0


def test_a_restart_loses_no_journaled_event(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    journal = Journal.in_directory(tmp_path)
    journal.append("k1", "push", 1, [_record(calls, "one", 1)])  # claimed by a request...
    journal.append("k2", "push", 1, [_record(calls, "two", 2)], claim=False)
    journal.close()  # ...whose process then died before handing it over
    reopened = Journal.in_directory(tmp_path)
    worker = EmbeddedWorker(reopened, allowed=PROBES)
    assert worker.run_once() == 1  # the unclaimed row runs at once
    conn = reopened._connection()
    conn.execute(
        "UPDATE deliveries SET lease_until = ? WHERE dedupe_key = 'k1'", (time.time() - 1,)
    )
    assert worker.run_once() == 1  # the dead request's claim expired: it runs too
    assert sorted(_calls(calls)) == [[1], [2]]


def test_a_worker_that_died_mid_job_has_its_rows_rerun(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    journal = Journal.in_directory(tmp_path)
    journal.append("k1", "push", 1, [_record(calls, "one", 1)], claim=False)
    entries = journal.claim(lease_seconds=60)
    journal.mark_handed_over([entries[0].id], lease_seconds=60)  # embedded claim, then crash
    worker = EmbeddedWorker(journal, allowed=PROBES)
    assert worker.run_once() == 0  # lease still held
    conn = journal._connection()
    conn.execute("UPDATE deliveries SET lease_until = ?", (time.time() - 1,))
    assert worker.run_once() == 1
    assert _calls(calls) == [[1]]
    assert journal.counts() == {"done": 1}


def test_a_failing_job_is_retried_then_marked_failed(tmp_path: Path) -> None:
    journal = Journal.in_directory(tmp_path)
    broken = JobRequest("tests.receiver.probe_jobs.record", (), "broken")  # missing argument
    journal.append("k1", "push", 1, [broken], claim=False)
    worker = EmbeddedWorker(journal, allowed=PROBES, max_attempts=2)
    worker.run_once()
    assert journal.counts() == {"accepted": 1}
    conn = journal._connection()
    conn.execute("UPDATE deliveries SET lease_until = 0")
    worker.run_once()
    assert journal.counts() == {"failed": 1}
    error = conn.execute("SELECT last_error FROM deliveries").fetchone()[0]
    assert error.startswith("TypeError")


def test_jobs_outside_indexer_jobs_are_refused(tmp_path: Path) -> None:
    journal = Journal.in_directory(tmp_path)
    journal.append("k1", "push", 1, [JobRequest("os.remove", ("/tmp/x",), "x")], claim=False)
    EmbeddedWorker(journal, max_attempts=1).run_once()
    assert journal.counts() == {"failed": 1}


def test_embedded_worker_thread_drains_in_the_background(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    journal = Journal.in_directory(tmp_path)
    worker = EmbeddedWorker(journal, interval=0.05, allowed=PROBES)
    worker.start()
    try:
        journal.append("k1", "push", 1, [_record(calls, "one", 1)], claim=False)
        worker.wake.set()
        deadline = time.monotonic() + 10
        while journal.counts() != {"done": 1} and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
    assert _calls(calls) == [[1]]


def test_prune_keeps_recent_and_pending_rows(tmp_path: Path) -> None:
    journal = Journal.in_directory(tmp_path)
    journal.append("old", "push", 1, [], claim=False)
    journal.append("pending", "push", 1, [], claim=False)
    old_id = journal.get(1)
    assert old_id is not None
    journal.mark_handed_over([old_id.id])
    journal._connection().execute("UPDATE deliveries SET settled_at = 0 WHERE dedupe_key='old'")
    assert journal.prune() == 1
    assert journal.counts() == {"accepted": 1}
