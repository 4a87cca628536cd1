"""Random sequences of store writes leave exactly the state a plain-Python model predicts.

This is the store half of the convergence property: whatever order the jobs write in, the
index is a function of the writes, on both backends.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.read.search import Viewer, search_datasets, search_files
from indexer.store import Dataset, IndexedFile, IndexStore, RefInfo, StoreError
from tests.support.index_snapshot import index_snapshot

PIDS = st.integers(1, 3)
REFS = st.sampled_from(["main", "dev", "v1", "v2"])
PATHS = st.sampled_from(["a.jpg", "b.png", "d/c.tif", "d/e.npy", "f.txt"])
MD5S = st.sampled_from("0123")
SIZES = st.one_of(st.none(), st.integers(0, 1000))
FILES = st.lists(st.tuples(PATHS, MD5S, SIZES), max_size=5)

OPS = st.one_of(
    st.tuples(
        st.just("upsert"),
        PIDS,
        st.sampled_from(["public", "internal", "private", "weird"]),
        st.lists(st.sampled_from(["x", "y", "z"]), max_size=3),
        st.sampled_from(["main", "dev"]),
    ),
    st.tuples(st.just("replace"), PIDS, REFS, FILES),
    st.tuples(st.just("apply"), PIDS, REFS, st.lists(PATHS, max_size=2), FILES),
    st.tuples(st.just("remove_ref"), PIDS, REFS),
    st.tuples(st.just("remove_dataset"), PIDS),
    st.tuples(st.just("set_sizes"), st.dictionaries(MD5S, st.integers(0, 1000), max_size=2)),
)

_salts = itertools.count()


@dataclass
class Model:
    """What the index should hold, computed without SQL."""

    salt: str
    datasets: dict[int, dict[str, Any]] = field(default_factory=dict)
    refs: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    commits: itertools.count[int] = field(default_factory=itertools.count)

    def md5(self, letter: str) -> str:
        return (self.salt + letter * 32)[:32]

    def file(self, path: str, letter: str, size: int | None) -> IndexedFile:
        return IndexedFile(path, self.md5(letter), "md5", size, "x/y", "p.dvc", size is None)

    def record(self, f: IndexedFile) -> tuple[Any, ...]:
        size = f.size if f.size is not None else self.sizes.get(f.md5)
        return (f.md5, "md5", size, "p.dvc", f.in_directory, "ok")

    def snapshot(self) -> dict[str, Any]:
        return {
            str(pid): {
                **fields,
                "refs": {
                    ref: {
                        "kind": r["kind"],
                        "commit_sha": r["commit"],
                        "status": "ok",
                        "files": dict(r["files"]),
                    }
                    for (p, ref), r in sorted(self.refs.items())
                    if p == pid
                },
            }
            for pid, fields in sorted(self.datasets.items())
        }


def apply(store: IndexStore, model: Model, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "upsert":
        _, pid, visibility, topics, branch = op
        store.upsert_dataset(
            Dataset(pid, f"DS {pid}", f"g/ds{pid}", "g", visibility, "d", tuple(topics), branch)
        )
        model.datasets[pid] = {
            "name": f"DS {pid}",
            "path_with_namespace": f"g/ds{pid}",
            "namespace": "g",
            "description": "d",
            "visibility": visibility if visibility != "weird" else "private",
            "topics": sorted(set(topics)),
            "default_branch": branch,
            "web_url": "",
            "storage_site": None,
        }
    elif kind in ("replace", "apply"):
        pid, ref = op[1], op[2]
        commit = f"{next(model.commits):040x}"
        info = RefInfo(ref, "tag" if ref.startswith("v") else "branch", commit)
        files = [model.file(*spec) for spec in op[-1]]
        try:
            if kind == "replace":
                store.replace_ref_files(pid, info, files)
            else:
                store.apply_ref_changes(
                    pid, info, expected_commit=None, removed_paths=op[3], upserts=files
                )
        except StoreError:
            assert pid not in model.datasets
            return
        assert pid in model.datasets
        entry = model.refs.setdefault((pid, ref), {"files": {}})
        entry.update(kind=info.kind, commit=commit)
        if kind == "replace":
            entry["files"] = {}
        else:
            for path in op[3]:
                entry["files"].pop(path, None)
        for f in files:
            entry["files"][f.path] = model.record(f)
    elif kind == "remove_ref":
        assert store.remove_ref(op[1], op[2]) == ((op[1], op[2]) in model.refs)
        model.refs.pop((op[1], op[2]), None)
    elif kind == "remove_dataset":
        assert store.remove_dataset(op[1]) == (op[1] in model.datasets)
        model.datasets.pop(op[1], None)
        for key in [k for k in model.refs if k[0] == op[1]]:
            del model.refs[key]
    else:
        sizes = {model.md5(letter): size for letter, size in op[1].items()}
        store.set_sizes(sizes)
        model.sizes.update(sizes)
        for entry in model.refs.values():
            for path, record in entry["files"].items():
                if record[2] is None and record[0] in sizes:
                    entry["files"][path] = (record[0], "md5", sizes[record[0]], *record[3:])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=80)
@given(ops=st.lists(OPS, max_size=12))
def test_random_write_sequences_match_the_model(
    store: IndexStore, ops: list[tuple[Any, ...]]
) -> None:
    for pid in store.dataset_ids():
        store.remove_dataset(pid)
    model = Model(salt=f"{next(_salts):08x}")
    for op in ops:
        apply(store, model, op)
    assert index_snapshot(store) == model.snapshot()
    admin = Viewer(user_id=1, is_admin=True)
    assert search_datasets(store, admin).total == len(model.datasets)
    expected_files = sum(len(r["files"]) for r in model.refs.values())
    assert search_files(store, admin, per_page=100).total == expected_files
    for (pid, ref), entry in model.refs.items():
        stored = store.get_ref(pid, ref)
        assert stored is not None and stored.file_count == len(entry["files"])
        sizes = [record[2] for record in entry["files"].values()]
        assert stored.total_size == sum(s for s in sizes if s is not None)
        assert stored.unsized_count == sizes.count(None)
