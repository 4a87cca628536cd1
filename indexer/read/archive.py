"""A materialised download: the real files of a dataset at one commit, streamed as one zip.

`plan` turns what a commit holds (DVC-tracked files from the resolver, plain git files from
GitLab's tree) into the zip's entries and refuses, before a byte is sent, anything a client
could not unpack safely: an entry name that breaks the download path rules
(`indexer.read.resolve.validate_entry_name`: no absolute paths, `..`, backslashes, drive letters,
control characters), two entries with one name, a name that is both a file and a folder,
and a listing known to be incomplete (a tracked directory whose manifest is unreadable).
Files whose bytes live elsewhere (imports) are left out and named in the manifest.

`stream_zip` writes the zip (zip64, every entry `ZIP_STORED`) into a non-seekable sink it
drains after each write, so memory stays bounded by the read-ahead window, whatever the
dataset's size: `WINDOW` upcoming files are fetched in parallel, each at most `READ_AHEAD`
chunks ahead. As they pass, every file's byte count is checked against its recorded size and
a DVC 2 file's `md5-dos2unix` recomputed (see `_Hashes` for why a DVC 3 md5 is not); the
last entry, `MANIFEST.md5`, names each file's recorded hash and kind and the md5
of its bytes (`md5sum -c MANIFEST.md5` checks an unpacked copy). A storage failure or a
hash mismatch mid-stream raises out of the generator, so the server drops the connection:
the client sees a broken transfer, never a short zip that looks complete.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from dvc_data.hashfile.hash import dos2unix
from dvc_data.hashfile.istextfile import DEFAULT_CHUNK_SIZE, istextblock

from indexer.data.pointers import LEGACY_HASH, is_pointer_path, object_key
from indexer.data.storage import CHUNK, ReadAhead
from indexer.data.tracked_files import ELSEWHERE, IMPORTED
from indexer.errors import DshubError, InvalidInput, Unprocessable
from indexer.gitlab.reader import TreeEntry
from indexer.read.resolve import validate_entry_name
from indexer.store import IndexedFile

MANIFEST = "MANIFEST.md5"
WINDOW = 8  # files fetched ahead in parallel
GIT_SHA1 = "git-sha1"
DVC_BLOCK = 2**20  # dvc-data hashes (and decides "text") per block of this size
_PLUMBING = (".gitignore", ".dvcignore")


class CorruptObject(DshubError):
    """Bytes from storage do not hash to what the pointer records (raised mid-stream)."""

    status = 502
    code = "corrupt_object"
    exit_code = 6


@dataclass(frozen=True)
class Entry:
    """One file of the zip: its name, the hash it must have and where its bytes are."""

    path: str
    kind: str  # md5 | md5-dos2unix | git-sha1
    recorded: str
    key: str | None  # object key under the dataset's prefix; None for a git file
    size: int | None = None  # as recorded (None: not known)


@dataclass(frozen=True)
class Plan:
    """The zip's entries in path order, and the files left out with why."""

    entries: list[Entry]
    left_out: list[tuple[str, str]]


def is_plumbing(path: str) -> bool:
    """Git files that are DVC's machinery, not data: pointers, `.dvc/`, ignore files."""
    return (
        is_pointer_path(path)
        or path == ".dvc"
        or path.startswith(".dvc/")
        or posixpath.basename(path) in _PLUMBING
    )


def plan(tracked: Iterable[IndexedFile], git_files: Iterable[TreeEntry]) -> Plan:
    """The entries of a materialised zip; `InvalidInput`/`Unprocessable` naming the problem."""
    entries: list[Entry] = []
    left_out: list[tuple[str, str]] = []
    for found in tracked:
        _check_name(found.path)
        if found.status in (IMPORTED, ELSEWHERE):
            left_out.append((found.path, found.note or found.status))
        elif found.status != "ok":
            raise Unprocessable(
                f"{found.path} cannot be read ({found.note or found.status}); the zip would "
                "be incomplete, so nothing was sent. Fix the pointer or choose a path= without it"
            )
        else:
            key = object_key("", found.md5, found.hash_name, is_dir=False)
            entries.append(Entry(found.path, found.hash_name, found.md5, key, found.size))
    for blob in git_files:
        if not is_plumbing(blob.path):
            _check_name(blob.path)
            entries.append(Entry(blob.path, GIT_SHA1, blob.id, None))
    entries.sort(key=lambda e: e.path)
    _refuse_clashes([e.path for e in entries] + [p for p, _ in left_out])
    return Plan(entries, left_out)


def _check_name(name: str) -> None:
    try:
        validate_entry_name(name)
    except InvalidInput as exc:
        raise Unprocessable(
            f"the dataset holds an entry named {name[:80]!r} that is not a safe file name "
            f"({exc.message}); nothing was sent. Rename it, or choose a path= without it"
        ) from None


def _refuse_clashes(names: list[str]) -> None:
    seen: set[str] = {MANIFEST}
    for name in names:
        if name in seen:
            what = "the manifest's name" if name == MANIFEST else "a second entry's name"
            raise Unprocessable(f"{name!r} is {what}; a zip cannot hold both, nothing was sent")
        seen.add(name)
    for name in names:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in seen:
                raise Unprocessable(
                    f"{folder!r} is both a file and the folder of {name!r}; a zip cannot "
                    "unpack both, nothing was sent"
                )


class _Sink:
    """A write-only, non-seekable file: zipfile writes into it, the generator drains it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.pending = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self.pending += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: `take` hands the bytes on."""

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.pending = 0
        return data


class _Hashes:
    """What a file's bytes are checked with as they pass: their count against the recorded
    size, DVC 2's `md5-dos2unix` recomputed (dvc-data's per-block rule), and the md5 of the
    bytes for the manifest. For a DVC 3 (`md5`) file that md5 *is* the recorded hash, so it
    is not recomputed here (it was 70% of the zip's CPU): `md5sum -c MANIFEST.md5` on the
    client checks those bytes, as the client checks a single-file download."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.count = 0
        self.plain = None if entry.kind == "md5" else hashlib.md5(usedforsecurity=False)
        self.legacy = hashlib.md5(usedforsecurity=False) if entry.kind == LEGACY_HASH else None
        self._block = bytearray()

    def update(self, chunk: bytes) -> None:
        self.count += len(chunk)
        if self.plain is not None:
            self.plain.update(chunk)
        if self.legacy is not None:
            self._block += chunk
            while len(self._block) >= DVC_BLOCK:
                self._legacy_block(bytes(self._block[:DVC_BLOCK]))
                del self._block[:DVC_BLOCK]

    def _legacy_block(self, block: bytes) -> None:
        if self.legacy is None:
            return
        text = istextblock(block[:DEFAULT_CHUNK_SIZE]) if block else False
        self.legacy.update(dos2unix(block) if text else block)

    def check(self) -> str:
        """The md5 of the bytes; `CorruptObject` when they are not what the pointer records."""
        entry = self.entry
        if entry.size is not None and self.count != entry.size:
            raise CorruptObject(
                f"{entry.path}: the storage site sent {self.count} bytes, its pointer records "
                f"{entry.size}"
            )
        if self.legacy is not None:
            if self._block:
                self._legacy_block(bytes(self._block))
                self._block.clear()
            if self.legacy.hexdigest() != entry.recorded:
                raise CorruptObject(
                    f"{entry.path}: the storage site's bytes hash to {self.legacy.hexdigest()} "
                    f"({entry.kind}), its pointer records {entry.recorded}"
                )
        return entry.recorded if self.plain is None else self.plain.hexdigest()


def manifest_lines(
    header: str, done: list[tuple[Entry, str]], left_out: Iterable[tuple[str, str]]
) -> Iterator[str]:
    """`MANIFEST.md5`'s lines (see the module docstring)."""
    yield f"# {header}\n"
    yield "# Check an unpacked copy with: md5sum -c MANIFEST.md5\n"
    yield (
        "# Before each file, '# <kind> <hash>' is the hash its pointer records. kind md5: DVC 3,"
        " the md5 of the bytes; md5-dos2unix: DVC 2, the md5 after CRLF->LF in text files (it"
        " can differ from the md5 below); git-sha1: a file kept in git (its blob id).\n"
    )
    for entry, plain in done:
        yield f"# {entry.kind} {entry.recorded}\n"
        yield f"{plain}  {entry.path}\n"
    for path, why in left_out:
        yield f"# not included: {path} ({why})\n"


def _hashed(
    open_entry: Callable[[Entry], Iterator[bytes]], entry: Entry, hashes: _Hashes
) -> Iterator[bytes]:
    """The entry's chunks, hashed as they pass (on the read-ahead thread, so the hashing of
    the files in the window runs beside the writing)."""
    chunks = open_entry(entry)
    try:
        for chunk in chunks:
            hashes.update(chunk)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def stream_zip(
    entries: list[Entry],
    open_entry: Callable[[Entry], Iterator[bytes]],
    header: str,
    left_out: Iterable[tuple[str, str]] = (),
    window: int = WINDOW,
) -> Iterator[bytes]:
    """The zip's bytes, streamed; raises mid-stream on a storage failure or a bad hash."""
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True)  # type: ignore[call-overload]
    stamp = time.localtime()[:6]
    upcoming = iter(entries)
    pending: deque[tuple[Entry, _Hashes, ReadAhead]] = deque()
    done: list[tuple[Entry, str]] = []
    current: ReadAhead | None = None

    def fill() -> None:
        while len(pending) < window:
            entry = next(upcoming, None)
            if entry is None:
                return
            hashes = _Hashes(entry)
            source = functools.partial(_hashed, open_entry, entry, hashes)
            pending.append((entry, hashes, ReadAhead(source)))

    def member(name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, stamp)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        return info

    try:
        fill()
        while pending:
            entry, hashes, current = pending.popleft()
            fill()
            with archive.open(member(entry.path), "w", force_zip64=True) as out:
                if not done:  # the first header goes out at once: the answer is under way,
                    yield sink.take()  # so any failure from here on breaks the transfer
                for chunk in current:
                    out.write(chunk)
                    if sink.pending >= CHUNK:
                        yield sink.take()
            done.append((entry, hashes.check()))
        with archive.open(member(MANIFEST), "w", force_zip64=True) as out:
            for line in manifest_lines(header, done, left_out):
                out.write(line.encode())
                if sink.pending >= CHUNK:
                    yield sink.take()
        archive.close()
        yield sink.take()
    finally:
        if current is not None:
            current.close()
        for _, _, chunks in pending:
            chunks.close()
