"""Level-triggered sync: make the index match what GitLab and the storage site say now.

Every function re-reads the truth and converges to it, so running one twice, concurrently,
late, or after a lost webhook is harmless. Only the default branch and tags (versions) are
indexed. A dataset is a project whose default branch holds `.dvc/config` (and, when
`DSHUB_NAMESPACES` is set, that lives in one of those namespaces).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from indexer.data.object_ids import ObjectKey, parse_object_key
from indexer.data.pointers import (
    PointerError,
    PointerOut,
    is_pointer_path,
    object_key,
    parse_pointer,
)
from indexer.data.presence import MAX_KEYS, check_presence
from indexer.data.storage import (
    Credentials,
    LocalObjectStore,
    ObjectMissing,
    ObjectStore,
    S3ObjectStore,
    StorageSite,
    open_objects,
)
from indexer.data.tracked_files import file_of, files_of_out, load_manifest
from indexer.errors import DshubError
from indexer.gitlab.permissions import Generation
from indexer.gitlab.reader import GitLabReader, GitRef, ProjectInfo
from indexer.store import Dataset, IndexedFile, IndexStore, Ref, RefInfo, StaleRef

log = logging.getLogger("dshub.sync")

STORAGE_SITE_VARIABLE = "DSHUB_STORAGE_SITE"
SIZE_FILL_CONCURRENCY = 8
POINTER_READS = 8  # pointer files read from GitLab at once by one sync
POINTER_BATCH = 256  # pointer files held in memory at once by one sync


@dataclass
class SyncContext:
    """Everything a sync needs: GitLab (service token), the index, storage sites, settings."""

    reader: GitLabReader
    store: IndexStore
    sites: Callable[[str], StorageSite | None]
    credentials: dict[str, Credentials] = field(default_factory=dict)
    generation: Generation | None = None
    namespaces: tuple[str, ...] = ()
    mr_notes: bool = False
    # Opens a dataset's store on a site; the service passes one that keeps opened stores
    # (an S3 store's boto3 client is slow to make). None: open anew each time.
    opener: Callable[[StorageSite, int], LocalObjectStore | S3ObjectStore] | None = None
    # Which of these keys a dataset's site holds, from this process's cached listing kept
    # true by the object log (`ListingCache.held`), or None; used for new objects only.
    held: Callable[[int, ObjectStore, list[str]], set[str] | None] | None = None

    def object_store(self, dataset: Dataset) -> LocalObjectStore | S3ObjectStore | None:
        """Byte access to the dataset's objects, or None when it has no (known) site."""
        if not dataset.storage_site:
            return None
        site = self.sites(dataset.storage_site)
        if site is None:
            return None
        if self.opener is not None:
            return self.opener(site, dataset.project_id)
        return open_objects(site, dataset.project_id, self.credentials)


def split_ref(ref: str) -> tuple[str, str | None]:
    """`refs/tags/v1` → ("v1", "tag"), `refs/heads/main` → ("main", "branch"), `v1` → ("v1", None)."""
    for prefix, kind in (("refs/tags/", "tag"), ("refs/heads/", "branch")):
        if ref.startswith(prefix):
            return ref[len(prefix) :], kind
    return ref, None


def _in_namespaces(info: ProjectInfo, namespaces: tuple[str, ...]) -> bool:
    if not namespaces:
        return True
    return any(info.namespace == ns or info.namespace.startswith(ns + "/") for ns in namespaces)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _dataset(info: ProjectInfo, site: str | None) -> Dataset:
    return Dataset(
        project_id=info.id,
        name=info.name,
        path_with_namespace=info.path_with_namespace,
        namespace=info.namespace,
        visibility=info.visibility,
        description=info.description,
        topics=info.topics,
        default_branch=info.default_branch,
        web_url=info.web_url,
        last_activity_at=_parse_time(info.last_activity_at),
        storage_site=site,
        archived=info.archived,  # GitLab is the truth: an archive made in its UI shows too
    )


# ------------------------------------------------------------------------------ projects


def sync_project(ctx: SyncContext, project_id: int) -> str:
    """Converge one project: dataset facts, then its default branch and every tag."""
    info = ctx.reader.project(project_id)
    if info is None or not _in_namespaces(info, ctx.namespaces) or not ctx.reader.is_dataset(info):
        removed = ctx.store.remove_dataset(project_id)
        return "removed" if removed else "not a dataset"
    site = ctx.reader.ci_variable(project_id, STORAGE_SITE_VARIABLE)
    dataset = _dataset(info, site)
    ctx.store.upsert_dataset(dataset)

    wanted: dict[str, GitRef] = {tag.name: tag for tag in ctx.reader.tags(project_id)}
    if info.default_branch:
        branch = ctx.reader.resolve_ref(project_id, info.default_branch)
        if branch is not None and branch.kind == "branch":
            wanted[info.default_branch] = branch
    indexed = {ref.ref: ref for ref in ctx.store.list_refs(project_id)}
    for name in sorted(set(indexed) - set(wanted)):
        ctx.store.remove_ref(project_id, name)
    for name, git_ref in sorted(wanted.items()):
        current = indexed.get(name)
        if (
            current is None
            or current.commit_sha != git_ref.commit_sha
            or current.status != "ok"
            or not git_ref.same_release(current)
        ):
            _index_ref(ctx, dataset, git_ref)
    fill_sizes(ctx, project_id)
    check_storage(ctx, project_id, everything=True)
    return "synced"


def remove_project(ctx: SyncContext, project_id: int) -> str:
    """Drop a project GitLab says is gone, unless GitLab still has it as a dataset."""
    if ctx.reader.project(project_id) is not None:
        # Events are hints: a destroy event for a project that still exists re-syncs it.
        return sync_project(ctx, project_id)
    return "removed" if ctx.store.remove_dataset(project_id) else "absent"


# ---------------------------------------------------------------------------------- refs


def sync_ref(
    ctx: SyncContext,
    project_id: int,
    ref: str,
    before: str | None = None,
    after: str | None = None,
    *,
    written: Mapping[str, bytes | None] | None = None,
) -> str:
    """Converge one ref: index it at its current commit, or remove it when it is gone.

    `before`/`after` come from a push event; they only enable the incremental path (read
    just the pointers that changed). The commit indexed is always the one GitLab has now.
    `written`: what dshub's own write committed as `after` (path → bytes, None = deleted);
    when the ref is still at `after`, those pointers are taken from it instead of read back
    from GitLab one request each.
    """
    ref, kind = split_ref(ref)
    dataset = ctx.store.get_dataset(project_id)
    info = ctx.reader.project(project_id)
    if dataset is None or info is None or dataset.default_branch != info.default_branch:
        return sync_project(ctx, project_id)
    git_ref = ctx.reader.resolve_ref(project_id, ref, kind)
    if git_ref is None:
        return "removed" if ctx.store.remove_ref(project_id, ref) else "absent"
    if git_ref.kind == "branch" and ref != dataset.default_branch:
        return "ignored (not the default branch)"
    current = ctx.store.get_ref(project_id, ref)
    if current and current.commit_sha == git_ref.commit_sha and current.status == "ok":
        same = _same_commit(ctx, project_id, git_ref, current)
        if same is not None:
            return same
    outcome = None
    if before and current and current.commit_sha == before and current.status == "ok":
        known = written if written and after == git_ref.commit_sha else {}
        outcome = _sync_incrementally(ctx, dataset, git_ref, before, known)
    if outcome is None and git_ref.kind == "branch" and not ctx.reader.is_dataset(info):
        return sync_project(ctx, project_id)  # `.dvc/config` is gone: no longer a dataset
    if outcome is None:
        _index_ref(ctx, dataset, git_ref)
        outcome = "indexed"
    fill_sizes(ctx, project_id)
    check_storage(ctx, project_id)
    return outcome


def _same_commit(ctx: SyncContext, project_id: int, git_ref: GitRef, current: Ref) -> str | None:
    """A ref already indexed at its commit: nothing to do, or only its Release changed.

    None when the ref moved meanwhile and must be indexed in full.
    """
    if git_ref.same_release(current):
        return "unchanged"
    # Same commit, new Release notes or author (a release webhook): the files stand.
    try:
        ctx.store.apply_ref_changes(
            project_id, _Problems().ref_info(git_ref), expected_commit=git_ref.commit_sha
        )
    except StaleRef:
        return None
    return "release updated"


def _sync_incrementally(
    ctx: SyncContext,
    dataset: Dataset,
    git_ref: GitRef,
    before: str,
    known: Mapping[str, bytes | None],
) -> str | None:
    """Apply only the changed pointers; None when a full sync is needed instead."""
    changed = ctx.reader.changed_paths(dataset.project_id, before, git_ref.commit_sha)
    if changed is None:
        return None
    if ".dvc/config" in changed and git_ref.kind == "branch":
        return sync_project(ctx, dataset.project_id)
    if _apply_changes(ctx, dataset, git_ref, before, changed, known=known):
        return "updated incrementally"
    return None


def remove_ref(ctx: SyncContext, project_id: int, ref: str) -> str:
    """Remove a ref GitLab says was deleted — after checking that it really is gone."""
    name, kind = split_ref(ref)
    if ctx.reader.resolve_ref(project_id, name, kind) is not None:
        return sync_ref(ctx, project_id, ref)
    stored = ctx.store.get_ref(project_id, name)
    if stored is None or (kind is not None and stored.kind != kind):
        return "absent"  # nothing indexed, or a ref of the other kind with the same name
    ctx.store.remove_ref(project_id, name)
    return "removed"


@dataclass
class _Problems:
    messages: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        log.warning("index problem: %s", message)
        self.messages.append(message)

    def ref_info(self, git_ref: GitRef) -> RefInfo:
        return RefInfo(
            ref=git_ref.name,
            kind="tag" if git_ref.kind == "tag" else "branch",
            commit_sha=git_ref.commit_sha,
            message=git_ref.message or "",
            ref_date=_parse_time(git_ref.created_at),
            status="partial" if self.messages else "ok",
            error="; ".join(self.messages[:20]) or None,
            release_notes=git_ref.release_notes,
            author_username=git_ref.author_username,
            author_name=git_ref.author_name,
        )


def _index_ref(ctx: SyncContext, dataset: Dataset, git_ref: GitRef) -> None:
    """Full sync of one ref: every pointer at its commit, manifests resolved from storage.

    A ref at a commit another ref of the dataset is already fully indexed at (the usual
    "tag the head of main") copies that ref's files instead of reading GitLab again.
    """
    twin = next(
        (
            ref
            for ref in ctx.store.list_refs(dataset.project_id)
            if ref.commit_sha == git_ref.commit_sha
            and ref.status == "ok"
            and ref.ref != git_ref.name
        ),
        None,
    )
    if twin is not None:
        ctx.store.replace_ref_files(
            dataset.project_id,
            _Problems().ref_info(git_ref),
            # Read fully before the write transaction starts (one connection per thread).
            list(ctx.store.iter_ref_files(dataset.project_id, twin.ref)),
        )
        return
    problems = _Problems()
    files: list[IndexedFile] = []
    pointer_paths = [
        path
        for path in ctx.reader.list_paths(dataset.project_id, git_ref.commit_sha)
        if is_pointer_path(path)
    ]
    for pointer_path, raw in _read_pointers(ctx, dataset, git_ref.commit_sha, pointer_paths):
        files.extend(_files_of_pointer(ctx, dataset, pointer_path, raw, problems))
    ctx.store.replace_ref_files(dataset.project_id, problems.ref_info(git_ref), files)


def _apply_changes(
    ctx: SyncContext,
    dataset: Dataset,
    git_ref: GitRef,
    before: str,
    changed: list[str],
    *,
    known: Mapping[str, bytes | None],
) -> bool:
    problems = _Problems()
    pointers = [path for path in changed if is_pointer_path(path)]
    upserts: list[IndexedFile] = []
    for pointer_path, raw in _read_pointers(ctx, dataset, git_ref.commit_sha, pointers, known):
        upserts.extend(_files_of_pointer(ctx, dataset, pointer_path, raw, problems))
    try:
        ctx.store.apply_ref_changes(
            dataset.project_id,
            problems.ref_info(git_ref),
            expected_commit=before,
            removed_pointers=pointers,
            upserts=upserts,
        )
    except StaleRef:
        return False
    return True


def pointer_files(
    ctx: SyncContext, dataset: Dataset, commit: str, pointer_path: str
) -> tuple[list[IndexedFile], list[str]]:
    """The files one pointer tracks at `commit` (directory entries from their manifests, the
    store's copy first) and the problems met; empty when the pointer does not exist there."""
    problems = _Problems()
    raw = ctx.reader.read_file(dataset.project_id, pointer_path, commit)
    files = list(_files_of_pointer(ctx, dataset, pointer_path, raw, problems))
    return files, problems.messages


def _read_pointers(
    ctx: SyncContext,
    dataset: Dataset,
    commit: str,
    paths: list[str],
    known: Mapping[str, bytes | None] | None = None,
) -> Iterator[tuple[str, bytes | None]]:
    """Each pointer file's bytes at `commit`, in order: from `known` (what was committed
    there, see `sync_ref`), else read from GitLab `POINTER_READS` at a time (one request per
    file: a thousand pointers read one by one took seconds), a `POINTER_BATCH` at a time so
    memory stays bounded."""
    known = known or {}
    for path in paths:
        if path in known:
            yield path, known[path]
    paths = [path for path in paths if path not in known]
    for start in range(0, len(paths), POINTER_BATCH):
        batch = paths[start : start + POINTER_BATCH]
        if len(batch) == 1:
            yield batch[0], ctx.reader.read_file(dataset.project_id, batch[0], commit)
            continue
        with ThreadPoolExecutor(min(POINTER_READS, len(batch))) as pool:
            read = pool.map(
                lambda path: ctx.reader.read_file(dataset.project_id, path, commit), batch
            )
            yield from zip(batch, list(read), strict=True)


def _files_of_pointer(
    ctx: SyncContext, dataset: Dataset, pointer_path: str, raw: bytes | None, problems: _Problems
) -> Iterator[IndexedFile]:
    if raw is None:
        return
    try:
        outs = parse_pointer(raw, pointer_path)
    except PointerError as exc:
        problems.add(exc.message)
        return
    for out in outs:
        if out.is_dir and out.stored_elsewhere is None:
            yield from _directory_entries(ctx, dataset, out, problems)
        else:
            yield file_of(out)


def _directory_entries(
    ctx: SyncContext, dataset: Dataset, out: PointerOut, problems: _Problems
) -> Iterator[IndexedFile]:
    objects = ctx.object_store(dataset)
    if objects is None and not ctx.store.has_manifest(out.md5):
        problems.add(
            f"{out.pointer_path}: directory {out.path} cannot be listed: the dataset has no "
            f"known storage site ({STORAGE_SITE_VARIABLE} is unset or names an unknown site)"
        )
        yield from files_of_out(out, None)
        return
    try:
        rows = load_manifest(ctx.store, objects, out, dataset.storage_site)
    except (ObjectMissing, PointerError) as exc:
        problems.add(exc.message)
        yield from files_of_out(out, None)
        return
    yield from files_of_out(out, rows)


# ---------------------------------------------------------------------------------- sizes


def fill_sizes(ctx: SyncContext, project_id: int | None = None, limit: int = 5000) -> int:
    """Fill unknown sizes of directory entries with bounded-concurrency HEAD requests."""
    pending = [row for row in ctx.store.unsized_md5s(limit) if project_id in (None, row[0])]
    if not pending:
        return 0
    stores: dict[int, Any] = {}
    for pid, _, _ in pending:
        if pid not in stores:
            dataset = ctx.store.get_dataset(pid)
            stores[pid] = ctx.object_store(dataset) if dataset else None

    def head(row: tuple[int, str, str]) -> tuple[str, int] | None:
        pid, md5, hash_name = row
        objects = stores.get(pid)
        if objects is None:
            return None
        try:
            meta = objects.head(object_key("", md5, hash_name, is_dir=False))
        except DshubError:
            return None
        return (md5, meta.size) if meta else None

    with ThreadPoolExecutor(max_workers=SIZE_FILL_CONCURRENCY) as pool:
        sizes = dict(found for found in pool.map(head, pending) if found)
    return ctx.store.set_sizes(sizes) if sizes else 0


# ------------------------------------------------------------------------------ presence


def check_storage(ctx: SyncContext, project_id: int, *, everything: bool = False) -> int | None:
    """Record whether the storage site holds each object the dataset's files name
    (`IndexedFile.in_storage`), asking the site in batches (`indexer.data.presence`), never once
    per row at read time. A ref sync checks the objects not known to be stored (new ones,
    and those missing last time); a project sync (reconcile) re-checks every object, so bytes
    lost from the site show. Returns the number of files whose mark changed, None when the
    site could not answer (the marks stay as they were)."""
    dataset = ctx.store.get_dataset(project_id)
    try:
        objects = ctx.object_store(dataset) if dataset is not None else None
    except DshubError as exc:  # a site this process cannot open (e.g. its credentials)
        log.warning("presence of dataset %s not checked: %s", project_id, exc.message)
        return None
    if objects is None:
        return ctx.store.forget_presence(project_id)
    keys = ctx.store.iter_presence_keys(project_id, unchecked_only=not everything)
    changed = 0
    batch: list[ObjectKey] = []
    try:
        for md5, hash_name in keys:
            try:
                parsed = parse_object_key(object_key("", md5, hash_name, is_dir=False))
            except PointerError:
                continue  # an entry sync recorded as broken; it has no object to look for
            if parsed is not None:
                batch.append(parsed)
            if len(batch) >= MAX_KEYS:
                changed += _record_presence(ctx, project_id, objects, batch, fresh=not everything)
                batch = []
        if batch:
            changed += _record_presence(ctx, project_id, objects, batch, fresh=not everything)
    except DshubError as exc:
        log.warning("presence check of dataset %s failed: %s", project_id, exc.message)
        return None
    return changed


def _record_presence(
    ctx: SyncContext, project_id: int, objects: Any, keys: list[ObjectKey], *, fresh: bool
) -> int:
    """Ask which of `keys` the site holds and record it. Objects not known to be stored
    (`fresh`) are first looked up in the cached listing (`ctx.held`): an upload through dshub
    just put them there. A reconcile's full re-check always asks the site."""
    present = (
        ctx.held(project_id, objects, [key.key for key in keys]) if fresh and ctx.held else None
    )
    if present is not None and len(present) == len(keys):
        return ctx.store.set_presence(project_id, {(k.md5, k.hash_name): True for k in keys})
    missing: set[str] = set()
    for checked in check_presence(objects, keys):
        missing |= checked.missing
    states = {(key.md5, key.hash_name): key.key not in missing for key in keys}
    return ctx.store.set_presence(project_id, states)


# ------------------------------------------------------------------------------ reconcile


@dataclass
class ReconcileReport:
    """What a reconcile did: projects seen, synced, removed, and per-project failures."""

    seen: int = 0
    synced: int = 0
    removed: int = 0
    failed: dict[int, str] = field(default_factory=dict)


def reconcile(ctx: SyncContext, project_id: int | None = None) -> ReconcileReport:
    """Walk every project the service token sees (or one) and repair any drift in the index."""
    report = ReconcileReport()
    project_ids = [project_id] if project_id is not None else []
    if project_id is None:
        project_ids = [info.id for info in ctx.reader.projects()]
        for stale in sorted(ctx.store.dataset_ids() - set(project_ids)):
            if ctx.reader.project(stale) is None:
                ctx.store.remove_dataset(stale)
                report.removed += 1
            else:
                project_ids.append(stale)
    for pid in project_ids:
        report.seen += 1
        try:
            outcome = sync_project(ctx, pid)
        except DshubError as exc:
            report.failed[pid] = exc.message
            log.warning("reconcile of project %s failed: %s", pid, exc.message)
            continue
        if outcome == "removed":
            report.removed += 1
        elif outcome == "synced":
            report.synced += 1
    return report


def invalidate_permissions(ctx: SyncContext) -> str:
    """Membership or visibility changed somewhere: every cached permission answer is dropped."""
    if ctx.generation is not None:
        ctx.generation.bump()
    return "invalidated"
