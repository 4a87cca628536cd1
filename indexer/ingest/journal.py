"""The durable event journal: every accepted delivery is on disk before the receiver says 202.

One SQLite file (`journal.sqlite3` in DSHUB_DATA_DIR) in WAL mode with `synchronous=FULL`, so
each append is fsync'd when its transaction commits (`append_many` appends a whole batch of
deliveries in one transaction: one fsync for all of them). Bookkeeping writes that can be
redone safely (`mark_handed_over`) may skip that fsync (`durable=False`): the next durable
commit syncs them too, and losing one in a power cut only hands a row over a second time,
which coalescing absorbs. A row's `dedupe_key` is unique, which is how a redelivered event is
recognised. States:

- `accepted`: on disk, not yet handed to a queue (Redis down, or not tried yet);
- `handed_over`: enqueued to RQ, or claimed by the embedded worker (then `lease_until` is set
  and a crashed claim is retried when the lease expires);
- `done`: run by the embedded worker; `failed`: the embedded worker gave up after retries.

Claims use leases so several processes (gunicorn workers, `dshub worker`) can share one file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import InvalidInput, Unavailable
from indexer.ingest.routing import JobRequest, dump_jobs, load_jobs

FILENAME = "journal.sqlite3"
ACCEPTED, HANDED_OVER, DONE, FAILED = "accepted", "handed_over", "done", "failed"
# A request that journaled a row owns it for this long while it tries Redis itself.
CLAIM_SECONDS = 30.0
# Settled rows are kept this long so redeliveries (GitLab keeps 2 days of logs) stay deduped.
RETENTION_SECONDS = 14 * 24 * 3600
_WRITE_LOCK = threading.Lock()
_BIG = 2**63  # SQLite INTEGER: -2**63 .. 2**63 - 1
_CHUNK = 500  # rows per multi-row statement (7 parameters each: SQLite allows 32,766)
# Only `?` placeholders (from `_rows`) are ever formatted into these.
_INSERT = (
    "INSERT INTO deliveries (dedupe_key, kind, project_id, jobs, state, received_at, lease_until)"
    " VALUES {rows} ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key, id"
)
_FIND = "SELECT dedupe_key, id FROM deliveries WHERE dedupe_key IN {keys}"
# `+state`: look rows up by id; the planner would otherwise scan the state index.
_MARK = (
    "UPDATE deliveries SET state = 'handed_over', lease_until = ?, settled_at = ?"
    " WHERE id IN {ids} AND +state IN ('accepted', 'handed_over')"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    project_id INTEGER,
    jobs TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('accepted', 'handed_over', 'done', 'failed')),
    received_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    settled_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (state, lease_until);
"""


class JournalError(Unavailable):
    """The journal file cannot be opened or written (disk full, permissions, corruption)."""


@dataclass(frozen=True)
class Delivery:
    """A delivery to journal: its dedupe key, event kind, project and routed jobs."""

    dedupe_key: str
    kind: str
    project_id: int | None
    jobs: list[JobRequest]


@dataclass(frozen=True)
class Entry:
    """One journaled delivery and the jobs it was routed to."""

    id: int
    dedupe_key: str
    kind: str
    project_id: int | None
    jobs: list[JobRequest]
    state: str
    received_at: float
    attempts: int


class UnstorableDelivery(InvalidInput):
    """A delivery with a field the journal cannot store (an id beyond SQLite's INTEGER, text
    that is not Unicode): that delivery's own 400, never its batch's failure."""


def check_storable(delivery: Delivery) -> None:
    """Raise `UnstorableDelivery` unless every field of `delivery` fits a journal row."""
    pid = delivery.project_id
    if pid is not None and (
        isinstance(pid, bool) or not isinstance(pid, int) or not -_BIG <= pid < _BIG
    ):
        raise UnstorableDelivery("project_id is outside the range of a 64-bit integer")
    try:
        for text in (delivery.dedupe_key, delivery.kind, dump_jobs(delivery.jobs)):
            text.encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        raise UnstorableDelivery("the delivery holds text that is not valid Unicode") from None


class Journal:
    """A handle on the journal file; safe to share between threads (one connection each)."""

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        try:
            self._connection().executescript(_SCHEMA)  # autocommit: executescript commits itself
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc

    @classmethod
    def in_directory(cls, data_dir: Path) -> Journal:
        """Open (creating if needed) the journal in a data directory."""
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create {data_dir}: {exc.strerror}") from exc
        return cls(data_dir / FILENAME)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        # Threads of one process queue on this mutex rather than on SQLite's busy handler,
        # which sleeps in steps of up to 100 ms and would turn contention into tail latency.
        with _WRITE_LOCK, self._file_lock():
            if durable:
                with self._write_transaction(conn):
                    yield conn
                return
            # WAL + NORMAL: the commit reaches the OS (safe against a process kill) without an
            # fsync; the next FULL commit on this file syncs it along with its own frames.
            self._set_synchronous(conn, "NORMAL")
            try:
                with self._write_transaction(conn):
                    yield conn
            finally:
                self._set_synchronous(conn, "FULL")

    def _set_synchronous(self, conn: sqlite3.Connection, level: str) -> None:
        try:
            conn.execute(f"PRAGMA synchronous={level}")
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from exc

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        # The same for processes (gunicorn workers, `dshub worker`): flock wakes the next
        # writer as soon as the lock is free.
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise JournalError(f"cannot open the journal lock: {exc.strerror}") from exc
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _write_transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from exc

    def close(self) -> None:
        """Close every connection this handle opened (in any thread)."""
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        self._local = threading.local()

    def append(
        self,
        dedupe_key: str,
        kind: str,
        project_id: int | None,
        jobs: list[JobRequest],
        claim: bool = True,
    ) -> tuple[int, bool]:
        """Durably record a delivery; returns (row id, duplicate).

        A duplicate (same `dedupe_key`) writes nothing and returns the first row's id. With
        `claim`, the new row is leased to the caller for `CLAIM_SECONDS` so background drainers
        leave it alone while the caller hands it over itself.
        """
        return self.append_many([Delivery(dedupe_key, kind, project_id, jobs)], claim)[0]

    def append_many(
        self, deliveries: list[Delivery], claim: bool = True, handed_over: Sequence[int] = ()
    ) -> list[tuple[int, bool]]:
        """Durably record several deliveries in one transaction (one fsync); `append` for each.

        Results are in input order; a key repeated within the batch is a duplicate of its first
        occurrence. Either every delivery is on disk when this returns, or it raises
        `JournalError` (or `UnstorableDelivery`, before writing anything) and none is. `handed_over` ids (rows an earlier batch enqueued) are
        marked as `mark_handed_over` would, in the same transaction.
        """
        for item in deliveries:
            check_storable(item)
        now = time.time()
        lease = now + CLAIM_SECONDS if claim else 0.0
        first: dict[str, Delivery] = {}
        for item in deliveries:
            first.setdefault(item.dedupe_key, item)
        with self._transaction() as conn:
            if handed_over:
                self._mark(conn, list(handed_over), 0.0, now)
            ids: dict[str, int] = {}
            batch = list(first.values())
            for offset in range(0, len(batch), _CHUNK):
                chunk = batch[offset : offset + _CHUNK]
                values: list[object] = []
                for item in chunk:
                    values += (item.dedupe_key, item.kind, item.project_id, dump_jobs(item.jobs))
                    values += (ACCEPTED, now, lease)
                # One statement per chunk: RETURNING gives the rows it inserted; the keys it
                # skipped are redeliveries of rows already there.
                inserted = conn.execute(
                    _INSERT.format(rows=_rows(len(chunk), 7)), values
                ).fetchall()
                ids.update((str(key), int(entry_id)) for key, entry_id in inserted)
            new = set(ids)
            known = [key for key in first if key not in ids]
            for offset in range(0, len(known), _CHUNK):
                keys = known[offset : offset + _CHUNK]
                found = conn.execute(_FIND.format(keys=_rows(1, len(keys))), keys).fetchall()
                ids.update((str(key), int(entry_id)) for key, entry_id in found)
        results: list[tuple[int, bool]] = []
        for item in deliveries:
            key = item.dedupe_key
            results.append((ids[key], key not in new))
            new.discard(key)  # a repeat within the batch is a duplicate of the first
        return results

    def get(self, entry_id: int) -> Entry | None:
        """One row by id, or None."""
        row = (
            self._connection()
            .execute(
                "SELECT id, dedupe_key, kind, project_id, jobs, state, received_at, attempts FROM deliveries WHERE id = ?",
                (entry_id,),
            )
            .fetchone()
        )
        return _entry(row) if row else None

    def claim(self, limit: int = 100, lease_seconds: float = CLAIM_SECONDS) -> list[Entry]:
        """Lease up to `limit` rows that nobody is handing over or running right now, oldest first.

        Those are `accepted` rows whose lease expired and (embedded worker) `handed_over` rows
        whose lease expired because the process running them died.
        """
        now = time.time()
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT id, dedupe_key, kind, project_id, jobs, state, received_at, attempts FROM deliveries"
                " WHERE lease_until < ? AND"
                " (state = 'accepted' OR (state = 'handed_over' AND lease_until > 0))"
                " ORDER BY id LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE deliveries SET lease_until = ? WHERE id = ?",
                [(now + lease_seconds, row[0]) for row in rows],
            )
        return [_entry(row) for row in rows]

    def mark_handed_over(
        self, ids: list[int], lease_seconds: float = 0.0, durable: bool = True
    ) -> None:
        """Record that these rows' jobs are in the queue (RQ), or being run (embedded, leased).

        `durable=False` skips the fsync: fine after an RQ hand-over, since a mark lost to a
        power cut only makes the drainer enqueue the row again (coalesced into the same job).
        """
        lease = time.time() + lease_seconds if lease_seconds else 0.0
        with self._transaction(durable) as conn:
            self._mark(conn, ids, lease, time.time())

    def _mark(self, conn: sqlite3.Connection, ids: list[int], lease: float, now: float) -> None:
        for offset in range(0, len(ids), _CHUNK):
            chunk = ids[offset : offset + _CHUNK]
            conn.execute(_MARK.format(ids=_rows(1, len(chunk))), [lease, now, *chunk])

    def release(self, ids: list[int], error: str, retry_in: float = 0.0) -> None:
        """Give rows back (hand-over failed): they stay `accepted` and are retried later."""
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE deliveries SET state = 'accepted', lease_until = ?, last_error = ?,"
                " attempts = attempts + 1 WHERE id = ? AND state IN ('accepted', 'handed_over')",
                [(time.time() + retry_in, error[:500], entry_id) for entry_id in ids],
            )

    def settle(self, ids: list[int], state: str, error: str | None = None) -> None:
        """Mark rows run (`done`) or abandoned (`failed`) by the embedded worker."""
        if state not in (DONE, FAILED):
            raise ValueError(f"cannot settle into {state!r}")
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE deliveries SET state = ?, lease_until = 0, settled_at = ?,"
                " last_error = COALESCE(?, last_error) WHERE id = ?",
                [(state, time.time(), error, entry_id) for entry_id in ids],
            )

    def backlog(self) -> int:
        """How many rows are waiting to be handed over or run (`accepted`, or leased and running)."""
        row = (
            self._connection()
            .execute(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'accepted'"
                " OR (state = 'handed_over' AND lease_until > 0)"
            )
            .fetchone()
        )
        return int(row[0])

    def counts(self) -> dict[str, int]:
        """Number of rows in each state."""
        rows = self._connection().execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
        return {str(state): int(count) for state, count in rows}

    def ping(self) -> None:
        """Raise `JournalError` unless the journal can be read and a write lock taken."""
        with self._transaction() as conn:
            conn.execute("SELECT 1 FROM deliveries LIMIT 1").fetchall()

    def prune(self, older_than: float = RETENTION_SECONDS) -> int:
        """Delete settled rows older than `older_than` seconds; returns how many went."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM deliveries WHERE state IN ('handed_over', 'done', 'failed')"
                " AND lease_until = 0 AND settled_at < ?",
                (time.time() - older_than,),
            )
            return cursor.rowcount


def _rows(count: int, width: int) -> str:
    """`(?, ?), (?, ?)`-style placeholders: `count` tuples of `width` (one tuple if count=1)."""
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * count)


def _entry(row: tuple[object, ...]) -> Entry:
    entry_id, key, kind, project_id, jobs, state, received_at, attempts = row
    return Entry(
        id=int(str(entry_id)),
        dedupe_key=str(key),
        kind=str(kind),
        project_id=None if project_id is None else int(str(project_id)),
        jobs=load_jobs(str(jobs)),
        state=str(state),
        received_at=float(str(received_at)),
        attempts=int(str(attempts)),
    )
