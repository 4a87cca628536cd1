"""Storage sites: where a dataset's bytes live (an S3-compatible bucket or a local directory).

Objects are addressed by keys relative to the dataset's own prefix
(`<site prefix>/<project_id>/`), in DVC's remote layout; a URL written in a repository's
`.dvc/config` is never used to find bytes. Credentials come only from the service's
credentials file and never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import errno
import io
import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

import boto3
import boto3.s3.transfer
import botocore.config
import botocore.exceptions

from indexer.errors import DshubError, InvalidInput, Unavailable

CHUNK = 1024 * 1024
MULTIPART_THRESHOLD = 8 * 1024 * 1024  # boto3's default threshold and part size
MULTIPART_CONCURRENCY = 4
_TRANSFER = boto3.s3.transfer.TransferConfig(
    multipart_threshold=MULTIPART_THRESHOLD,
    multipart_chunksize=MULTIPART_THRESHOLD,
    max_concurrency=MULTIPART_CONCURRENCY,
)


class ObjectMissing(DshubError):
    """The pointer names an object the storage site does not have."""

    status = 502
    code = "object_missing"
    exit_code = 6


@dataclass(frozen=True)
class Credentials:
    """An access key pair for an S3-compatible site."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StorageSite:
    """A registered storage site. `credentials_ref` names an entry of the credentials file."""

    name: str
    kind: str  # "s3" | "local"
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    description: str = ""
    access_mode: str = "proxy"  # "proxy" | "direct"
    credentials_ref: str | None = None
    path: str | None = None  # local sites only

    def dataset_prefix(self, project_id: int) -> str:
        """The key prefix a dataset's objects live under: `<site prefix>/<project_id>/`."""
        base = self.prefix.strip("/")
        return f"{base}/{project_id}/" if base else f"{project_id}/"


@dataclass(frozen=True)
class ObjectMeta:
    """What a HEAD or a listing says about one object."""

    key: str
    size: int
    last_modified: datetime


def load_credentials(path: Path | None) -> dict[str, Credentials]:
    """Read the credentials file: a JSON object `{ref: {access_key_id, secret_access_key}}`."""
    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"storage credentials file {path} is not readable JSON") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"storage credentials file {path} must hold a JSON object")
    result: dict[str, Credentials] = {}
    for ref, entry in raw.items():
        if not isinstance(entry, Mapping) or not entry.get("access_key_id"):
            raise InvalidInput(
                f"credentials entry {ref!r} needs access_key_id and secret_access_key"
            )
        result[str(ref)] = Credentials(
            access_key_id=str(entry["access_key_id"]),
            secret_access_key=str(entry.get("secret_access_key", "")),
            session_token=entry.get("session_token"),
        )
    return result


def safe_key(relative: str) -> str:
    """Validate a key relative to a dataset prefix: no traversal, no absolute paths, no NUL."""
    if not relative or "\x00" in relative or "\\" in relative or relative.startswith("/"):
        raise InvalidInput("object key must be a relative path without backslashes or NUL")
    parts = PurePosixPath(relative).parts
    if any(part in ("..", ".") for part in parts):
        raise InvalidInput("object key must not contain '.' or '..' segments")
    return relative


class ObjectStore(Protocol):
    """Byte access to one dataset's objects on its storage site (keys are relative)."""

    def head(self, key: str) -> ObjectMeta | None: ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...

    def read_bytes(self, key: str, limit: int) -> bytes: ...

    def put_file(self, key: str, source: Path, *, move: bool = False) -> None: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]: ...


class LocalObjectStore:
    """A dataset's objects in a local directory (`<path>/<prefix>/<project_id>/...`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / safe_key(key)

    def head(self, key: str) -> ObjectMeta | None:
        """Size and modification time, or None when the object does not exist."""
        try:
            stat = self._path(key).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unavailable(f"local storage site unreadable: {exc.strerror}") from exc
        return ObjectMeta(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes `start..end` (inclusive end, like HTTP ranges) in 1 MiB chunks."""
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError:
            raise ObjectMissing(f"object {key} is missing from the storage site") from None
        return _read_file(handle, start, end)

    def read_bytes(self, key: str, limit: int) -> bytes:
        """The whole object, refusing objects larger than `limit` bytes."""
        return _bounded(self, key, limit)

    def put_file(self, key: str, source: Path, *, move: bool = False) -> None:
        """Store `source` under `key` atomically (temp file then rename); readers never see
        a partial object. `move=True` lets the store take `source` itself (a rename, when it
        is on the same filesystem) instead of copying it."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                os.replace(source, target)
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """Every object under `prefix`, with size and modification time."""
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                stat = path.stat()
                key = path.relative_to(self.root).as_posix()
                yield ObjectMeta(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))


def _read_file(handle: Any, start: int, end: int | None) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = None if end is None else end - start + 1
        while remaining is None or remaining > 0:
            chunk = handle.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _bounded(store: ObjectStore, key: str, limit: int) -> bytes:
    meta = store.head(key)
    if meta is None:
        raise ObjectMissing(f"object {key} is missing from the storage site")
    if meta.size > limit:
        raise InvalidInput(f"object {key} is {meta.size} bytes, more than the {limit} allowed")
    return b"".join(store.read(key))


_CLIENTS: dict[tuple[str | None, str, Credentials | None], Any] = {}
_CLIENTS_LOCK = threading.Lock()
MAX_CLIENTS = 32


def _s3_client(endpoint_url: str | None, region: str, credentials: Credentials | None) -> Any:
    """One boto3 S3 client per endpoint, region and credentials in a process, shared by every
    dataset's store on them (clients are thread-safe; each holds its own copy of the service
    model, several MB, and takes ~0.1 s of CPU to make — a client per dataset grew a web
    worker past its memory budget in the soak)."""
    key = (endpoint_url, region, credentials)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            kwargs: dict[str, Any] = {
                "endpoint_url": endpoint_url,
                "region_name": region,
                "config": botocore.config.Config(
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=30,
                    max_pool_connections=32,
                ),
            }
            if credentials is not None:
                kwargs.update(
                    aws_access_key_id=credentials.access_key_id,
                    aws_secret_access_key=credentials.secret_access_key,
                    aws_session_token=credentials.session_token,
                )
            if len(_CLIENTS) >= MAX_CLIENTS:
                _CLIENTS.clear()
            client = _CLIENTS[key] = boto3.session.Session().client("s3", **kwargs)
        return client


def forget_clients() -> None:
    """Drop the shared S3 clients: the next store makes a new one (for tests that hook a
    client's events, which would otherwise stay hooked on every later store)."""
    with _CLIENTS_LOCK:
        _CLIENTS.clear()


class S3ObjectStore:
    """A dataset's objects in an S3-compatible bucket, under the dataset's prefix."""

    def __init__(self, site: StorageSite, credentials: Credentials | None, base: str) -> None:
        self.site = site
        self.base = base
        self.client = _s3_client(site.endpoint_url, site.region or "us-east-1", credentials)

    def _key(self, key: str) -> str:
        return self.base + safe_key(key)

    def _unavailable(self, exc: Exception) -> Unavailable:
        return Unavailable(f"storage site {self.site.name!r} is unreachable ({type(exc).__name__})")

    def head(self, key: str) -> ObjectMeta | None:
        """Size and modification time, or None when the object does not exist."""
        try:
            answer = self.client.head_object(Bucket=self.site.bucket, Key=self._key(key))
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._unavailable(exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._unavailable(exc) from exc
        return ObjectMeta(key, int(answer["ContentLength"]), answer["LastModified"])

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes `start..end` (inclusive) without buffering the object."""
        extra: dict[str, str] = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            answer = self.client.get_object(Bucket=self.site.bucket, Key=self._key(key), **extra)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise ObjectMissing(
                    f"object {key} is missing from storage site {self.site.name!r}"
                ) from None
            raise self._unavailable(exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._unavailable(exc) from exc
        body = answer["Body"]
        return _iter_body(body)

    def read_bytes(self, key: str, limit: int) -> bytes:
        """The whole object, refusing objects larger than `limit` bytes."""
        return _bounded(self, key, limit)

    def put_file(self, key: str, source: Path, *, move: bool = False) -> None:
        """Upload `source` under `key`; S3 shows an object only once its upload completed.
        `move` changes nothing: the caller keeps `source`.

        Small files are one PutObject: boto3's managed transfer starts and stops a thread
        pool per call, which cost more than the request itself for the many small objects a
        `dvc push` sends. Large files go multipart with bounded parallelism, so a worker holds
        at most `MULTIPART_CONCURRENCY` parts in memory."""
        try:
            if source.stat().st_size < MULTIPART_THRESHOLD:
                with source.open("rb") as body:
                    self.client.put_object(Bucket=self.site.bucket, Key=self._key(key), Body=body)
                return
            self.client.upload_file(str(source), self.site.bucket, self._key(key), Config=_TRANSFER)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._unavailable(exc) from exc

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        try:
            self.client.delete_object(Bucket=self.site.bucket, Key=self._key(key))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._unavailable(exc) from exc

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        """Every object under `prefix` (relative keys), with size and modification time."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.site.bucket, Prefix=self.base + prefix):
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(self.base) :]
                    yield ObjectMeta(key, int(item["Size"]), item["LastModified"])
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._unavailable(exc) from exc

    def presign_get(self, key: str, expires: int = 300) -> str:
        """A short-lived URL for a GET of the object (not valid for HEAD on real S3)."""
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.site.bucket, "Key": self._key(key)},
            ExpiresIn=expires,
        )
        return url


_END = object()
READ_AHEAD = 2  # chunks (MiB) a download reads ahead of its client


class ReadAhead:
    """Read the next chunks from storage on a helper thread while this one writes to the client.

    One thread alternates (receive 1 MiB, then send 1 MiB); overlapping the two sockets made
    100 MB downloads ~10% faster in an A/B run. At most `depth` chunks wait in memory. The
    helper starts at once (`source` is called on it, so opening the object overlaps too):
    an archive keeps several of these open to fetch the next files while it sends one. An
    exception of the source is raised again where the chunks are consumed. `close()` (the
    server calls it when the client goes away) stops the reader and closes the storage stream.
    """

    def __init__(self, source: Callable[[], Iterator[bytes]], depth: int = READ_AHEAD) -> None:
        self._pending: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        threading.Thread(
            target=self._pump, args=(source,), name="dshub-read-ahead", daemon=True
        ).start()

    def _offer(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._pending.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self, source: Callable[[], Iterator[bytes]]) -> None:
        outcome: Any = _END
        chunks: Iterator[bytes] | None = None
        try:
            chunks = source()
            for chunk in chunks:
                if not self._offer(chunk):
                    break
        except Exception as exc:  # raised again on the consuming thread
            outcome = exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        self._offer(outcome)

    def __iter__(self) -> ReadAhead:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        item = self._pending.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, Exception):
            self.close()
            raise item
        chunk: bytes = item
        return chunk

    def close(self) -> None:
        """Stop reading: the helper thread ends and closes the storage stream."""
        self._done = True
        self._stop.set()


class _ChunkIO(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (no buffering beyond one chunk)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def iter_stream(chunks: Iterator[bytes]) -> IO[bytes]:
    """Wrap streamed chunks (e.g. `ObjectStore.read`) as a binary file object."""
    return io.BufferedReader(_ChunkIO(chunks), CHUNK)


def _iter_body(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


def open_objects(
    site: StorageSite, project_id: int, credentials: Mapping[str, Credentials]
) -> LocalObjectStore | S3ObjectStore:
    """Byte access to one dataset's objects on `site`, confined to its own prefix."""
    if site.kind == "local":
        if not site.path:
            raise InvalidInput(f"local storage site {site.name!r} has no path")
        return LocalObjectStore(Path(site.path) / site.dataset_prefix(project_id))
    if site.kind == "s3":
        creds = credentials.get(site.credentials_ref) if site.credentials_ref else None
        if site.credentials_ref and creds is None:
            raise InvalidInput(
                f"storage site {site.name!r} names credentials {site.credentials_ref!r}, "
                "which the credentials file does not hold"
            )
        return S3ObjectStore(site, creds, site.dataset_prefix(project_id))
    raise InvalidInput(f"storage site {site.name!r} has unknown kind {site.kind!r}")
