"""Tracked directories: manifests become files, bad data is marked, 100,000 entries index fine."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from indexer.data.pointers import iter_manifest, parse_dvc_file
from indexer.data.tracked_files import error_file, files_of_out
from indexer.read.search import Viewer, search_files
from indexer.store import Dataset, IndexStore, RefInfo
from indexer.store.base import IndexedFile

DIR_MD5 = "15de2dcc4f87e5ba75514d2ca6352ebe"
POINTER = (
    f"outs:\n- md5: {DIR_MD5}.dir\n  size: 461570\n  nfiles: 100000\n  hash: md5\n  path: images\n"
)


def _manifest(n: int) -> bytes:
    return json.dumps(
        [{"md5": f"{i:032x}", "relpath": f"part{i % 10}/img_{i:06d}.jpg"} for i in range(n)]
    ).encode()


def _dataset(store: IndexStore) -> None:
    store.upsert_dataset(Dataset(7, "Big", "g/big", "g", "public", default_branch="main"))


@pytest.mark.slow
def test_tag_with_100k_entry_directory_is_indexed(store: IndexStore) -> None:
    _dataset(store)
    (out,) = parse_dvc_file(POINTER, "images.dvc")
    stored = store.put_manifest(out.md5, iter_manifest(io.BytesIO(_manifest(100_000)), out.oid))
    assert stored == 100_000 and store.has_manifest(out.md5)
    ref = store.replace_ref_files(
        7, RefInfo("v1", "tag", "a" * 40), files_of_out(out, store.iter_manifest(out.md5))
    )
    assert (ref.file_count, ref.unsized_count, ref.total_size) == (100_000, 100_000, 0)
    hits = search_files(store, Viewer(), "img_099999")
    assert [h.row.file.path for h in hits.items] == ["images/part9/img_099999.jpg"]
    assert hits.items[0].row.file.media_type == "image/jpeg"
    common = search_files(store, Viewer(), "part3")
    assert (common.total, common.total_exact) == (1_000, False)  # counts stop at 1,000
    scoped = search_files(store, Viewer(), "img_0999", dataset=7)
    assert (scoped.total, scoped.total_exact) == (100, True)


def test_directory_entries_inherit_layout_and_pointer(store: IndexStore) -> None:
    _dataset(store)
    legacy = "outs:\n- md5: dbbfd4dcf572163c75a59571131c51cd.dir\n  nfiles: 2\n  path: scans\n"
    (out,) = parse_dvc_file(legacy, "sets/scans.dvc")
    entries = iter_manifest(io.BytesIO(_manifest(2)), out.oid)
    store.replace_ref_files(7, RefInfo("main", "branch", "b" * 40), files_of_out(out, entries))
    files = list(store.iter_ref_files(7, "main"))
    assert [(f.path, f.hash_name, f.pointer_path, f.in_directory, f.size) for f in files] == [
        ("sets/scans/part0/img_000000.jpg", "md5-dos2unix", "sets/scans.dvc", True, None),
        ("sets/scans/part1/img_000001.jpg", "md5-dos2unix", "sets/scans.dvc", True, None),
    ]


def test_unreadable_pointer_and_missing_manifest_are_marked_not_fatal(store: IndexStore) -> None:
    _dataset(store)
    (out,) = parse_dvc_file(POINTER, "images.dvc")

    def files() -> Iterator[IndexedFile]:
        yield from files_of_out(out, None)  # the manifest is missing from storage
        yield error_file("broken.dvc", "broken.dvc: invalid YAML")
        yield from files_of_out(
            parse_dvc_file(POINTER.replace("images", "ok.png").replace(".dir", ""), "ok.png.dvc")[0]
        )

    ref = store.replace_ref_files(7, RefInfo("main", "branch", "c" * 40, status="partial"), files())
    marked = {f.path: (f.status, f.note) for f in store.iter_ref_files(7, "main")}
    assert marked == {
        "images": ("error", "manifest unavailable"),
        "broken.dvc": ("error", "broken.dvc: invalid YAML"),
        "ok.png": ("ok", None),
    }
    assert ref.status == "partial" and ref.unsized_count == 0
    assert store.unsized_md5s() == []


def test_imported_pointer_is_listed_as_imported(store: IndexStore) -> None:
    _dataset(store)
    text = (
        "md5: 74256d67f8298e8207cecd69c0266c90\nfrozen: true\ndeps:\n- path: a.png\n"
        "  repo:\n    url: https://gitlab.example/other/repo\n    rev_lock: abc\n"
        "outs:\n- md5: 986bc14502f826cddf5174e81a8ced48\n  size: 100\n  hash: md5\n  path: a.png\n"
    )
    (out,) = parse_dvc_file(text, "a.png.dvc")
    store.replace_ref_files(7, RefInfo("main", "branch", "d" * 40), files_of_out(out))
    (stored,) = store.iter_ref_files(7, "main")
    assert (
        stored.status == "imported"
        and stored.note == "imported from https://gitlab.example/other/repo"
    )
