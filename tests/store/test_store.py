"""The index store on both backends: idempotent writes, atomic refs, cascades, sizes, manifests."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from indexer.errors import Unavailable
from indexer.store import (
    Dataset,
    IndexedFile,
    IndexStore,
    ManifestRow,
    RefInfo,
    StaleRef,
    StoreError,
    open_index,
)
from indexer.store.sql import load_migrations
from tests.support.index_snapshot import index_snapshot


def dataset(project_id: int = 1, **changes: object) -> Dataset:
    values: dict[str, object] = {
        "project_id": project_id,
        "name": f"Dataset {project_id}",
        "path_with_namespace": f"vision/ds{project_id}",
        "namespace": "vision",
        "visibility": "public",
        "description": "Retina scans",
        "topics": ("medical", "retina"),
        "default_branch": "main",
        "web_url": f"http://gitlab.test/vision/ds{project_id}",
        "last_activity_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "storage_site": "s3-main",
    }
    values.update(changes)
    return Dataset(**values)  # type: ignore[arg-type]


def file(
    path: str, md5: str = "0" * 32, size: int | None = 10, pointer: str = "data.dvc"
) -> IndexedFile:
    return IndexedFile(
        path=path,
        md5=md5,
        hash_name="md5",
        size=size,
        media_type="image/jpeg",
        pointer_path=pointer,
        in_directory=size is None,
    )


MAIN = RefInfo("main", "branch", "a" * 40, message="init")


def paths(store: IndexStore, project_id: int, ref: str) -> list[str]:
    return [f.path for f in store.iter_ref_files(project_id, ref)]


def test_migrate_is_idempotent_and_records_the_version(store: IndexStore, index_url: str) -> None:
    latest = max(number for number, _ in load_migrations(store.backend))  # type: ignore[attr-defined]
    assert store.migrate() == latest
    assert store.migrate() == latest
    again = open_index(index_url)
    try:
        assert again.migrate() == latest
    finally:
        again.close()


def test_open_index_refuses_an_unknown_url_scheme() -> None:
    with pytest.raises(StoreError, match="unsupported index URL"):
        open_index("mysql://localhost/x")


def test_upsert_dataset_twice_leaves_one_identical_dataset(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    first = index_snapshot(store)
    store.upsert_dataset(dataset())
    assert index_snapshot(store) == first
    assert store.dataset_ids() == {1}
    got = store.get_dataset(1)
    assert got is not None and got.topics == ("medical", "retina")
    assert got.last_activity_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_upsert_dataset_updates_changed_fields(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    store.upsert_dataset(dataset(name="Renamed", topics=("x",), visibility="private"))
    got = store.get_dataset(1)
    assert got is not None
    assert (got.name, got.topics, got.visibility) == ("Renamed", ("x",), "private")


def test_unknown_visibility_is_stored_as_private(store: IndexStore) -> None:
    store.upsert_dataset(dataset(visibility="Secretive"))
    got = store.get_dataset(1)
    assert got is not None and got.visibility == "private"


def test_replace_ref_files_is_idempotent(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    files = [file("data/a.jpg"), file("data/b.jpg", size=None)]
    first = store.replace_ref_files(1, MAIN, files)
    snap = index_snapshot(store)
    second = store.replace_ref_files(1, MAIN, files)
    assert index_snapshot(store) == snap
    assert (second.file_count, second.total_size, second.unsized_count) == (2, 10, 1)
    assert second.generation == first.generation + 1


def test_replace_ref_files_replaces_everything_and_last_duplicate_wins(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    store.replace_ref_files(1, MAIN, [file("old.jpg"), file("keep.jpg")])
    ref = store.replace_ref_files(
        1, MAIN, [file("keep.jpg", md5="1" * 32), file("new.jpg"), file("keep.jpg", md5="2" * 32)]
    )
    assert paths(store, 1, "main") == ["keep.jpg", "new.jpg"]
    assert next(f.md5 for f in store.iter_ref_files(1, "main")) == "2" * 32
    assert ref.file_count == 2


def test_replace_ref_files_needs_the_dataset(store: IndexStore) -> None:
    with pytest.raises(StoreError, match="dataset 9 is not indexed"):
        store.replace_ref_files(9, MAIN, [file("a.jpg")])


def test_failed_file_stream_leaves_the_previous_ref_intact(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    store.replace_ref_files(1, MAIN, [file("a.jpg"), file("b.jpg")])

    def broken() -> Iterator[IndexedFile]:
        yield file("c.jpg")
        raise RuntimeError("storage went away")

    with pytest.raises(RuntimeError):
        store.replace_ref_files(1, RefInfo("main", "branch", "b" * 40), broken())
    assert paths(store, 1, "main") == ["a.jpg", "b.jpg"]
    ref = store.get_ref(1, "main")
    assert ref is not None and ref.commit_sha == "a" * 40


def test_readers_never_see_a_half_written_ref(index_url: str) -> None:
    writer = open_index(index_url)
    reader = open_index(index_url)
    try:
        writer.upsert_dataset(dataset())
        old = [file(f"old/{i:04d}.jpg") for i in range(300)]
        writer.replace_ref_files(1, MAIN, old)
        seen: list[list[str]] = []

        def read_from_other_thread() -> None:
            seen.append(paths(reader, 1, "main"))

        def new_files() -> Iterator[IndexedFile]:
            for i in range(300):
                if i == 150:  # the write transaction is open and half done
                    thread = threading.Thread(target=read_from_other_thread)
                    thread.start()
                    thread.join()
                yield file(f"new/{i:04d}.jpg")

        writer.replace_ref_files(1, RefInfo("main", "branch", "b" * 40), new_files())
        assert seen == [[f.path for f in old]]
        assert paths(reader, 1, "main") == [f"new/{i:04d}.jpg" for i in range(300)]
    finally:
        writer.close()
        reader.close()


def test_apply_ref_changes_updates_incrementally(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    store.replace_ref_files(
        1,
        MAIN,
        [
            file("d/a.jpg", pointer="d.dvc"),
            file("d/b.jpg", pointer="d.dvc"),
            file("x.jpg", pointer="x.jpg.dvc"),
        ],
    )
    after = RefInfo("main", "branch", "b" * 40)
    ref = store.apply_ref_changes(
        1,
        after,
        expected_commit="a" * 40,
        removed_pointers=["d.dvc"],
        upserts=[
            file("d/c.jpg", pointer="d.dvc"),
            file("x.jpg", md5="1" * 32, size=5, pointer="x.jpg.dvc"),
        ],
    )
    assert paths(store, 1, "main") == ["d/c.jpg", "x.jpg"]
    assert (ref.commit_sha, ref.file_count, ref.total_size) == ("b" * 40, 2, 15)
    store.apply_ref_changes(
        1, RefInfo("main", "branch", "c" * 40), expected_commit="b" * 40, removed_paths=["x.jpg"]
    )
    assert paths(store, 1, "main") == ["d/c.jpg"]


def test_apply_ref_changes_on_a_moved_base_raises_stale_ref_and_changes_nothing(
    store: IndexStore,
) -> None:
    store.upsert_dataset(dataset())
    store.replace_ref_files(1, MAIN, [file("a.jpg")])
    with pytest.raises(StaleRef, match="full sync"):
        store.apply_ref_changes(
            1,
            RefInfo("main", "branch", "c" * 40),
            expected_commit="b" * 40,
            removed_paths=["a.jpg"],
        )
    assert paths(store, 1, "main") == ["a.jpg"]
    with pytest.raises(StaleRef):
        store.apply_ref_changes(1, RefInfo("v1", "tag", "c" * 40), expected_commit="b" * 40)
    assert store.get_ref(1, "v1") is None


def test_remove_ref_and_remove_dataset_cascade(store: IndexStore) -> None:
    store.upsert_dataset(dataset(1))
    store.upsert_dataset(dataset(2))
    for project_id in (1, 2):
        store.replace_ref_files(project_id, MAIN, [file("a.jpg")])
        store.replace_ref_files(project_id, RefInfo("v1", "tag", "b" * 40), [file("a.jpg")])
    assert store.remove_ref(1, "v1") is True
    assert store.remove_ref(1, "v1") is False
    assert [r.ref for r in store.list_refs(1)] == ["main"]
    assert store.remove_dataset(1) is True
    assert store.remove_dataset(1) is False
    assert store.dataset_ids() == {2}
    assert store.list_refs(1) == [] and paths(store, 1, "main") == []
    assert sorted(index_snapshot(store)["2"]["refs"]) == ["main", "v1"]


def test_set_sizes_fills_unknown_sizes_and_remembers_them(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    md5 = "e" * 32
    store.replace_ref_files(
        1, MAIN, [file("d/a.jpg", md5=md5, size=None), file("d/b.jpg", md5=md5, size=None)]
    )
    assert store.unsized_md5s() == [(1, md5, "md5")]
    assert store.set_sizes({md5: 7}) == 2
    ref = store.get_ref(1, "main")
    assert ref is not None and (ref.total_size, ref.unsized_count) == (14, 0)
    assert store.unsized_md5s() == []
    tagged = store.replace_ref_files(
        1, RefInfo("v1", "tag", "b" * 40), [file("d/a.jpg", md5=md5, size=None)]
    )
    assert (tagged.total_size, tagged.unsized_count) == (7, 0)


def test_manifest_is_stored_once_per_md5(store: IndexStore) -> None:
    entries = [ManifestRow("b.jpg", "1" * 32), ManifestRow("a.jpg", "2" * 32)]
    assert not store.has_manifest("f" * 32)
    assert store.put_manifest("f" * 32, iter(entries)) == 2
    assert store.put_manifest("f" * 32, iter([ManifestRow("zzz", "3" * 32)])) == 2
    assert store.has_manifest("f" * 32)
    assert list(store.iter_manifest("f" * 32)) == sorted(entries, key=lambda e: e.relpath)
    assert list(store.iter_manifest("0" * 32)) == []


def test_version_diff_counts_added_removed_changed(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    store.replace_ref_files(1, RefInfo("v1", "tag", "a" * 40), [file("a"), file("b"), file("c")])
    store.replace_ref_files(
        1,
        RefInfo("v2", "tag", "b" * 40),
        [file("a"), file("b", md5="1" * 32), file("d"), file("e")],
    )
    diff = store.version_diff(1, "v2", "v1")
    assert (diff.added, diff.removed, diff.changed) == (2, 1, 1)
    assert store.version_diff(1, "v2", "v1") == diff  # cached
    store.replace_ref_files(1, RefInfo("v2", "tag", "c" * 40), [file("a")])
    again = store.version_diff(1, "v2", "v1")
    assert (again.added, again.removed, again.changed) == (0, 2, 0)


def test_many_files_stream_in_bounded_pages(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    ref = store.replace_ref_files(
        1, MAIN, (file(f"d/{i:05d}.jpg", size=None) for i in range(12_000))
    )
    assert ref.file_count == 12_000
    listed = paths(store, 1, "main")
    assert listed == sorted(listed) and len(listed) == 12_000


def test_ping_reports_the_schema_version(store: IndexStore) -> None:
    assert store.ping() == store.migrate() >= 1


def test_ping_of_an_unmigrated_or_unreachable_index_is_unavailable(tmp_path: Path) -> None:
    unmigrated = open_index(f"sqlite:///{tmp_path}/empty.sqlite3", migrate=False)
    unreachable = open_index("postgresql://nobody@127.0.0.1:1/none", migrate=False)
    try:
        with pytest.raises(Unavailable, match="index"):
            unmigrated.ping()
        with pytest.raises(Unavailable, match="cannot be reached"):
            unreachable.ping()
    finally:
        unmigrated.close()
        unreachable.close()


def test_a_forked_child_opens_its_own_connection(store: IndexStore) -> None:
    store.upsert_dataset(dataset())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: use the inherited store, report, and leave without cleanup
        try:
            os.write(write, str(sorted(store.dataset_ids())).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        reported = pipe.read()
    os.waitpid(pid, 0)
    assert reported == "[1]"
    store.upsert_dataset(dataset(2))  # the parent's connection still works
    assert store.dataset_ids() == {1, 2}


def test_concurrent_replacements_of_one_ref_never_mix_file_sets(index_url: str) -> None:
    stores = [open_index(index_url) for _ in range(2)]
    try:
        stores[0].upsert_dataset(dataset())
        sets = {
            "a" * 40: [file(f"a/{i:03d}.jpg") for i in range(400)],
            "b" * 40: [file(f"b/{i:03d}.jpg") for i in range(400)],
        }
        errors: list[BaseException] = []

        def replace(store: IndexStore, commit: str) -> None:
            try:
                store.replace_ref_files(1, RefInfo("main", "branch", commit), sets[commit])
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        for _ in range(5):
            threads = [
                threading.Thread(target=replace, args=(s, c))
                for s, c in zip(stores, sets, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            ref = stores[0].get_ref(1, "main")
            assert ref is not None
            assert paths(stores[0], 1, "main") == [f.path for f in sets[ref.commit_sha]]
            assert ref.file_count == 400
    finally:
        for opened in stores:
            opened.close()
