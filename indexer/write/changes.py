"""Plan a change to a dataset as `dvc add` / `dvc remove` would make it, without a workspace.

A `Workspace` starts from the repository at one commit (`RepoView`) and the dataset's
objects (for `.dir` manifests); `put`, `put_directory`, `remove` and `move` change it in
memory, refusing what DVC or git would not allow (409 with the reason). `finish()` gives the
GitLab commit actions (each update and delete carrying the file's `last_commit_id`), the new
manifests to store first, and `claims`: what each path the caller owns (a file's pointer, a
tracked directory's entry) looked like at the base — a retry on a moved branch head
re-plans from the new head and must find the same claims, else the same path was changed by
both and nothing is written. Shared files (`.gitignore`, directory pointers, manifests) are
simply derived again.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dvc.utils.serialize import parse_yaml
from dvc_data.hashfile.tree import Tree

from indexer.data.pointers import (
    PointerError,
    PointerOut,
    iter_manifest,
    object_key,
    parse_dvc_file,
    parse_dvc_lock,
)
from indexer.data.storage import ObjectMissing, ObjectStore
from indexer.errors import InvalidInput, NotFound
from indexer.write.errors import WriteConflict
from indexer.write.layout import (
    GITIGNORE,
    DirectoryMeta,
    directory_pointer,
    file_pointer,
    gitignore_add,
    gitignore_path,
    gitignore_remove,
    is_ignored,
    manifest_bytes,
    new_tree,
    tree_apply,
    tree_entries,
    tree_of,
    tree_remove,
)
from indexer.write.repository import FileAt, RepoView

MANIFEST_LIMIT = 256 * 1024 * 1024
RESERVED_NAMES = (".gitignore", ".dvcignore", "dvc.yaml", "dvc.lock", ".gitattributes")


@dataclass(frozen=True)
class Outcome:
    """What happened to one path: created, replaced, unchanged, deleted or moved."""

    path: str
    action: str
    md5: str | None = None
    size: int | None = None
    tracked_by: str | None = None  # the pointer file that tracks the path afterwards

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "action": self.action,
            "md5": self.md5,
            "size": self.size,
            "tracked_by": self.tracked_by,
        }


@dataclass
class Plan:
    """The outcome of a planned change (see the module docstring)."""

    actions: list[dict[str, Any]]
    manifests: list[tuple[str, bytes]]  # (`<md5>.dir`, bytes) to store before the commit
    claims: dict[str, str | None]
    outcomes: list[Outcome]
    pointers_written: int


@dataclass
class _Dir:
    path: str
    pointer: FileAt
    out: PointerOut
    tree: Tree
    base_entries: dict[str, str]
    meta: DirectoryMeta
    oid: str
    changed: bool = False


@dataclass
class _GitChange:
    original: FileAt | None
    content: bytes | None


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _ancestors(path: str) -> list[str]:
    """Proper ancestor folders of `path`, shortest first (`a/b/c` → `a`, `a/b`)."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def check_name(path: str) -> None:
    """Refuse data paths that would collide with what DVC and git write themselves."""
    name = posixpath.basename(path)
    if name.endswith(".dvc") or name in RESERVED_NAMES or path.split("/", 1)[0] == ".dvc":
        raise InvalidInput(
            f"{path!r}: names ending in .dvc, DVC's and git's own files and .dvc/ are not "
            "data paths"
        )


class Workspace:
    """An in-memory change of the repository at `view.sha` (see the module docstring)."""

    def __init__(self, view: RepoView, objects: ObjectStore | None) -> None:
        self.view = view
        self.objects = objects
        self.git: dict[str, _GitChange] = {}
        self.dirs: dict[str, _Dir] = {}
        self.claims: dict[str, str | None] = {}
        self.outcomes: list[Outcome] = []
        self.pointers_written = 0
        self.new_trees: list[Tree] = []
        self.size_of: Callable[[str], int | None] = self._stored_size

    # ------------------------------------------------------------------ git files

    def _read(self, path: str) -> bytes | None:
        if path in self.git:
            return self.git[path].content
        found = self.view.file(path)
        return None if found is None else found.content

    def _write(self, path: str, content: bytes | None) -> None:
        if path not in self.git:
            self.git[path] = _GitChange(self.view.file(path), None)
        self.git[path].content = content

    def _last_commit(self, path: str) -> str:
        original = self.view.file(path)
        return original.last_commit_id if original is not None else ""

    def _claim_pointer(self, pointer: str) -> None:
        key = f"pointer:{pointer}"
        if key not in self.claims:
            original = self.view.file(pointer)
            self.claims[key] = _sha(original.content if original else None)

    # ------------------------------------------------------------------ rules

    def _pointer_outs(self, pointer: str, text: bytes) -> PointerOut:
        try:
            outs = parse_dvc_file(text, pointer)
        except PointerError as exc:
            raise WriteConflict(f"{exc.message}; fix the pointer first") from None
        if len(outs) != 1:
            raise WriteConflict(f"{pointer} tracks {len(outs)} outputs; dshub changes one")
        out = outs[0]
        if out.imported:
            raise WriteConflict(
                f"{out.path} is imported from {out.import_url or 'another repository'} "
                "(dvc import): its data is not this dataset's; update it with `dvc update`"
            )
        return out

    def _tracked_dir(self, path: str) -> _Dir | None:
        """The tracked directory `path` lies in, loaded; None when it is in none."""
        for ancestor in _ancestors(path):
            if ancestor in self.dirs:
                return self.dirs[ancestor]
            pointer = f"{ancestor}.dvc"
            text = self._read(pointer)
            if text is None:
                continue
            out = self._pointer_outs(pointer, text)
            if out.path != ancestor:
                raise WriteConflict(f"{pointer} tracks {out.path!r}, not {ancestor!r}")
            if not out.is_dir:
                raise WriteConflict(f"{ancestor} is a file tracked by DVC, not a folder")
            if out.legacy:
                raise WriteConflict(
                    f"{ancestor} is a DVC 2 directory (its pointer has no `hash: md5`); "
                    f"re-add it with DVC 3 (`dvc pull {ancestor} && dvc add {ancestor}`) "
                    "before changing its files through dshub"
                )
            entries = list(self._manifest(out))
            tree = tree_of(entries)
            loaded = _Dir(
                ancestor,
                FileAt(pointer, text, self._last_commit(pointer)),
                out,
                tree,
                {e.relpath: e.md5 for e in entries},
                DirectoryMeta(out.size, out.nfiles or len(entries)),
                out.oid,
            )
            self.dirs[ancestor] = loaded
            return loaded
        return None

    def _manifest(self, out: PointerOut) -> Iterator[Any]:
        if self.objects is None:
            raise WriteConflict("the dataset has no storage site to read its manifests from")
        key = object_key("", out.md5, out.hash_name, True)
        try:
            data = self.objects.read_bytes(key, MANIFEST_LIMIT)
        except ObjectMissing:
            raise WriteConflict(
                f"the manifest of tracked directory {out.path} ({out.oid}) is missing from the "
                "storage site; push it (`dvc push`) before changing the directory"
            ) from None
        try:
            yield from iter_manifest(io.BytesIO(data), out.oid)
        except PointerError as exc:
            raise WriteConflict(exc.message) from None

    def _stored_size(self, md5: str) -> int | None:
        if self.objects is None:
            return None
        meta = self.objects.head(object_key("", md5, "md5", False))
        return None if meta is None else meta.size

    def _check_not_pipeline_output(self, path: str) -> None:
        directories = ["", *_ancestors(path)]
        for directory in directories:
            level = self.view.level(directory)
            for name in ("dvc.lock", "dvc.yaml"):
                if level.get(name) != "blob":
                    continue
                where = posixpath.join(directory, name)
                for out in self._stage_outputs(where, directory):
                    if path == out or path.startswith(out + "/") or out.startswith(path + "/"):
                        raise WriteConflict(
                            f"{path} is an output of a pipeline stage in {where} ({out}); "
                            "change it by running the pipeline (`dvc repro`), not by upload"
                        )

    def _stage_outputs(self, where: str, directory: str) -> list[str]:
        found = self.view.file(where)
        if found is None:
            return []
        if where.endswith("dvc.lock"):
            try:
                return [out.path for out in parse_dvc_lock(found.content, where)]
            except PointerError:
                return []
        try:
            data = parse_yaml(found.text, where)
        except Exception:  # an unreadable dvc.yaml declares nothing we can use
            return []
        outs: list[str] = []
        stages = data.get("stages") if isinstance(data, dict) else None
        for stage in (stages or {}).values():
            if not isinstance(stage, dict):
                continue
            base = posixpath.join(directory, str(stage.get("wdir") or "."))
            for out in stage.get("outs") or []:
                name = next(iter(out), None) if isinstance(out, dict) else out
                if isinstance(name, str) and "${" not in name:
                    outs.append(posixpath.normpath(posixpath.join(base, name)))
        return outs

    def _check_git(self, path: str) -> None:
        for ancestor in _ancestors(path):
            if self.view.kind(ancestor) == "blob":
                raise WriteConflict(f"{ancestor} is a file in git, so nothing can be below it")
        kind = self.view.kind(path)
        if kind == "blob":
            raise WriteConflict(
                f"git itself tracks {path} (it is not a DVC pointer); change it with git"
            )
        if kind == "tree":
            raise WriteConflict(f"{path} is a folder")

    def _ignore(self, path: str) -> None:
        # Whether git already ignores the path is decided by the `.gitignore` files of the
        # base commit: what this change adds are exact `/<name>` lines, which ignore nothing
        # but their own path, and `gitignore_add` never writes a line twice. (Reading the
        # growing pending text here made a 1,000-file upload quadratic.)
        target = gitignore_path(path)
        texts: dict[str, str] = {}
        for directory in ["", *_ancestors(path)]:
            base = self.view.file(posixpath.join(directory, GITIGNORE))
            if base is not None:
                texts[directory] = base.text
        if is_ignored(path, texts):
            return
        current = self._read(target)
        updated = gitignore_add(None if current is None else current.decode("utf-8"), path)
        if updated is not None:
            self._write(target, updated.encode("utf-8"))

    def _unignore(self, path: str) -> None:
        target = gitignore_path(path)
        current = self._read(target)
        if current is None:
            return
        updated = gitignore_remove(current.decode("utf-8"), path)
        if updated is not None:
            self._write(target, updated.encode("utf-8") if updated else None)

    def _existing_data(self, path: str) -> str | None:
        """`pointer`, `entry` or `directory` when data already sits at `path`."""
        inside = self._tracked_dir(path)
        if inside is not None:
            rel = path[len(inside.path) + 1 :]
            entries = tree_entries(inside.tree)
            if rel in entries:
                return "entry"
            return "directory" if any(k.startswith(rel + "/") for k in entries) else None
        if self._read(f"{path}.dvc") is not None:
            return "pointer"
        return "directory" if self.view.kind(path) == "tree" else None

    # ------------------------------------------------------------------ operations

    def put(self, path: str, md5: str, size: int | None) -> Outcome:
        """Upload (or replace) the file `path` whose bytes are stored under `md5`."""
        check_name(path)
        self._check_not_pipeline_output(path)
        inside = self._tracked_dir(path)
        if inside is not None:
            return self._record(self._put_entry(inside, path, md5, size))
        self._check_git(path)
        pointer = f"{path}.dvc"
        self._claim_pointer(pointer)
        old = self._read(pointer)
        if old is not None:
            out = self._pointer_outs(pointer, old)
            if out.is_dir:
                raise WriteConflict(f"{path} is a tracked directory, not a file")
            if out.md5 == md5 and not out.legacy:
                self._ignore(path)
                return self._record(Outcome(path, "unchanged", md5, out.size, pointer))
        if size is None:
            size = self.size_of(md5)
        if size is None:
            raise WriteConflict(f"the size of {md5} is unknown: its object is not stored")
        self._write(pointer, file_pointer(posixpath.basename(path), md5, size, old, pointer))
        self._ignore(path)
        self.pointers_written += 1
        action = "replaced" if old is not None else "created"
        return self._record(Outcome(path, action, md5, size, pointer))

    def _put_entry(self, inside: _Dir, path: str, md5: str, size: int | None) -> Outcome:
        rel = path[len(inside.path) + 1 :]
        self.claims.setdefault(f"entry:{path}", inside.base_entries.get(rel))
        entries = tree_entries(inside.tree)
        if entries.get(rel) == md5:
            return Outcome(path, "unchanged", md5, size, inside.pointer.path)
        if any(key.startswith(rel + "/") for key in entries):
            raise WriteConflict(f"{path} is a folder of tracked directory {inside.path}")
        if size is None:
            size = self.size_of(md5)
        action = "replaced" if rel in entries else "created"
        # DVC sums sizes only when it knows the new file's size; unknown, the total is dropped.
        inside.tree, inside.meta = tree_apply(
            inside.tree, inside.oid, inside.meta, rel, md5=md5, size=size if size is not None else 0
        )
        if size is None:
            inside.meta = DirectoryMeta(None, inside.meta.nfiles)
        inside.oid, _ = manifest_bytes(inside.tree)
        inside.changed = True
        return Outcome(path, action, md5, size, inside.pointer.path)

    def put_directory(self, folder: str, files: list[tuple[str, str, int]]) -> list[Outcome]:
        """Upload `files` (relpath, md5, size) as one new tracked directory `folder`; into an
        existing tracked directory they join it instead."""
        if not folder:
            raise InvalidInput("layout=directory needs a folder: the tracked directory's name")
        check_name(folder)
        if self._tracked_dir(f"{folder}/x") is not None:
            return [self.put(f"{folder}/{rel}", md5, size) for rel, md5, size in files]
        self._check_not_pipeline_output(folder)
        self._check_git(folder)
        pointer = f"{folder}.dvc"
        self._claim_pointer(pointer)
        if self._read(pointer) is not None:
            raise WriteConflict(f"{folder} is a file tracked by DVC, not a folder")
        for rel, _, _ in files:
            check_name(f"{folder}/{rel}")
        tree, meta = new_tree(files)
        oid, _ = manifest_bytes(tree)
        self.new_trees.append(tree)
        self._write(
            pointer, directory_pointer(posixpath.basename(folder), oid, meta, None, pointer)
        )
        self._ignore(folder)
        return [
            self._record(Outcome(f"{folder}/{rel}", "created", md5, size, pointer))
            for rel, md5, size in files
        ]

    def remove(self, path: str) -> list[Outcome]:
        """Delete the data at `path`: a file, a tracked directory, an entry or folder of one,
        or a folder of per-file pointers."""
        inside = self._tracked_dir(path)
        if inside is not None:
            rel = path[len(inside.path) + 1 :]
            removed = [
                (key, md5)
                for key, md5 in tree_entries(inside.tree).items()
                if key == rel or key.startswith(rel + "/")
            ]
            if not removed:
                raise NotFound(f"{path} is not in tracked directory {inside.path}")
            for key, _ in removed:
                self.claims.setdefault(f"entry:{inside.path}/{key}", inside.base_entries.get(key))
            result = tree_remove(inside.tree, rel)
            if result is None:  # pragma: no cover - entries were found just above
                raise NotFound(f"{path} is not in tracked directory {inside.path}")
            inside.tree, inside.meta = result
            inside.oid, _ = manifest_bytes(inside.tree)
            inside.changed = True
            return [
                self._record(Outcome(f"{inside.path}/{key}", "deleted", md5, None, None))
                for key, md5 in removed
            ]
        pointer = f"{path}.dvc"
        text = self._read(pointer)
        if text is not None:
            out = self._pointer_outs(pointer, text)
            self._claim_pointer(pointer)
            self._write(pointer, None)
            self._unignore(path)
            return [self._record(Outcome(path, "deleted", out.oid, out.size, None))]
        kind = self.view.kind(path)
        if kind == "blob":
            raise WriteConflict(f"git itself tracks {path} (it is not DVC data); use git")
        if kind == "tree":
            blobs = self.view.walk(path)
            plain = [
                b for b in blobs if not b.endswith(".dvc") and posixpath.basename(b) != GITIGNORE
            ]
            if plain:
                raise WriteConflict(
                    f"{path} holds files git itself tracks ({plain[0]}, ...); only DVC data "
                    "is deleted through dshub"
                )
            outcomes: list[Outcome] = []
            for blob in sorted(b for b in blobs if b.endswith(".dvc")):
                if self._read(blob) is not None:
                    outcomes += self.remove(blob[: -len(".dvc")])
            if outcomes:
                return outcomes
        raise NotFound(f"{path} does not exist on this branch")

    def move(self, source: str, target: str) -> list[Outcome]:
        """Rename a file or folder (pointers, `.gitignore` lines, manifest entries)."""
        if source == target or target.startswith(source + "/"):
            raise InvalidInput("the target must differ from the source and not lie inside it")
        check_name(target)
        pointer = f"{source}.dvc"
        text = self._read(pointer) if self._tracked_dir(source) is None else None
        if text is not None and self._pointer_outs(pointer, text).is_dir:
            return [self._move_directory(source, target, text)]
        if self._existing_data(target) is not None:
            raise WriteConflict(f"{target} already exists; delete it first or pick another name")
        moved: list[tuple[str, str, int | None]] = []
        inside = self._tracked_dir(source)
        if inside is None and text is None and self.view.kind(source) == "tree":
            blobs = [b for b in self.view.walk(source) if b.endswith(".dvc")]
            outcomes: list[Outcome] = []
            for blob in sorted(blobs):
                data_path = blob[: -len(".dvc")]
                outcomes += self.move(data_path, target + data_path[len(source) :])
            if not outcomes:
                raise NotFound(f"{source} holds no DVC data to move")
            return outcomes
        for removed in self.remove(source):
            if removed.md5 is None:  # pragma: no cover - a removed file always has its md5
                continue
            size = removed.size if removed.size is not None else self.size_of(removed.md5)
            moved.append((removed.path, removed.md5, size))
        self.outcomes = [
            o for o in self.outcomes if o.action != "deleted" or o.path not in {m[0] for m in moved}
        ]
        results = []
        for path, md5, size in moved:
            new_path = target + path[len(source) :]
            placed = self.put(new_path, md5, size)
            self.outcomes.pop()
            results.append(self._record(Outcome(new_path, "moved", md5, size, placed.tracked_by)))
        return results

    def _move_directory(self, source: str, target: str, text: bytes) -> Outcome:
        if self._existing_data(target) is not None or self._tracked_dir(target) is not None:
            raise WriteConflict(f"{target} already exists or lies in a tracked directory")
        self._check_not_pipeline_output(target)
        self._check_git(target)
        out = self._pointer_outs(f"{source}.dvc", text)
        self._claim_pointer(f"{source}.dvc")
        self._claim_pointer(f"{target}.dvc")
        meta = DirectoryMeta(out.size, out.nfiles or 0)
        new_pointer = f"{target}.dvc"
        self._write(f"{source}.dvc", None)
        self._unignore(source)
        old_text = text if posixpath.dirname(source) == posixpath.dirname(target) else None
        self._write(
            new_pointer,
            directory_pointer(posixpath.basename(target), out.oid, meta, old_text, new_pointer),
        )
        self._ignore(target)
        return self._record(Outcome(target, "moved", out.oid, out.size, new_pointer))

    def _record(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome

    # ------------------------------------------------------------------ result

    def finish(self) -> Plan:
        """The commit actions, the manifests to store and the claims (see the module doc)."""
        manifests: list[tuple[str, bytes]] = []
        for tree in self.new_trees:
            manifests.append(manifest_bytes(tree))
        for directory in self.dirs.values():
            if not directory.changed:
                continue
            oid, data = manifest_bytes(directory.tree)
            manifests.append((oid, data))
            pointer = directory.pointer.path
            self._write(
                pointer,
                directory_pointer(
                    posixpath.basename(directory.path),
                    oid,
                    directory.meta,
                    directory.pointer.content,
                    pointer,
                ),
            )
        actions: list[dict[str, Any]] = []
        for path, change in sorted(self.git.items()):
            original = change.original
            if original is None and change.content is None:
                continue
            if original is not None and change.content == original.content:
                continue
            if original is None and change.content is not None:
                actions.append(_action("create", path, change.content))
            elif original is None:  # pragma: no cover - excluded above
                continue
            elif change.content is None:
                actions.append(
                    {
                        "action": "delete",
                        "file_path": path,
                        "last_commit_id": original.last_commit_id,
                    }
                )
            else:
                actions.append(
                    {
                        **_action("update", path, change.content),
                        "last_commit_id": original.last_commit_id,
                    }
                )
        return Plan(
            actions, manifests, dict(self.claims), list(self.outcomes), self.pointers_written
        )


def _action(kind: str, path: str, content: bytes) -> dict[str, Any]:
    return {"action": kind, "file_path": path, "content": content.decode("utf-8")}


@dataclass
class Operations:
    """What a request asks for, replayable on another base commit."""

    puts: list[tuple[str, str, int]] = field(default_factory=list)
    directory: tuple[str, list[tuple[str, str, int]]] | None = None
    removes: list[str] = field(default_factory=list)
    moves: list[tuple[str, str]] = field(default_factory=list)

    def apply(self, workspace: Workspace) -> Plan:
        """Run every operation on `workspace` and finish it."""
        if self.directory is not None:
            workspace.put_directory(*self.directory)
        for path, md5, size in self.puts:
            workspace.put(path, md5, size)
        for path in self.removes:
            workspace.remove(path)
        for source, target in self.moves:
            workspace.move(source, target)
        return workspace.finish()
