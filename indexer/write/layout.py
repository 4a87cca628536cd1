"""What `dvc add` writes, written without a workspace: pointers, `.dir` manifests, `.gitignore`.

Serialisation and hashing are DVC's own: pointers are dumped with `dvc.utils.serialize`'s
YAML dumper, and an existing pointer is updated the way DVC updates a stage file (re-parsed
with the round-trip loader and changed with `apply_diff`, so comments and fields DVC keeps —
`desc`, `meta`, `remote`, ... — survive); manifests are `dvc_data.hashfile.tree.Tree`s, their
bytes and ids from `Tree.as_bytes` / `Tree.digest`. A file joining a tracked directory
follows `dvc.output.Output.apply` (size summed when files are only appended, kept when the
manifest is unchanged, dropped otherwise; removing an entry is `Output.unstage`, which drops
it too). `.gitignore` lines follow scmrepo's `Git.ignore` / `ignore_remove`, which
`dvc add` / `dvc remove` use: `/<name>` in the output's own directory, escaped as a git
wildmatch pattern, appended once.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dvc.utils.collections import apply_diff
from dvc.utils.serialize import dumps_yaml, parse_yaml_for_update
from dvc_data.hashfile.hash_info import HashInfo
from dvc_data.hashfile.meta import Meta
from dvc_data.hashfile.tree import Tree
from pathspec import GitIgnoreSpec
from pathspec.patterns.gitwildmatch import GitWildMatchPattern

from indexer.data.pointers import ManifestEntry, PointerError

GITIGNORE = ".gitignore"
# Fields of a stage and of an output that DVC carries over when it re-dumps a loaded pointer.
_STAGE_KEPT = ("desc", "wdir", "frozen", "meta")
_OUT_KEPT = ("desc", "type", "labels", "meta", "cache", "remote", "push", "persist")


@dataclass(frozen=True)
class DirectoryMeta:
    """A tracked directory's `size` (None when DVC would not know it) and `nfiles`."""

    size: int | None
    nfiles: int


def _out(oid: str, meta: Meta, path: str, old: Mapping[str, Any] | None) -> dict[str, Any]:
    """One output as `Output.dumpd` writes it: hash, meta, `hash: md5`, path, kept fields."""
    out: dict[str, Any] = dict(HashInfo("md5", oid).to_dict())
    meta_d = meta.to_dict()
    meta_d.pop("isdir", None)
    out.update(meta_d)
    out["hash"] = "md5"
    out["path"] = path
    for key in _OUT_KEPT:
        if old is not None and key in old:
            out[key] = old[key]
    return out


def output_entry(oid: str, meta: Meta, path: str) -> dict[str, Any]:
    """One output of a new pointer as `Output.dumpd` writes it (`dvc add`, `dvc import`)."""
    return _out(oid, meta, path, None)


def pointer_text(
    oid: str, meta: Meta, path: str, old_text: str | bytes | None, pointer_path: str
) -> bytes:
    """The `.dvc` file tracking one output `path` (relative to the pointer) with `oid`.

    With `old_text` (the pointer being replaced), DVC's update cycle is applied to it, so the
    result is what `dvc add` writes over that file."""
    if old_text is None:
        return str(dumps_yaml({"outs": [_out(oid, meta, path, None)]})).encode("utf-8")
    text = old_text.decode("utf-8") if isinstance(old_text, bytes) else old_text
    saved = parse_yaml_for_update(text, pointer_path)
    outs = saved.get("outs") if isinstance(saved, Mapping) else None
    if not isinstance(outs, list) or len(outs) != 1 or not isinstance(outs[0], Mapping):
        raise PointerError(f"{pointer_path}: expected exactly one output to update")
    state: dict[str, Any] = {key: saved[key] for key in _STAGE_KEPT if key in saved}
    state["outs"] = [_out(oid, meta, str(outs[0].get("path") or path), outs[0])]
    apply_diff(state, saved)
    return str(dumps_yaml(saved)).encode("utf-8")


def file_pointer(name: str, md5: str, size: int, old_text: str | bytes | None, where: str) -> bytes:
    """`<name>.dvc` for one file of `size` bytes hashing to `md5`."""
    return pointer_text(md5, Meta(size=size), name, old_text, where)


def directory_pointer(
    name: str, oid: str, meta: DirectoryMeta, old_text: str | bytes | None, where: str
) -> bytes:
    """`<folder>.dvc` for a tracked directory whose manifest id is `oid` (`<md5>.dir`)."""
    return pointer_text(
        oid, Meta(isdir=True, size=meta.size, nfiles=meta.nfiles), name, old_text, where
    )


# ------------------------------------------------------------------------------ manifests


def tree_of(entries: Iterable[ManifestEntry]) -> Tree:
    """A dvc-data tree from manifest entries (as `Tree.from_list` reads a `.dir`)."""
    tree: Tree = Tree.from_list([{"md5": e.md5, "relpath": e.relpath} for e in entries], "md5")
    return tree


def new_tree(files: Iterable[tuple[str, str, int]]) -> tuple[Tree, DirectoryMeta]:
    """The tree and meta of a new tracked directory from (relpath, md5, size) triples, as
    `dvc add <dir>` computes them (size is the sum of the files)."""
    tree = Tree()  # type: ignore[no-untyped-call]
    total, count = 0, 0
    for relpath, md5, size in files:
        tree.add(tuple(relpath.split("/")), Meta(size=size), HashInfo("md5", md5))
        total += size
        count += 1
    tree.digest()
    return tree, DirectoryMeta(total, count)


def tree_apply(
    tree: Tree, old_oid: str, old: DirectoryMeta, relpath: str, *, md5: str, size: int
) -> tuple[Tree, DirectoryMeta]:
    """Put one file into a tracked directory exactly as `Output.apply` does (see module doc)."""
    key = tuple(relpath.split("/"))
    trie = tree.as_trie()
    append_only = True
    try:
        del trie[key:]
    except KeyError:
        pass
    else:
        append_only = False
    trie.update({key: (Meta(size=size), HashInfo("md5", md5))})
    new = Tree.from_trie(trie)
    new.digest()
    total = old.size if old.size else None
    if append_only and total:
        total += size
    elif new.hash_info is not None and new.hash_info.value == old_oid:
        total = old.size
    else:
        total = None
    return new, DirectoryMeta(total, len(new))


def tree_remove(tree: Tree, relpath: str) -> tuple[Tree, DirectoryMeta] | None:
    """Take a file or folder out of a tracked directory as `Output.unstage` does (the size is
    dropped); None when nothing is at `relpath`."""
    trie = tree.as_trie()
    try:
        del trie[tuple(relpath.split("/")) :]
    except KeyError:
        return None
    new = Tree.from_trie(trie)
    new.digest()
    return new, DirectoryMeta(None, len(new))


def tree_entries(tree: Tree) -> dict[str, str]:
    """relpath → md5 of every file of a tree."""
    return {"/".join(key): hi.value for key, _, hi in tree if hi is not None and hi.value}


def manifest_bytes(tree: Tree) -> tuple[str, bytes]:
    """The `.dir` object id (`<md5>.dir`) and bytes of a tree."""
    if tree.hash_info is None or tree.hash_info.value is None:
        tree.digest()
    return str(tree.hash_info.value), bytes(tree.as_bytes())


# ------------------------------------------------------------------------------ .gitignore


def gitignore_path(path: str) -> str:
    """The `.gitignore` `dvc add` writes the entry of `path` into (its own directory)."""
    return posixpath.join(posixpath.dirname(path), GITIGNORE)


def _entry(path: str) -> str:
    return "/" + posixpath.basename(path)


def is_ignored(path: str, gitignores: Mapping[str, str]) -> bool:
    """Whether git ignores `path` given the `.gitignore` texts of its ancestor directories
    (keyed by directory, "" for the root): the deepest matching pattern decides, and a path
    below an ignored directory is ignored."""
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        candidate = "/".join(parts[:depth])
        decided: bool | None = None
        for level in range(depth):
            directory = "/".join(parts[:level])
            text = gitignores.get(directory)
            if not text:
                continue
            spec = _spec(text)
            rel = candidate[len(directory) + 1 :] if directory else candidate
            result = spec.check_file(rel + "/" if depth < len(parts) else rel)
            if result.include is not None:
                decided = result.include
        if decided:
            return True
    return False


@functools.lru_cache(maxsize=256)
def _spec(text: str) -> GitIgnoreSpec:
    """The compiled patterns of one `.gitignore` text (compiled once per text)."""
    return GitIgnoreSpec.from_lines(text.splitlines())


def gitignore_add(text: str | None, path: str) -> str | None:
    """The `.gitignore` text after `Git.ignore(path)` appends `/<name>`; None when unchanged."""
    entry = GitWildMatchPattern.escape(_entry(path))
    current = text or ""
    prefix = "" if not current or current.endswith("\n") else "\n"
    new_entry = f"{prefix}{entry}\n"
    if new_entry in set(current.splitlines(keepends=True)):
        return None
    return current + new_entry


def gitignore_remove(text: str | None, path: str) -> str | None:
    """The text after `Git.ignore_remove(path)`: lines equal to `/<name>` removed; "" means
    the file is deleted (nothing left); None when there is no file."""
    if text is None:
        return None
    entry = _entry(path)
    lines = [line for line in text.splitlines(keepends=True) if line.strip() != entry.strip()]
    return "".join(lines)
