"""Presence of a dataset's objects answered from a short-lived listing of its prefix.

dshub's DVC remote is asked about objects one at a time (DVC's http remote cannot list): a
push of N new objects is N GETs answered 404 and N uploads, a pull N GETs. Asking the site
for each (a HEAD per GET, another per upload) made three site requests per new object where
DVC straight to S3 makes one. `ListingCache` instead lists the dataset's prefix once (one
LIST request per 1,000 objects), keeps it for `ttl` seconds per dataset, and answers from it:
a GET of an absent object is a 404 with no site request, an upload of an absent object is one
PutObject, a download one GetObject (the size comes from the listing).

Why an answer from a listing stays true: every write and every delete of an object made by
dshub is appended, after it happened, to the dataset's object log (`ObjectLog`: a Redis list
when Redis is configured, else an append-only file under the data directory, so every worker
process of a deployment sees every other's). A cached listing remembers the log position it
was taken at (read *before* the LIST request) and applies each entry written since before
every answer: "+key size" adds, "-key" removes. A delete made by gc therefore removes its key
from every cached listing before that listing's next answer, however recently it was taken;
an upload through another worker appears in it as well. `LoggedObjects` wraps a store so its
`put_file` and `delete` write the log: the DVC remote's uploads, the web uploads and gc
(`webhook_service.api_gc`) all go through it.

When the log cannot be read, the listing fails (the site answers an error) or the prefix holds
more than `max_listed` objects, answers fall back to one request per object (`store.head`),
which is what was done before; a listing is never trusted past its log position. Objects
changed behind dshub's back (deleted in the bucket by hand) are seen at the next listing, at
most `ttl` seconds later; until then a GET of such an object fails as it did before.

The log keeps only its newest entries (`MAX_LOG_ENTRIES` in Redis, `MAX_LOG_BYTES` per file):
past the bound the older half is dropped and the count dropped is kept with it, so positions
stay absolute. A listing whose position lies in the dropped part is `LogTrimmed` and lists
again — never answered from a log that lost entries.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import redis

from indexer.data.storage import ObjectMeta, ObjectStore
from indexer.errors import DshubError, Unavailable

log = logging.getLogger(__name__)

TTL = 30.0  # seconds a listing is answered from (changes made outside dshub show up after it)
MAX_LISTED = 50_000  # above this a dataset is answered per object (50 listing requests)
REDIS_KEY = "dshub:objects:{}"
# The log keeps the newest entries only: a listing whose position was trimmed off relists.
MAX_LOG_ENTRIES = 20_000
MAX_LOG_BYTES = 4 * 1024 * 1024
_EPOCH = datetime.fromtimestamp(0, UTC)


class ObjectLog(Protocol):
    """An append-only log of the object writes and deletes of each dataset, shared by every
    process of a deployment; positions only grow."""

    def append(self, project_id: int, entry: str) -> None: ...

    def position(self, project_id: int) -> int: ...

    def since(self, project_id: int, position: int) -> tuple[list[str], int]: ...


class LogTrimmed(DshubError):
    """The entries after a listing's position were trimmed off the log: relist."""

    status = 503
    code = "object_log_trimmed"


class FileObjectLog:
    """The log as one append-only file per dataset under `directory` (one host): each entry is
    one line written with a single `O_APPEND` write under a shared `flock`, so concurrent
    writers never interleave; the position is the bytes trimmed so far (`<id>.base`) plus the
    file's size. Past `max_bytes` the older half is trimmed under an exclusive `flock`."""

    def __init__(self, directory: Path, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    def _path(self, project_id: int) -> Path:
        return self.directory / f"{project_id}.log"

    def _base(self, project_id: int) -> int:
        try:
            return int((self.directory / f"{project_id}.base").read_text() or 0)
        except FileNotFoundError:
            return 0

    def _locked(self, project_id: int, mode: int) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / f"{project_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, mode)
        return fd

    def append(self, project_id: int, entry: str) -> None:
        """Append one entry (durable against a crash of the process, not of the host)."""
        lock = self._locked(project_id, fcntl.LOCK_SH)
        try:
            fd = os.open(self._path(project_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (entry + "\n").encode())
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
        finally:
            os.close(lock)
        if size > self.max_bytes:
            self.trim(project_id)

    def trim(self, project_id: int) -> None:
        """Drop the older half of the log (whole lines); positions stay absolute."""
        lock = self._locked(project_id, fcntl.LOCK_EX)
        try:
            path = self._path(project_id)
            data = path.read_bytes()
            if len(data) <= self.max_bytes:
                return  # another process trimmed it meanwhile
            cut = data.find(b"\n", len(data) // 2) + 1
            scratch = path.with_suffix(".trim")
            scratch.write_bytes(data[cut:])
            base = self.directory / f"{project_id}.base"
            base.with_suffix(".next").write_text(str(self._base(project_id) + cut))
            os.replace(base.with_suffix(".next"), base)
            os.replace(scratch, path)
        finally:
            os.close(lock)

    def position(self, project_id: int) -> int:
        """The log's current end."""
        lock = self._locked(project_id, fcntl.LOCK_SH)
        try:
            try:
                size = self._path(project_id).stat().st_size
            except FileNotFoundError:
                size = 0
            return self._base(project_id) + size
        finally:
            os.close(lock)

    def since(self, project_id: int, position: int) -> tuple[list[str], int]:
        """The complete entries after `position`, and the position after them; `LogTrimmed`
        when some of them were trimmed."""
        lock = self._locked(project_id, fcntl.LOCK_SH)
        try:
            base = self._base(project_id)
            if position < base:
                raise LogTrimmed(f"object log of dataset {project_id} trimmed past {position}")
            try:
                with self._path(project_id).open("rb") as handle:
                    handle.seek(position - base)
                    data = handle.read()
            except FileNotFoundError:
                return [], position
        finally:
            os.close(lock)
        complete = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
        return complete.decode().splitlines(), position + len(complete)


# Redis: append, and past `max_entries` drop the older half, counting what was dropped
# (KEYS[1] the list, KEYS[2] the count trimmed so far).
_APPEND = """
local length = redis.call('RPUSH', KEYS[1], ARGV[1])
local limit = tonumber(ARGV[2])
if length > limit then
  local drop = length - math.floor(limit / 2)
  redis.call('LTRIM', KEYS[1], drop, -1)
  redis.call('INCRBY', KEYS[2], drop)
end
return length
"""
# The base and the entries after a position, read together.
_SINCE = """
local base = tonumber(redis.call('GET', KEYS[2]) or '0')
local position = tonumber(ARGV[1])
if position < base then return {base} end
local entries = redis.call('LRANGE', KEYS[1], position - base, -1)
table.insert(entries, 1, base)
return entries
"""
_POSITION = """
return tonumber(redis.call('GET', KEYS[2]) or '0') + redis.call('LLEN', KEYS[1])
"""


class RedisObjectLog:
    """The log as one Redis list per dataset (every host of a deployment); the position is the
    entries trimmed so far plus the list's length, so positions stay valid across trims.
    Past `max_entries` the older half is trimmed, atomically with its count (Lua)."""

    def __init__(self, url: str, max_entries: int = MAX_LOG_ENTRIES) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.max_entries = max_entries
        self._append = self.client.register_script(_APPEND)
        self._since = self.client.register_script(_SINCE)
        self._position = self.client.register_script(_POSITION)

    @staticmethod
    def _keys(project_id: int) -> list[str]:
        key = REDIS_KEY.format(project_id)
        return [key, key + ":trimmed"]

    def append(self, project_id: int, entry: str) -> None:
        """Append one entry; `Unavailable` when Redis cannot be reached."""
        try:
            self._append(keys=self._keys(project_id), args=[entry, self.max_entries])
        except redis.RedisError as exc:
            raise Unavailable(f"Redis is unreachable ({type(exc).__name__})") from None

    def position(self, project_id: int) -> int:
        """The log's current end."""
        try:
            return int(self._position(keys=self._keys(project_id)))
        except redis.RedisError as exc:
            raise Unavailable(f"Redis is unreachable ({type(exc).__name__})") from None

    def since(self, project_id: int, position: int) -> tuple[list[str], int]:
        """The entries after `position`, and the position after them; `LogTrimmed` when some
        of them were trimmed."""
        try:
            raw = self._since(keys=self._keys(project_id), args=[position])
        except redis.RedisError as exc:
            raise Unavailable(f"Redis is unreachable ({type(exc).__name__})") from None
        if len(raw) == 1 and int(raw[0]) > position:
            raise LogTrimmed(f"object log of dataset {project_id} trimmed past {position}")
        entries = [item.decode() if isinstance(item, bytes) else str(item) for item in raw[1:]]
        return entries, position + len(entries)


def object_log(redis_url: str | None, data_dir: Path) -> ObjectLog:
    """The deployment's object log: Redis when configured, else files in the data directory."""
    if redis_url:
        return RedisObjectLog(redis_url)
    return FileObjectLog(data_dir / "object-log")


def written(key: str, size: int) -> str:
    """The log entry of a stored object."""
    return f"+{key} {size}"


def deleted(key: str) -> str:
    """The log entry of a deleted object."""
    return f"-{key}"


class LoggedObjects:
    """A store whose `put_file` and `delete` are appended to the dataset's object log after
    they happened (a delete also before, and after it even when it failed). A log that cannot be
    written is an `Unavailable` (503) for the caller: the operation is done, but other
    processes' cached listings would not learn of it."""

    def __init__(self, store: ObjectStore, objects_log: ObjectLog, project_id: int) -> None:
        self.store = store
        self.objects_log = objects_log
        self.project_id = project_id

    def head(self, key: str) -> ObjectMeta | None:
        """See `ObjectStore.head`."""
        return self.store.head(key)

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """See `ObjectStore.read`."""
        return self.store.read(key, start, end)

    def read_bytes(self, key: str, limit: int) -> bytes:
        """See `ObjectStore.read_bytes`."""
        return self.store.read_bytes(key, limit)

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """See `ObjectStore.list`."""
        return self.store.list(prefix)

    def put_file(self, key: str, source: Path, *, move: bool = False) -> None:
        """Store, then log "+key size"."""
        size = source.stat().st_size
        self.store.put_file(key, source, move=move)
        self._append(key, written(key, size))

    def delete(self, key: str) -> None:
        """Log "-key", delete, and log "-key" again (in any case). The first entry makes sure
        nothing is deleted that the log cannot tell; the second reaches a listing whose
        position was read between the two while its LIST still saw the object."""
        self._append(key, deleted(key))
        try:
            self.store.delete(key)
        finally:
            self._append(key, deleted(key))

    def _append(self, key: str, entry: str) -> None:
        try:
            self.objects_log.append(self.project_id, entry)
        except (DshubError, OSError) as exc:
            log.error("object log of dataset %s not written: %s", self.project_id, exc)
            raise Unavailable(
                f"a change to object {key} could not be recorded for dshub's other processes "
                f"({type(exc).__name__}); retry the request"
            ) from None


@dataclass
class _Listing:
    objects: dict[str, ObjectMeta] | None  # None: answer per object until `expires`
    position: int
    expires: float
    lock: threading.Lock = field(default_factory=threading.Lock)


UNKNOWN = object()


class ListingCache:
    """Per-process cache of each dataset's listing (see the module docstring)."""

    def __init__(
        self,
        objects_log: ObjectLog,
        ttl: float = TTL,
        max_listed: int = MAX_LISTED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.objects_log = objects_log
        self.ttl = ttl
        self.max_listed = max_listed
        self.clock = clock
        self.listings = 0  # listings taken (for tests and measurements)
        self._entries: dict[int, _Listing] = {}
        self._lock = threading.Lock()

    def head(self, project_id: int, store: ObjectStore, key: str) -> ObjectMeta | None:
        """What the site holds at `key`: from the dataset's listing brought up to date with the
        object log, or, when that cannot be had, from `store.head`."""
        found = self._lookup(project_id, store, key)
        if found is UNKNOWN:
            return store.head(key)
        return found if isinstance(found, ObjectMeta) else None

    def held(self, project_id: int, store: ObjectStore, keys: Iterable[str]) -> set[str] | None:
        """Which of `keys` the site holds, from the dataset's listing brought up to date with the
        object log (one lookup for all); None when no listing can be had (the caller asks the
        site itself)."""
        found = self._lookup(project_id, store, None)
        if not isinstance(found, dict):
            return None
        return {key for key in keys if key in found}

    def forget(self, project_id: int) -> None:
        """Drop the dataset's listing (an answer from it proved wrong)."""
        with self._lock:
            self._entries.pop(project_id, None)

    def _lookup(self, project_id: int, store: ObjectStore, key: str | None) -> object:
        """The listing's answer for `key` (UNKNOWN when there is no usable listing); with
        `key` None, a copy of the whole up-to-date listing."""
        entry = self._entry(project_id)
        with entry.lock:
            now = self.clock()
            try:
                if now >= entry.expires:
                    self._relist(project_id, store, entry, now)
                if entry.objects is None:
                    return UNKNOWN
                try:
                    entries, entry.position = self.objects_log.since(project_id, entry.position)
                except LogTrimmed:  # what changed since the listing is gone: list again
                    self._relist(project_id, store, entry, now)
                    if entry.objects is None:
                        return UNKNOWN
                    entries, entry.position = self.objects_log.since(project_id, entry.position)
            except (DshubError, OSError) as exc:
                log.warning("listing of dataset %s not used: %s", project_id, exc)
                entry.objects, entry.expires = None, self.clock() + min(self.ttl, 5.0)
                return UNKNOWN
            _apply(entry.objects, entries)
            return dict(entry.objects) if key is None else entry.objects.get(key)

    def _entry(self, project_id: int) -> _Listing:
        with self._lock:
            entry = self._entries.get(project_id)
            if entry is None:
                if len(self._entries) > 1024:
                    self._entries.clear()
                entry = self._entries[project_id] = _Listing(None, 0, 0.0)
            return entry

    def _relist(self, project_id: int, store: ObjectStore, entry: _Listing, now: float) -> None:
        entry.objects = None
        entry.expires = now + self.ttl
        entry.position = self.objects_log.position(project_id)  # before the listing starts
        self.listings += 1
        objects: dict[str, ObjectMeta] = {}
        for meta in store.list(""):
            objects[meta.key] = meta
            if len(objects) > self.max_listed:
                log.info("dataset %s holds more than %d objects", project_id, self.max_listed)
                return
        entry.objects = objects


def _apply(objects: dict[str, ObjectMeta], entries: list[str]) -> None:
    for item in entries:
        if item.startswith("-"):
            objects.pop(item[1:], None)
        elif item.startswith("+"):
            key, _, size = item[1:].partition(" ")
            objects[key] = ObjectMeta(key, int(size or 0), _EPOCH)
