"""Pure checks: ref and path validation, thumbnails, the preview cache (no services)."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from indexer.data.previews import (
    MAX_SIZE,
    MIN_SIZE,
    PREVIEW_SIZES,
    NotPreviewable,
    PreviewCache,
    UnsafeImage,
    preview_size,
    render,
)
from indexer.errors import InvalidInput
from indexer.read.resolve import validate_path, validate_ref


@pytest.mark.parametrize("ref", ["v0.1.0", "main", "feature/x-1", "a" * 40, "abc1234", "v1_rc"])
def test_ordinary_refs_are_accepted(ref: str) -> None:
    assert validate_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "-x",
        "--help",
        "a..b",
        "a b",
        "a\tb",
        "a\x7f",
        "x~1",
        "x^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\b",
        "a@{1}",
        "/a",
        "a/",
        "a.lock",
        ".a",
        "a//b",
        "x" * 256,
    ],
)
def test_hostile_refs_are_refused(ref: str) -> None:
    with pytest.raises(InvalidInput):
        validate_ref(ref)


@given(st.text(max_size=60))
def test_an_accepted_ref_never_contains_traversal_or_controls(ref: str) -> None:
    try:
        validate_ref(ref)
    except InvalidInput:
        return
    assert ".." not in ref and not ref.startswith("-")
    assert all(ord(c) > 0x20 and ord(c) != 0x7F for c in ref)


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../a",
        "a/../b",
        "a/./b",
        "/etc/passwd",
        "a\\b",
        "a\x00b",
        "%2e%2e/a",
        "%252e%252e/a",
        "%25252e",  # three layers deep: found by the fuzzer (paths_and_refs)
        "a%2f..%2fb",
        "a%5cb",
        "a%00b",
        "a//b",
        "C:/x",
        "",
    ],
)
def test_traversal_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput):
        validate_path(path)


@given(st.text(max_size=80))
def test_an_accepted_path_stays_inside_the_dataset(path: str) -> None:
    try:
        cleaned = validate_path(path)
    except InvalidInput:
        return
    assert not cleaned.startswith("/") and "\\" not in cleaned and "\x00" not in cleaned
    assert all(part not in ("", ".", "..") for part in cleaned.split("/"))


def test_ordinary_paths_and_the_root_folder_are_accepted() -> None:
    assert validate_path("dataset/VITVI/1-41.jpg") == "dataset/VITVI/1-41.jpg"
    assert validate_path("100% real/é.png") == "100% real/é.png"
    assert validate_path("", allow_root=True) == ""
    assert validate_path("images/", allow_root=True) == "images"


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG")
    return out.getvalue()


def test_an_image_over_the_pixel_budget_is_refused_before_decoding() -> None:
    # 81 M pixels: under Pillow's own bomb limit, over ours.
    with pytest.raises(UnsafeImage, match="decompression bomb guard"):
        render(_png((9000, 9000), "1"), 64, "big.png")


def test_truncated_image_data_is_reported_as_corrupt() -> None:
    data = _png((300, 300))
    with pytest.raises((UnsafeImage, NotPreviewable)):
        render(data[: len(data) // 2], 64, "cut.png")


def test_the_cache_renders_once_per_hash_and_size(tmp_path: Path) -> None:
    cache = PreviewCache(tmp_path)
    calls: list[int] = []

    def read() -> bytes:
        calls.append(1)
        return _png((100, 50))

    first = cache.get("md5-" + "a" * 32, 32, "x.png", None, read)
    second = cache.get("md5-" + "a" * 32, 32, "x.png", None, read)
    other = cache.get("md5-" + "a" * 32, 64, "x.png", None, read)
    assert (first.cached, second.cached, other.cached) == (False, True, False)
    assert len(calls) == 2 and first.path == second.path != other.path
    with Image.open(first.path) as made:
        assert made.size == (32, 16)
    with pytest.raises(InvalidInput):
        cache.get("../../etc", 32, "x.png", None, read)


@given(requested=st.integers(MIN_SIZE, MAX_SIZE))
def test_a_requested_preview_size_rounds_up_to_the_next_fixed_size(requested: int) -> None:
    size = preview_size(requested)
    assert size in PREVIEW_SIZES and size >= requested
    assert all(fixed < requested for fixed in PREVIEW_SIZES if fixed < size)


def test_every_requested_size_decodes_an_image_at_most_once_per_fixed_size(
    tmp_path: Path,
) -> None:
    cache = PreviewCache(tmp_path)
    reads: list[int] = []

    def read() -> bytes:
        reads.append(1)
        return _png((2000, 1000))

    for requested in range(MIN_SIZE, MAX_SIZE + 1):  # every size a client may ask for
        made = cache.get("md5-" + "b" * 32, preview_size(requested), "x.png", None, read)
        with Image.open(made.path) as image:
            assert max(image.size) == preview_size(requested)
    assert len(reads) == len(PREVIEW_SIZES)


def test_concurrent_misses_for_one_thumbnail_render_it_once(tmp_path: Path) -> None:
    cache = PreviewCache(tmp_path)
    reads: list[int] = []
    start = threading.Barrier(8)

    def read() -> bytes:
        reads.append(1)
        time.sleep(0.05)  # long enough for the other threads to miss too
        return _png((800, 600))

    def ask(_: int) -> bool:
        start.wait()
        return cache.get("md5-" + "c" * 32, 256, "x.png", None, read).cached

    with ThreadPoolExecutor(8) as pool:
        cached = list(pool.map(ask, range(8)))
    assert len(reads) == 1 and cached.count(False) == 1
