"""One gc at a time per dataset, across every worker process (and host) of a deployment.

With Redis (production) the lock is a Redis lock that expires after `REDIS_TTL` seconds, so
a crashed worker cannot hold it forever; on the embedded default (one machine) it is an
`flock` on a file under the data directory, which the kernel releases when the holder dies.
A second caller does not wait: it is told at once that a gc is running.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from indexer.errors import DshubError, Unavailable

REDIS_TTL = 6 * 3600


class GcInProgress(DshubError):
    """Another gc of the same dataset is running."""

    status = 409
    code = "gc_in_progress"
    exit_code = 1


def _busy(project_id: int) -> GcInProgress:
    return GcInProgress(f"a gc of dataset {project_id} is already running; try again when it ends")


@contextmanager
def gc_lock(project_id: int, redis_url: str | None, data_dir: Path) -> Iterator[None]:
    """Hold dataset `project_id`'s gc lock for the block; `GcInProgress` when it is taken."""
    if redis_url:
        with _redis_lock(project_id, redis_url):
            yield
        return
    with _file_lock(project_id, data_dir):
        yield


@contextmanager
def _redis_lock(project_id: int, redis_url: str) -> Iterator[None]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    lock = client.lock(f"dshub:gc:{project_id}", timeout=REDIS_TTL, blocking=False)
    try:
        acquired = lock.acquire()
    except redis.RedisError as exc:
        raise Unavailable(
            f"Redis is unreachable, gc cannot be serialised ({type(exc).__name__})"
        ) from None
    if not acquired:
        raise _busy(project_id)
    try:
        yield
    finally:
        with contextlib.suppress(redis.RedisError):  # expired or unreachable: the TTL frees it
            lock.release()


@contextmanager
def _file_lock(project_id: int, data_dir: Path) -> Iterator[None]:
    directory = data_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"gc-{project_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(project_id) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
