"""The objects a dataset's indexed versions reference — what gc must never delete.

Every indexed ref (the default branch and every tag) contributes the md5 of each file and
each directory entry it lists, and the `<md5>.dir` manifest of each tracked directory. The
index does not keep manifest ids per ref, so they are read back from the directory pointers
at the indexed commit (through GitLab, the source of truth). A ref the index could not fully
read (status not `ok`, an unreadable pointer or manifest) makes the answer incomplete: the
objects it lists are still returned, and callers must not delete on an incomplete answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from indexer.data.pointers import PointerError, parse_pointer
from indexer.store import IndexStore

# (project_id, path, commit) -> the file's bytes, or None when it does not exist.
ReadFile = Callable[[int, str, str], bytes | None]


@dataclass(frozen=True)
class IndexedObjects:
    """Object ids referenced by indexed refs, and the refs that could not be fully listed."""

    oids: frozenset[str]
    refs: tuple[str, ...]
    incomplete: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """True when every indexed ref was fully listed (safe to delete against)."""
        return not self.incomplete


def indexed_objects(store: IndexStore, read_file: ReadFile, project_id: int) -> IndexedObjects:
    """Collect the object ids of every indexed ref of `project_id` (see the module docstring)."""
    oids: set[str] = set()
    refs: list[str] = []
    incomplete: list[str] = []
    for ref in store.list_refs(project_id):
        refs.append(ref.ref)
        problems: list[str] = []
        if ref.status != "ok":
            problems.append(f"indexed with status {ref.status}")
        directories: set[str] = set()
        for item in store.iter_ref_files(project_id, ref.ref):
            if item.status == "error":
                problems.append(f"{item.path}: {item.note or 'unreadable'}")
                if item.md5:  # a directory whose manifest was unreadable: keep the manifest
                    oids.update((item.md5, f"{item.md5}.dir"))
                continue
            if item.md5:
                oids.add(item.md5)
            if item.in_directory and item.status == "ok":
                directories.add(item.pointer_path)
        for pointer_path in sorted(directories):
            raw = read_file(project_id, pointer_path, ref.commit_sha)  # GitLab down: raises
            if raw is None:
                problems.append(f"{pointer_path} is gone from commit {ref.commit_sha[:12]}")
                continue
            try:
                outs = parse_pointer(raw, pointer_path)
            except PointerError as exc:
                problems.append(f"{pointer_path}: {exc.message}")
                continue
            oids.update(out.oid for out in outs if out.is_dir and not out.imported)
        if problems:
            incomplete.append(f"{ref.ref} ({'; '.join(problems[:3])})")
    return IndexedObjects(frozenset(oids), tuple(refs), tuple(incomplete))
