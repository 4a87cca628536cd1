"""Bytes into a storage site: streamed to a staging file with the md5 computed on the way,
verified, and only then stored at their DVC key (verify before visible).

This is the one implementation behind both writers of objects: dshub's DVC remote
(`webhook_service.dvc_remote`, where the key names the md5 the bytes must have) and uploads
through the API (`indexer.write`, where the md5 is learnt from the bytes). A partial or
mismatching upload never appears at a key; an object already stored is not rewritten.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from indexer.data.object_ids import ObjectKey, content_id
from indexer.data.storage import ObjectStore
from indexer.errors import DshubError, InvalidInput, Unavailable

Reader = Callable[[], bytes]
"""Returns the next chunk of a body (b"" at its end); raises our own errors for a broken one."""


class ChecksumMismatch(DshubError):
    """The bytes do not hash to the id they were declared with."""

    status = 400
    code = "checksum_mismatch"
    exit_code = 6


@dataclass(frozen=True)
class StagedObject:
    """Bytes held in a staging file: where, how many, and their md5 (DVC 3's object id).

    `owned`: the write consumes the file (moved into a local site, removed afterwards). An
    upload session's file is not owned: it stays until the session ends, so a commit that
    fails can be retried."""

    path: Path
    size: int
    md5: str
    owned: bool = True

    def discard(self) -> None:
        """Remove the staging file if the write owns it (idempotent)."""
        if self.owned:
            self.path.unlink(missing_ok=True)


class StagingFile:
    """A writable staging file that hashes and counts what is written, refusing past `limit`.

    Usable as the `stream_factory` result of a multipart parser (it has `write`, `seek`,
    `read` and `close`), so form uploads are hashed while the request is parsed."""

    def __init__(self, directory: Path, limit: int, too_large: Callable[[], DshubError]) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=directory, suffix=".part")
        except OSError as exc:
            raise Unavailable(
                f"dshub cannot stage the upload ({exc.strerror}); try again later"
            ) from None
        self.path = Path(name)
        self._file = os.fdopen(fd, "w+b")
        self._digest = hashlib.md5(usedforsecurity=False)
        self._limit = limit
        self._too_large = too_large
        self.size = 0

    def write(self, chunk: bytes) -> int:
        """Append `chunk`; raises the limit's error as soon as the total passes it."""
        self.size += len(chunk)
        if self.size > self._limit:
            raise self._too_large()
        self._digest.update(chunk)
        try:
            return self._file.write(chunk)
        except OSError as exc:
            raise Unavailable(
                f"dshub cannot stage the upload ({exc.strerror}); try again later"
            ) from None

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def close(self) -> None:
        self._file.close()

    def finish(self) -> StagedObject:
        """Close the file and describe what it holds."""
        self._file.close()
        return StagedObject(self.path, self.size, self._digest.hexdigest())

    def abandon(self) -> None:
        """Close and remove the file."""
        self._file.close()
        self.path.unlink(missing_ok=True)


def stage_stream(
    read: Reader,
    directory: Path,
    limit: int,
    too_large: Callable[[], DshubError],
    expected_size: int | None = None,
) -> StagedObject:
    """Copy a body chunk by chunk into a staging file under `directory`, hashing it.

    Refuses with `too_large()` past `limit` bytes and with `InvalidInput` when the body ends
    before `expected_size`; on any failure the staging file is gone."""
    staging = StagingFile(directory, limit, too_large)
    try:
        while chunk := read():
            staging.write(chunk)
        if expected_size is not None and staging.size != expected_size:
            raise InvalidInput("the upload ended before its end; nothing was stored")
    except BaseException:
        staging.abandon()
        raise
    return staging.finish()


def store_verified(store: ObjectStore, key: ObjectKey, staged: StagedObject) -> None:
    """Store `staged` at `key` after checking its bytes hash to the key's id (DVC 2 keys are
    checked with DVC's own `md5-dos2unix`). The staging file is consumed either way."""
    try:
        found = staged.md5 if not key.legacy else content_id(staged.path, key.hash_name)
        if found != key.md5:
            raise ChecksumMismatch(
                f"the uploaded bytes hash to {found} ({key.hash_name}), not to the object id "
                f"{key.md5} in the path; nothing was stored"
            )
        # A concurrent upload of the same object may have stored it meanwhile: the bytes are
        # the same verified bytes, and both stores replace an object atomically.
        store.put_file(key.key, staged.path, move=staged.owned)
    finally:
        staged.discard()


def store_bytes(store: ObjectStore, key: ObjectKey, data: bytes, directory: Path) -> None:
    """Store small generated bytes (a `.dir` manifest) through the same verified path."""
    chunks = iter((data,))
    staged = stage_stream(
        lambda: next(chunks, b""),
        directory,
        len(data),
        lambda: InvalidInput("generated object larger than itself"),
    )
    store_verified(store, key, staged)
