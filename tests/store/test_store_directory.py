"""One file and one directory level at a ref, on both backends (what the file browser reads)."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.store import IndexStore, RefInfo
from indexer.store.sql import DIRECTORY_PAGE
from tests.store.test_store import MAIN, dataset, file


def _level(store: IndexStore, directory: str) -> list[tuple[str, str]]:
    return [
        (name, "file" if found is not None else "dir")
        for name, found in store.iter_directory(1, "main", directory)
    ]


def test_get_file_finds_exactly_the_path_at_the_ref(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    store.replace_ref_files(1, MAIN, [file("images/a.jpg", md5="a" * 32), file("model.bin")])
    found = store.get_file(1, "main", "images/a.jpg")
    assert found is not None and found.md5 == "a" * 32
    assert store.get_file(1, "main", "images") is None
    assert store.get_file(1, "main", "images/a.jp") is None
    assert store.get_file(1, "v1", "images/a.jpg") is None
    assert store.get_file(2, "main", "images/a.jpg") is None


def test_directory_level_lists_files_and_subdirectories_once(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    paths = [
        "a.txt",
        "images/x.png",
        "images/sub/deep/y.png",
        "images/sub/z.png",
        "images-old/q.png",
        "images.csv",
        "images0",
        "model.bin",
    ]
    store.replace_ref_files(1, MAIN, [file(p) for p in paths])
    assert _level(store, "") == [
        ("a.txt", "file"),
        ("images-old", "dir"),
        ("images.csv", "file"),
        ("images", "dir"),
        ("images0", "file"),
        ("model.bin", "file"),
    ]
    assert _level(store, "images") == [("sub", "dir"), ("x.png", "file")]
    assert _level(store, "images/") == _level(store, "images")
    assert _level(store, "images/sub") == [("deep", "dir"), ("z.png", "file")]
    assert _level(store, "images/x.png") == []
    assert _level(store, "nothing") == []


def test_directory_level_pages_through_large_flat_directories(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    count = DIRECTORY_PAGE * 2 + 7
    names = [f"f{i:05d}.png" for i in range(count)]
    store.replace_ref_files(1, MAIN, [file(f"flat/{n}") for n in names] + [file("flat/s/x")])
    level = _level(store, "flat")
    assert [name for name, _ in level] == [*names, "s"]
    assert level[-1] == ("s", "dir")
    for offset in (1, DIRECTORY_PAGE, count - 1, count, count + 1):
        tail = [name for name, _ in store.iter_directory(1, "main", "flat", offset)]
        assert tail == [*names, "s"][offset:], offset


def test_presence_is_recorded_per_object_on_every_ref(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    shared, lost = "a" * 32, "b" * 32
    store.replace_ref_files(1, MAIN, [file("x", md5=shared), file("y", md5=lost)])
    store.replace_ref_files(1, RefInfo("v1", "tag", "b" * 40), [file("old/x", md5=shared)])
    assert sorted(store.iter_presence_keys(1)) == [(shared, "md5"), (lost, "md5")]
    assert store.set_presence(1, {(shared, "md5"): True, (lost, "md5"): False}) == 3
    marks = {f.path: f.in_storage for ref in ("main", "v1") for f in store.iter_ref_files(1, ref)}
    assert marks == {"x": True, "y": False, "old/x": True}
    assert store.set_presence(1, {(shared, "md5"): True}) == 0  # nothing changed
    assert list(store.iter_presence_keys(1, unchecked_only=True)) == [(lost, "md5")]
    found = store.get_file(1, "main", "y")
    assert found is not None and found.in_storage is False
    assert store.forget_presence(1) == 3
    assert {f.in_storage for f in store.iter_ref_files(1, "main")} == {None}


def test_directory_level_only_reads_its_own_ref(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    store.replace_ref_files(1, MAIN, [file("a/x")])
    store.replace_ref_files(1, RefInfo("v1", "tag", "b" * 40), [file("b/y")])
    assert _level(store, "") == [("a", "dir")]
    assert [n for n, _ in store.iter_directory(1, "v1", "")] == ["b"]


_ids = itertools.count(100)
_segment = st.sampled_from(["a", "b", "a.b", "a-b", "a0", "é", "z"])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(paths=st.lists(st.lists(_segment, min_size=1, max_size=4).map("/".join), max_size=25))
def test_directory_levels_match_a_naive_listing(store: IndexStore, paths: list[str]) -> None:
    project_id = next(_ids)
    store.upsert_dataset(dataset(project_id))
    paths = _no_file_dir_clash(sorted(set(paths)))
    store.replace_ref_files(project_id, MAIN, [file(p) for p in paths])
    for directory in {"", *("/".join(p.split("/")[:i]) for p in paths for i in (1, 2))}:
        got = [
            (name, "file" if found is not None else "dir")
            for name, found in store.iter_directory(project_id, "main", directory)
        ]
        expected = _naive_level(paths, directory)
        assert got == expected, directory
        for offset in range(1, len(expected) + 2):  # skipped in the database, same entries
            skipped = store.iter_directory(project_id, "main", directory, offset)
            names = [(name, "file" if found is not None else "dir") for name, found in skipped]
            assert names == expected[offset:], (directory, offset)


def _no_file_dir_clash(paths: list[str]) -> list[str]:
    dirs = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    return [p for p in paths if p not in dirs]


def _naive_level(paths: list[str], directory: str) -> list[tuple[str, str]]:
    prefix = directory + "/" if directory else ""
    seen: dict[str, str] = {}
    for path in paths:
        if path.startswith(prefix):
            name, slash, _ = path[len(prefix) :].partition("/")
            seen.setdefault(name, "dir" if slash else "file")
    return sorted(seen.items(), key=lambda e: e[0] + ("/" if e[1] == "dir" else ""))
