"""Resolve (dataset, ref, path) to bytes: a DVC object, an entry of a tracked directory, a git file.

A ref (tag, branch, full or short commit sha; default branch when absent) becomes a commit.
When the index holds a ref at that same commit, files and folder levels come from the index;
otherwise they are read live from GitLab (pointer files) and the `.dir` manifest in storage,
exactly as `dvc get` finds a file: `<path>.dvc`, else the deepest tracked directory whose
`path` contains the requested path. Objects are only ever looked up under the dataset's own
prefix on its own storage site (`DSHUB_STORAGE_SITE`); `.dvc/config` is never read.

Refs and paths arrive from URLs, so both are validated here: anything that could traverse,
look like an option, or smuggle control characters is refused with `InvalidInput` (400).
"""

from __future__ import annotations

import heapq
import posixpath
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from urllib.parse import unquote

from indexer.data.pointers import (
    PointerError,
    PointerOut,
    is_pointer_path,
    media_type,
    object_key,
    parse_pointer,
)
from indexer.data.storage import (
    Credentials,
    LocalObjectStore,
    S3ObjectStore,
    StorageSite,
    open_objects,
)
from indexer.data.tracked_files import ELSEWHERE, IMPORTED, file_of, files_of_out, load_manifest
from indexer.errors import DshubError, InvalidInput, NotFound
from indexer.gitlab.reader import GitLabReader, TreeEntry
from indexer.read.lru import LruCache
from indexer.store import Dataset, IndexedFile, IndexStore, ManifestRow

MAX_REF = 255
MAX_PATH = 4096
MAX_SEGMENT = 255
FULL_SHA = re.compile(r"[0-9a-f]{40}")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_DRIVE = re.compile(r"[A-Za-z]:")
REF_TTL = 5.0  # seconds a tag/branch → commit answer is reused (tags can move)
SITE_TTL = 30.0
LIVE_POINTER_READERS = 8
MERGE_SKIP_GIT_ITEMS = 100  # more git entries in a level than this: merge from its start

ObjectStore = LocalObjectStore | S3ObjectStore


class NoStorageSite(DshubError):
    """The dataset names no storage site, or one that is not registered."""

    status = 502
    code = "no_storage_site"
    exit_code = 7


class NotStoredHere(DshubError):
    """The path is tracked, but its bytes are not in this dataset's storage (an import, or an error)."""

    status = 422
    code = "not_stored_here"
    exit_code = 2


# ------------------------------------------------------------------------------ validation


def validate_ref(ref: str) -> str:
    """A ref as git would accept it: no option-like names, `..`, control characters or globs."""
    if not ref or len(ref) > MAX_REF:
        raise InvalidInput(f"ref must be 1-{MAX_REF} characters")
    if not _is_text(ref):
        raise InvalidInput("ref is not valid text (it holds a lone surrogate)")
    if ref.startswith(("-", "/", ".")) or ref.endswith(("/", ".", ".lock")):
        raise InvalidInput(f"ref {_show(ref)} is not a valid tag, branch or commit")
    if ".." in ref or "//" in ref or "@{" in ref or _REF_FORBIDDEN.search(ref):
        raise InvalidInput(f"ref {_show(ref)} is not a valid tag, branch or commit")
    return ref


def validate_path(path: str, *, allow_root: bool = False) -> str:
    """A dataset path relative to its root: no traversal (also percent-encoded), NUL, backslash."""
    if len(path) > MAX_PATH:
        raise InvalidInput(f"path is longer than {MAX_PATH} characters")
    decoded = path
    _check_path_text(decoded, path)
    for _ in range(3):  # %2e%2e, %252e%252e, %25252e: the text and three layers of encoding
        previous, decoded = decoded, unquote(decoded)
        if decoded == previous:
            break
        _check_path_text(decoded, path)
    stripped = path.rstrip("/") if allow_root else path
    if not stripped:
        if allow_root:
            return ""
        raise InvalidInput("path is empty")
    if stripped.startswith("/"):
        raise InvalidInput(f"path {_show(path)} must be relative to the dataset root")
    segments = stripped.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise InvalidInput(f"path {_show(path)} must not contain empty, '.' or '..' segments")
    if any(len(s.encode()) > MAX_SEGMENT for s in segments):
        raise InvalidInput(f"a path segment is longer than {MAX_SEGMENT} bytes")
    return stripped


def validate_entry_name(path: str) -> str:
    """A name a download writes to a client's disk (a zip entry, a `dshub get` file): the
    path rules, and no segment that Windows reads as a drive (`C:x`) or stream (`a:b`)."""
    clean = validate_path(path)
    if any(_DRIVE.match(segment) for segment in clean.split("/")):
        raise InvalidInput(f"path {_show(path)} has a segment starting with a drive letter")
    return clean


def _check_path_text(text: str, original: str) -> None:
    if not _is_text(text):
        raise InvalidInput("path is not valid text (it holds a lone surrogate)")
    if "\\" in text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise InvalidInput(f"path {_show(original)} contains a backslash or a control character")
    if re.match(r"^[A-Za-z]:", text):
        raise InvalidInput(f"path {_show(original)} must be relative to the dataset root")
    if any(s in (".", "..") for s in text.split("/")) or text.startswith("/"):
        raise InvalidInput(f"path {_show(original)} must not leave the dataset root")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _show(value: str) -> str:
    return repr(value[:80])


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Commit:
    """The commit a requested ref names; `immutable` when the ref was a full commit sha."""

    ref: str
    sha: str
    immutable: bool


@dataclass(frozen=True)
class DvcObject:
    """A DVC-tracked file: its object `key` relative to the dataset's prefix, and its hash."""

    path: str
    md5: str
    hash_name: str
    size: int | None
    media_type: str
    key: str
    in_directory: bool
    in_storage: bool | None = None  # as sync's batch presence check found it (None: unknown)
    pointer_path: str | None = None  # the `.dvc` file in git that tracks it


@dataclass(frozen=True)
class GitFile:
    """A file stored in git itself; `blob_id` is git's sha1 of its bytes."""

    path: str
    blob_id: str
    size: int
    media_type: str


@dataclass(frozen=True)
class Folder:
    """A directory (in git, DVC-tracked, or both)."""

    path: str


Target = DvcObject | GitFile | Folder


@dataclass(frozen=True)
class TreeItem:
    """One entry of a folder level: `type` is `file` or `dir`; `source` is `dvc` or `git`."""

    name: str
    path: str
    type: str
    source: str
    size: int | None = None
    md5: str | None = None
    hash_name: str | None = None
    media_type: str | None = None
    blob_id: str | None = None
    in_storage: bool | None = None  # DVC files: the site held the object at the last sync

    @property
    def order(self) -> str:
        """Sort key shared with the index: a directory sorts as `name/`."""
        return self.name + "/" if self.type == "dir" else self.name


# ------------------------------------------------------------------------------ resolver


class Resolver:
    """Resolves refs and paths of datasets, from the index when it can, else live.

    Thread-safe; keeps small caches (ref → commit for `REF_TTL` seconds, sites, object stores).
    """

    def __init__(
        self,
        store: IndexStore,
        reader: GitLabReader,
        sites: Callable[[str], StorageSite | None],
        credentials: Mapping[str, Credentials],
    ) -> None:
        self.store = store
        self.reader = reader
        self._sites = sites
        self.credentials = credentials
        self._lock = threading.Lock()
        self._refs: dict[tuple[int, str], tuple[str, float]] = {}
        self._site_cache: dict[str, tuple[StorageSite | None, float]] = {}
        self._object_stores: LruCache[tuple[StorageSite, int], ObjectStore] = LruCache(256)

    # ---------------------------------------------------------------- refs

    def commit(self, dataset: Dataset, ref: str | None) -> Commit:
        """The commit `ref` names now (default branch when None); `NotFound` naming the ref."""
        if not ref:
            if not dataset.default_branch:
                raise NotFound(f"dataset {dataset.project_id} has no default branch")
            ref = dataset.default_branch
        validate_ref(ref)
        pid = dataset.project_id
        if FULL_SHA.fullmatch(ref) and any(r.commit_sha == ref for r in self.store.list_refs(pid)):
            return Commit(ref, ref, True)
        now = time.monotonic()
        with self._lock:
            cached = self._refs.get((pid, ref))
        if cached is not None and (cached[1] > now or FULL_SHA.fullmatch(ref)):
            return Commit(ref, cached[0], bool(FULL_SHA.fullmatch(ref)))
        sha = self.reader.commit_sha(pid, ref)
        if sha is None:
            raise NotFound(f"ref {ref!r} not found in dataset {pid}")
        with self._lock:
            if len(self._refs) > 10_000:
                self._refs.clear()
            self._refs[(pid, ref)] = (sha, now + REF_TTL)
        return Commit(ref, sha, sha == ref)

    def forget_ref(self, project_id: int, ref: str) -> None:
        """Drop the cached commit of `ref` (after this process moved it with a write)."""
        with self._lock:
            self._refs.pop((project_id, ref), None)

    def indexed_ref(self, dataset: Dataset, commit: Commit) -> str | None:
        """The name of a fully indexed ref at `commit` (the requested name preferred), or None."""
        matches = [
            r.ref
            for r in self.store.list_refs(dataset.project_id)
            if r.commit_sha == commit.sha and r.status == "ok"
        ]
        if commit.ref in matches:
            return commit.ref
        return matches[0] if matches else None

    # ---------------------------------------------------------------- storage

    def site(self, dataset: Dataset) -> StorageSite:
        """The dataset's storage site; `NoStorageSite` when it has none (or an unknown one)."""
        name = dataset.storage_site
        site = None
        if name:
            now = time.monotonic()
            with self._lock:
                cached = self._site_cache.get(name)
            if cached is not None and cached[1] > now:
                site = cached[0]
            else:
                site = self._sites(name)
                with self._lock:
                    self._site_cache[name] = (site, now + SITE_TTL)
        if site is None:
            raise NoStorageSite(
                f"dataset {dataset.project_id} has no usable storage site (DSHUB_STORAGE_SITE "
                f"is {'unset' if not name else repr(name) + ', which is not registered'})"
            )
        return site

    def objects(self, dataset: Dataset) -> ObjectStore:
        """Byte access confined to `<site prefix>/<project_id>/` on the dataset's own site."""
        site = self.site(dataset)
        return self._object_stores.get_or_make(
            (site, dataset.project_id),
            lambda: (open_objects(site, dataset.project_id, self.credentials), True),
        )

    # ---------------------------------------------------------------- files

    def resolve(self, dataset: Dataset, commit: Commit, path: str) -> Target:
        """What `path` is at `commit`: a DVC object, a git file or a folder; `NotFound` otherwise."""
        indexed = self.indexed_ref(dataset, commit)
        found = (
            self._from_index(dataset, indexed, path)
            if indexed
            else self._live(dataset, commit, path)
        )
        if found is not None:
            return found
        blob = self.reader.blob_info(dataset.project_id, path, commit.sha)
        if blob is not None:
            return GitFile(path, blob.blob_id, blob.size, media_type(path))
        if next(self.reader.list_tree(dataset.project_id, commit.sha, path), None) is not None:
            return Folder(path)
        raise NotFound(f"{path} not found in dataset {dataset.project_id} at {commit.ref!r}")

    def _from_index(self, dataset: Dataset, ref: str, path: str) -> Target | None:
        found = self.store.get_file(dataset.project_id, ref, path)
        if found is not None:
            return _object_of(found)
        if next(self.store.iter_directory(dataset.project_id, ref, path), None) is not None:
            return Folder(path)
        return None

    def _live(self, dataset: Dataset, commit: Commit, path: str) -> Target | None:
        for out in self._pointer_outs(dataset, commit, f"{path}.dvc"):
            if out.path == path:
                return Folder(path) if out.is_dir else _object_of(file_of(out, path))
        for directory in _ancestors(path):
            for out in self._pointer_outs(dataset, commit, f"{directory}.dvc"):
                if out.path == directory and out.is_dir:
                    return self._in_manifest(dataset, out, path[len(directory) + 1 :])
        return None

    def _pointer_outs(self, dataset: Dataset, commit: Commit, pointer: str) -> list[PointerOut]:
        raw = self.reader.read_file(dataset.project_id, pointer, commit.sha)
        if raw is None:
            return []
        try:
            return parse_pointer(raw, pointer)
        except PointerError:
            return []

    def _in_manifest(self, dataset: Dataset, out: PointerOut, relpath: str) -> Target | None:
        if out.stored_elsewhere is not None:
            raise NotStoredHere(f"{out.path} is {out.stored_elsewhere}; not stored here")
        below = relpath + "/"
        for row in self.manifest(dataset, out):
            if row.relpath == relpath:
                path = f"{out.path}/{relpath}"
                return _object_of(file_of(out, path, row.md5, in_directory=True))
            if row.relpath.startswith(below):
                return Folder(f"{out.path}/{relpath}")
        return None

    def manifest(self, dataset: Dataset, out: PointerOut) -> Iterator[ManifestRow]:
        """A tracked directory's entries: stored in the index once, read from storage if not."""
        objects = None if self.store.has_manifest(out.md5) else self.objects(dataset)
        return load_manifest(self.store, objects, out, dataset.storage_site)

    def tracked_files(self, dataset: Dataset, commit: Commit, path: str = "") -> list[IndexedFile]:
        """Every DVC-tracked file at `commit` at or below `path` ('' = all), by path: the
        index's records when it holds the commit, else read live as the indexer would
        (every pointer, directory entries from their manifests)."""
        pid = dataset.project_id
        indexed = self.indexed_ref(dataset, commit)
        if indexed:
            found: Iterable[IndexedFile] = self.store.iter_ref_files(pid, indexed)
        else:
            pointers = [p for p in self.reader.list_paths(pid, commit.sha) if is_pointer_path(p)]
            with ThreadPoolExecutor(max_workers=LIVE_POINTER_READERS) as pool:
                parsed = list(pool.map(lambda p: self._pointer_outs(dataset, commit, p), pointers))
            found = [
                record
                for outs in parsed
                for out in outs
                for record in files_of_out(
                    out,
                    self.manifest(dataset, out)
                    if out.is_dir and out.stored_elsewhere is None
                    else None,
                )
            ]
        below = path + "/"
        chosen = [f for f in found if not path or f.path == path or f.path.startswith(below)]
        return sorted(chosen, key=lambda f: f.path)

    # ---------------------------------------------------------------- folders

    def list_level(
        self, dataset: Dataset, commit: Commit, path: str, offset: int = 0
    ) -> Iterator[TreeItem]:
        """One folder level merging git and DVC entries, in path order, from entry number
        `offset` on; `NotFound` if there is no such folder. From the index, the entries before
        `offset` are skipped by the store (`IndexStore.iter_directory`), not built."""
        pid = dataset.project_id
        git_items = sorted(
            (_git_item(e) for e in self.reader.list_tree(pid, commit.sha, path)),
            key=lambda item: item.order,
        )
        plain = [item for item in git_items if not _is_pointer(item)]
        indexed = self.indexed_ref(dataset, commit)
        merged: Iterator[TreeItem]
        if indexed:
            merged, skip = self._indexed_level(pid, indexed, path, plain, offset)
        else:
            live = self._live_level(dataset, commit, path, git_items)
            merged, skip = _merge(iter(plain), iter(live)), offset
        rest = islice(merged, skip, None)
        first = next(rest, None)
        if first is None:
            if path and not (offset and self._level_exists(dataset, commit, path, plain)):
                raise NotFound(f"no folder {path} in dataset {pid} at {commit.ref!r}")
            return
        yield first
        yield from rest

    def _dvc_level(self, pid: int, ref: str, path: str, offset: int) -> Iterator[TreeItem]:
        for name, found in self.store.iter_directory(pid, ref, path, offset):
            yield _tree_item(path, name, found)

    def _indexed_level(
        self, pid: int, ref: str, path: str, plain: list[TreeItem], offset: int
    ) -> tuple[Iterator[TreeItem], int]:
        """The merged level from about `offset` on, and how many of its items to drop still.

        DVC entries before `offset` are skipped in the store: all but as many as there are git
        entries of their own (not also DVC entries, which merge into one), whose place among
        the DVC entries is then counted."""
        start = offset - len(plain)
        if start <= 0 or len(plain) > MERGE_SKIP_GIT_ITEMS:
            return _merge(iter(plain), self._dvc_level(pid, ref, path, 0)), offset
        own = [item for item in plain if not self._in_index(pid, ref, item)]
        start = offset - len(own)
        if start <= 0:
            return _merge(iter(plain), self._dvc_level(pid, ref, path, 0)), offset
        dvc = self._dvc_level(pid, ref, path, start)
        first = next(dvc, None)
        if first is None:  # the offset is past the DVC entries: walk from the start
            return _merge(iter(plain), self._dvc_level(pid, ref, path, 0)), offset
        before = sum(1 for item in own if item.order < first.order)
        later = [item for item in plain if item.order >= first.order]
        # `first` is entry number start + before of the merged level.
        return _merge(iter(later), chain([first], dvc)), offset - start - before

    def _in_index(self, pid: int, ref: str, item: TreeItem) -> bool:
        """Whether the index has an entry of the same name and kind at this level."""
        if item.type == "file":
            return self.store.get_file(pid, ref, item.path) is not None
        return next(self.store.iter_directory(pid, ref, item.path), None) is not None

    def _level_exists(
        self, dataset: Dataset, commit: Commit, path: str, plain: list[TreeItem]
    ) -> bool:
        return bool(plain) or next(self.list_level(dataset, commit, path), None) is not None

    def _live_level(
        self, dataset: Dataset, commit: Commit, path: str, git_items: list[TreeItem]
    ) -> list[TreeItem]:
        for directory in [path, *_ancestors(path)] if path else []:
            for out in self._pointer_outs(dataset, commit, f"{directory}.dvc"):
                if out.path == directory and out.is_dir and out.stored_elsewhere is None:
                    return self._manifest_level(dataset, out, path)
        items: list[TreeItem] = []
        pointers = [item.path for item in git_items if _is_pointer(item)]
        # Web uploads write one pointer per file: read a level's pointers concurrently.
        with ThreadPoolExecutor(max_workers=LIVE_POINTER_READERS) as pool:
            parsed = pool.map(lambda p: self._pointer_outs(dataset, commit, p), pointers)
            outs = [out for group in parsed for out in group]
        for out in outs:
            if posixpath.dirname(out.path) == path:
                name = posixpath.basename(out.path)
                if out.is_dir:
                    items.append(TreeItem(name, out.path, "dir", "dvc"))
                else:
                    items.append(_tree_item(path, name, file_of(out)))
        return sorted(items, key=lambda item: item.order)

    def _manifest_level(self, dataset: Dataset, out: PointerOut, path: str) -> list[TreeItem]:
        relative = path[len(out.path) + 1 :] if path != out.path else ""
        prefix = relative + "/" if relative else ""
        items: dict[str, TreeItem] = {}
        for row in self.manifest(dataset, out):
            if not row.relpath.startswith(prefix):
                continue
            name, slash, _ = row.relpath[len(prefix) :].partition("/")
            if name in items:
                continue
            full = f"{path}/{name}"
            if slash:
                items[name] = TreeItem(name, full, "dir", "dvc")
            else:
                items[name] = _tree_item(path, name, file_of(out, full, row.md5, in_directory=True))
        return sorted(items.values(), key=lambda item: item.order)


# ------------------------------------------------------------------------------ helpers


def _ancestors(path: str) -> list[str]:
    """`a/b/c` → [`a/b`, `a`]: deepest first, like DVC's longest-prefix lookup."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _object_of(found: IndexedFile) -> DvcObject:
    if found.status in (IMPORTED, ELSEWHERE):
        raise NotStoredHere(f"{found.path} is {found.note}; its bytes are not in this dataset")
    if found.status != "ok":
        raise NotStoredHere(f"{found.path} cannot be read: {found.note or found.status}")
    return DvcObject(
        path=found.path,
        md5=found.md5,
        hash_name=found.hash_name,
        size=found.size,
        media_type=found.media_type,
        key=object_key("", found.md5, found.hash_name, is_dir=False),
        in_directory=found.in_directory,
        in_storage=found.in_storage,
        pointer_path=found.pointer_path,
    )


def _tree_item(directory: str, name: str, found: IndexedFile | None) -> TreeItem:
    path = f"{directory}/{name}" if directory else name
    if found is None:
        return TreeItem(name, path, "dir", "dvc")
    return TreeItem(
        name,
        path,
        "file",
        "dvc",
        size=found.size,
        md5=found.md5,
        hash_name=found.hash_name,
        media_type=found.media_type,
        in_storage=found.in_storage,
    )


def _git_item(entry: TreeEntry) -> TreeItem:
    if entry.type == "tree":
        return TreeItem(entry.name, entry.path, "dir", "git")
    return TreeItem(
        entry.name,
        entry.path,
        "file",
        "git",
        hash_name="git-sha1",
        media_type=media_type(entry.path),
        blob_id=entry.id,
    )


def _is_pointer(item: TreeItem) -> bool:
    return item.type == "file" and item.name.endswith(".dvc") and item.name != ".dvc"


def _merge(git: Iterator[TreeItem], dvc: Iterator[TreeItem]) -> Iterator[TreeItem]:
    """Merge two levels in path order; a name in both is one entry (DVC's facts win)."""
    previous: TreeItem | None = None
    for item in heapq.merge(dvc, git, key=lambda i: i.order):
        if previous is not None and previous.order == item.order:
            continue  # dvc items come first for equal keys (heapq.merge is stable)
        previous = item
        yield item
