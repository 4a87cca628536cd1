"""Which objects a set of pointer outputs references, and which of them the remote holds.

Built on DVC's own pieces: the remote's object databases (`Remote.odb` for DVC 3 outputs,
`Remote.legacy_odb` for DVC 2 ones), `Tree.load` for `.dir` manifests (tried in the local
cache first, then in the remote) and `HashFileDB.oids_exist`, which picks listing or
per-object HEADs from the size of the remote. DVC's own `dvc push` and `dvc status -c` assume
every entry of a directory exists once its `.dir` does; these checks never assume that.

On dshub's remote (proxy mode) DVC's http remote can only ask one GET per object, so the
"which of these exist" step asks dshub's batch answer instead (`proxy.DshubRemote.missing`,
one request per 10,000 objects); which objects are referenced is decided here either way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dshub.ci.proxy import DshubRemote
from indexer.data.object_ids import parse_object_key
from indexer.data.pointers import PointerOut


@dataclass(frozen=True)
class ObjectRef:
    """One object the data needs: its layout (hash name), id and a label for messages."""

    hash_name: str
    oid: str
    label: str


@dataclass(frozen=True)
class DirEntry:
    """One file inside a tracked directory, as its `.dir` manifest lists it."""

    relpath: str
    oid: str


class RemoteObjects:
    """Presence checks and manifest reads against one DVC remote of a repository."""

    def __init__(
        self, repo_root: Path, remote_name: str, jobs: int, dshub: DshubRemote | None = None
    ) -> None:
        from dvc.repo import Repo

        self.repo: Any = Repo(str(repo_root))
        self.remote: Any = self.repo.cloud.get_remote(remote_name)
        self.jobs = max(1, jobs)
        self.dshub = dshub

    def close(self) -> None:
        """Release the DVC repository (its state database and locks)."""
        self.repo.close()

    def odb(self, hash_name: str) -> Any:
        """The remote object database holding objects of `hash_name`'s layout."""
        return self.remote.odb if hash_name == "md5" else self.remote.legacy_odb

    def _cache(self, hash_name: str) -> Any:
        return self.repo.cache.local if hash_name == "md5" else self.repo.cache.legacy

    def manifest(self, hash_name: str, oid: str) -> list[DirEntry] | None:
        """The entries of the `.dir` manifest `oid`, from the local cache or the remote; None if
        neither has it."""
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.tree import Tree

        info = HashInfo(hash_name, oid)
        for odb in (self._cache(hash_name), self.odb(hash_name)):
            try:
                tree = Tree.load(odb, info)
            except (FileNotFoundError, OSError, ValueError):
                continue
            return [DirEntry("/".join(key), entry.value) for key, _, entry in tree]
        return None

    def manifests(
        self, outputs: Iterable[PointerOut]
    ) -> dict[tuple[str, str], list[DirEntry] | None]:
        """`manifest` for every directory output, read in parallel."""
        wanted = sorted({(out.hash_name, out.oid) for out in outputs if out.is_dir})
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            loaded = list(pool.map(lambda key: self.manifest(*key), wanted))
        return dict(zip(wanted, loaded, strict=True))

    def existing(self, refs: Iterable[ObjectRef]) -> set[tuple[str, str]]:
        """`(hash_name, oid)` of each of `refs` the remote holds."""
        if self.dshub is not None:
            return _existing_in_dshub(self.dshub, refs)
        by_layout: dict[str, set[str]] = defaultdict(set)
        for ref in refs:
            by_layout[ref.hash_name].add(ref.oid)
        found: set[tuple[str, str]] = set()
        for hash_name, oids in by_layout.items():
            present = self.odb(hash_name).oids_exist(sorted(oids), jobs=self.jobs)
            found.update((hash_name, oid) for oid in present)
        return found

    def missing(self, refs: Iterable[ObjectRef]) -> list[ObjectRef]:
        """Those of `refs` the remote does not hold, in label order."""
        wanted = list(refs)
        found = self.existing(wanted)
        return sorted(
            (ref for ref in wanted if (ref.hash_name, ref.oid) not in found), key=lambda r: r.label
        )


def remote_key(hash_name: str, oid: str) -> str | None:
    """The key of object `oid` in a DVC remote (the layout `RemoteObjects.odb` picks), or None
    when `oid` is not an md5 object id (no remote can hold it)."""
    key = f"files/md5/{oid[:2]}/{oid[2:]}" if hash_name == "md5" else f"{oid[:2]}/{oid[2:]}"
    return key if parse_object_key(key) is not None else None


def _existing_in_dshub(dshub: DshubRemote, refs: Iterable[ObjectRef]) -> set[tuple[str, str]]:
    by_key: dict[str, tuple[str, str]] = {}
    for ref in refs:
        key = remote_key(ref.hash_name, ref.oid)
        if key is not None:
            by_key[key] = (ref.hash_name, ref.oid)
    absent = dshub.missing(list(by_key))
    return {pair for key, pair in by_key.items() if key not in absent}


def referenced_objects(
    outputs: Iterable[PointerOut],
    manifests: dict[tuple[str, str], list[DirEntry] | None],
) -> tuple[list[ObjectRef], list[PointerOut]]:
    """Every object `outputs` reference (files, `.dir` manifests, directory entries), and the
    directory outputs whose manifest could not be read (their entries are unknown)."""
    refs: list[ObjectRef] = []
    unreadable: list[PointerOut] = []
    for out in outputs:
        refs.append(ObjectRef(out.hash_name, out.oid, f"{out.path} ({out.pointer_path})"))
        if not out.is_dir:
            continue
        entries = manifests.get((out.hash_name, out.oid))
        if entries is None:
            unreadable.append(out)
            continue
        refs.extend(
            ObjectRef(out.hash_name, entry.oid, f"{out.path}/{entry.relpath} ({out.pointer_path})")
            for entry in entries
        )
    return refs, unreadable
