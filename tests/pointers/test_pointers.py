"""Pointer parsing: real `dvc add`/`dvc import`/`dvc repro` output, DVC 2 legacy files, bad data."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from indexer.data.pointers import (
    LEGACY_HASH,
    ManifestEntry,
    PointerError,
    is_pointer_path,
    iter_manifest,
    media_type,
    object_key,
    parse_dvc_file,
    parse_dvc_lock,
    parse_pointer,
)


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True, text=True)


def _dvc_repo(root: Path, env: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    _run(["git", "init", "-q"], root, env)
    _run(["dvc", "init", "-q"], root, env)
    return root


@pytest.fixture
def dvc3_repo(tmp_path: Path, dvc_env: dict[str, str]) -> Path:
    """A repo made by the installed dvc: a tracked dir, a CRLF text file, a pipeline output."""
    repo = _dvc_repo(tmp_path / "src", dvc_env)
    (repo / "data" / "images" / "sub").mkdir(parents=True)
    (repo / "data" / "images" / "a.png").write_bytes(b"\x89PNG" + bytes(range(96)))
    (repo / "data" / "images" / "sub" / "b.tif").write_bytes(b"II*\x00" + bytes(46))
    (repo / "notes.txt").write_bytes(b"line1\r\nline2\r\n")
    _run(["dvc", "add", "-q", "data/images", "notes.txt"], repo, dvc_env)
    _run(
        [
            "dvc",
            "stage",
            "add",
            "-q",
            "-n",
            "gen",
            "-o",
            "out.bin",
            "head -c 1000 /dev/zero > out.bin",
        ],
        repo,
        dvc_env,
    )
    _run(["dvc", "repro", "-q"], repo, dvc_env)
    _run(["git", "add", "-A"], repo, dvc_env)
    _run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "data"],
        repo,
        dvc_env,
    )
    return repo


def test_dvc3_directory_pointer_gives_dir_out_with_repo_relative_path(dvc3_repo: Path) -> None:
    text = (dvc3_repo / "data" / "images.dvc").read_text()
    (out,) = parse_dvc_file(text, "data/images.dvc")
    manifest = dvc3_repo / ".dvc" / "cache" / "files" / "md5" / out.md5[:2] / (out.md5[2:] + ".dir")
    assert out.path == "data/images"
    assert out.is_dir and out.hash_name == "md5" and not out.legacy
    assert out.nfiles == 2 and out.size == 150
    assert out.oid == out.md5 + ".dir" and out.hash_info.isdir
    assert manifest.exists()
    entries = list(iter_manifest(manifest.open("rb"), "manifest"))
    assert [e.relpath for e in entries] == ["a.png", "sub/b.tif"]
    assert entries[0].md5 == hashlib.md5((dvc3_repo / "data/images/a.png").read_bytes()).hexdigest()


def test_dvc3_file_pointer_keeps_the_raw_md5_and_size(dvc3_repo: Path) -> None:
    (out,) = parse_pointer((dvc3_repo / "notes.txt.dvc").read_bytes(), "notes.txt.dvc")
    assert out.path == "notes.txt" and not out.is_dir
    assert out.md5 == hashlib.md5(b"line1\r\nline2\r\n").hexdigest()
    assert out.size == 14 and out.hash_name == "md5"


def test_dvc_lock_stage_outputs_are_pointers(dvc3_repo: Path) -> None:
    outs = parse_pointer((dvc3_repo / "dvc.lock").read_text(), "dvc.lock")
    assert [(o.path, o.md5, o.size, o.pointer_path) for o in outs] == [
        ("out.bin", hashlib.md5(bytes(1000)).hexdigest(), 1000, "dvc.lock")
    ]


def test_dvc_import_pointer_is_marked_imported_not_ours(
    dvc3_repo: Path, tmp_path: Path, dvc_env: dict[str, str]
) -> None:
    repo = _dvc_repo(tmp_path / "importer", dvc_env)
    _run(["dvc", "import", "-q", str(dvc3_repo), "data/images/a.png", "-o", "a.png"], repo, dvc_env)
    (out,) = parse_dvc_file((repo / "a.png.dvc").read_text(), "a.png.dvc")
    assert out.imported and out.import_url == str(dvc3_repo)
    assert out.md5 == hashlib.md5((dvc3_repo / "data/images/a.png").read_bytes()).hexdigest()


def test_dvc2_pointer_without_hash_field_uses_legacy_hash_and_layout() -> None:
    # As written by dvc 2.58.2 (research/dvc-facts.md 1.6).
    text = "outs:\n- md5: dbbfd4dcf572163c75a59571131c51cd.dir\n  size: 3004\n  nfiles: 2\n  path: images\n"
    (out,) = parse_dvc_file(text, "images.dvc")
    assert out.hash_name == LEGACY_HASH and out.legacy and out.is_dir
    assert object_key("site/7", out.md5, out.hash_name, out.is_dir) == (
        "site/7/db/bfd4dcf572163c75a59571131c51cd.dir"
    )
    assert object_key("site/7", out.md5, "md5", False) == (
        "site/7/files/md5/db/bfd4dcf572163c75a59571131c51cd"
    )


def test_pointer_in_subdirectory_with_wdir_resolves_relative_to_it() -> None:
    text = "wdir: inner\nouts:\n- md5: ef7047c431f5b02eca5b1d618457795d\n  hash: md5\n  path: x/a.jpg\n"
    (out,) = parse_dvc_file(text, "sets/a.dvc")
    assert out.path == "sets/inner/x/a.jpg"


BAD_POINTERS: dict[str, str | bytes] = {
    "invalid YAML": "outs: [\n",
    "missing md5": "outs:\n- path: a.jpg\n  hash: md5\n",
    "unknown hash": "outs:\n- md5: ef7047c431f5b02eca5b1d618457795d\n  hash: sha256\n  path: a\n",
    "does not match DVC's schema": "outs:\n- md5: ef7047c431f5b02eca5b1d618457795d\n  size: big\n  path: a\n",
    "leaves the pointer's directory": "outs:\n- md5: ef7047c431f5b02eca5b1d618457795d\n  path: ../etc/passwd\n",
    "absolute": "outs:\n- md5: ef7047c431f5b02eca5b1d618457795d\n  path: /etc/passwd\n",
    "invalid md5": "outs:\n- md5: not-a-digest\n  path: a\n",
    "expected a YAML mapping": "- just\n- a list\n",
    "no `outs`": "md5: 74256d67f8298e8207cecd69c0266c90\n",
    "not UTF-8": b"outs:\n- path: \xff\n",
}


@pytest.mark.parametrize("problem", sorted(BAD_POINTERS))
def test_bad_pointer_raises_pointer_error_naming_file_and_problem(problem: str) -> None:
    with pytest.raises(PointerError) as caught:
        parse_pointer(BAD_POINTERS[problem], "some/dir/bad.dvc")
    assert caught.value.message.startswith("some/dir/bad.dvc: ")
    assert problem in caught.value.message


def test_bad_lock_file_raises_pointer_error() -> None:
    with pytest.raises(PointerError, match=r"dvc\.lock: does not match DVC's schema"):
        parse_dvc_lock("schema: '1.0'\nstages: {}\n", "dvc.lock")


_yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=40),
    st.sampled_from(["md5", "md5-dos2unix", "sha1"]),
)
_outs = st.lists(
    st.dictionaries(
        st.sampled_from(["md5", "path", "size", "nfiles", "hash", "etag", "cache"]),
        st.one_of(
            _yaml_scalars,
            st.sampled_from(
                ["ef7047c431f5b02eca5b1d618457795d", "ab" * 16 + ".dir", "a/b.jpg", "../x"]
            ),
        ),
    ),
    max_size=3,
)


@given(
    st.one_of(
        st.text(max_size=200),
        st.builds(lambda outs: yaml.safe_dump({"outs": outs}), _outs),
        st.builds(
            lambda outs, deps: yaml.safe_dump({"outs": outs, "deps": deps}),
            _outs,
            st.lists(st.dictionaries(st.sampled_from(["path", "repo"]), _yaml_scalars), max_size=2),
        ),
    )
)
def test_any_pointer_text_parses_or_raises_pointer_error(text: str) -> None:
    try:
        outs = parse_dvc_file(text, "gen.dvc")
    except PointerError as exc:
        assert exc.message.startswith("gen.dvc")
        return
    for out in outs:
        assert len(out.md5) == 32 and out.hash_name in ("md5", LEGACY_HASH)
        assert not out.path.startswith("/") and ".." not in out.path.split("/")


@given(st.binary(max_size=300))
def test_any_manifest_bytes_parse_or_raise_pointer_error(data: bytes) -> None:
    try:
        entries = list(iter_manifest(io.BytesIO(data), "m.dir", chunk_size=7))
    except PointerError as exc:
        assert exc.message.startswith("m.dir: ")
        return
    assert all(isinstance(e, ManifestEntry) for e in entries)


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s and s != ".."),
            st.binary(max_size=4),
        ),
        max_size=30,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_streamed_manifest_equals_json_load_whatever_the_chunk_size(
    items: list[tuple[str, bytes]], chunk_size: int
) -> None:
    entries = [{"md5": hashlib.md5(b).hexdigest(), "relpath": f"d/{name}"} for name, b in items]
    if any("\x00" in e["relpath"] for e in entries):
        return
    data = json.dumps(entries).encode()
    parsed = list(iter_manifest(io.BytesIO(data), "m.dir", chunk_size=chunk_size))
    assert [(e.relpath, e.md5) for e in parsed] == [(e["relpath"], e["md5"]) for e in entries]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "truncated"),
        (b'{"md5": "x"}', "must be a JSON list"),
        (b'[{"md5": "' + b"0" * 32 + b'", "relpath": "a"}', "truncated"),
        (b'[{"md5": "' + b"0" * 32 + b'", "relpath": "a"}] trailing', "data after the end"),
        (b'[{"relpath": "a"}]', "missing or invalid md5"),
        (b'[{"md5": "' + b"0" * 32 + b'", "relpath": "../../etc"}]', "unsafe relpath"),
        (b'[{"md5": "' + b"0" * 32 + b'"}]', "missing relpath"),
    ],
)
def test_bad_manifest_raises_pointer_error(data: bytes, problem: str) -> None:
    with pytest.raises(PointerError, match=problem):
        list(iter_manifest(io.BytesIO(data), "ab.dir"))


def test_manifest_of_100k_entries_streams_in_small_chunks() -> None:
    entries = [
        {"md5": f"{i:032x}", "relpath": f"part{i % 7}/img_{i:06d}.jpg"} for i in range(100_000)
    ]
    stream = io.BytesIO(json.dumps(entries).encode())
    count = 0
    last = None
    for entry in iter_manifest(stream, "big.dir", chunk_size=4096):
        count += 1
        last = entry
    assert count == 100_000
    assert last == ManifestEntry("part4/img_099999.jpg", f"{99_999:032x}")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("scan/A.TIF", "image/tiff"),
        ("x.tiff", "image/tiff"),
        ("x.webp", "image/webp"),
        ("brain.nii.gz", "application/x-nifti+gzip"),
        ("brain.nii", "application/x-nifti"),
        ("arr.npy", "application/x-npy"),
        ("t.parquet", "application/vnd.apache.parquet"),
        ("w.h5", "application/x-hdf5"),
        ("p.jpg", "image/jpeg"),
        ("p.png", "image/png"),
        ("labels.csv", "text/csv"),
        ("archive.tar.gz", "application/x-tar"),
        ("noext", "application/octet-stream"),
    ],
)
def test_media_type_comes_from_the_extension(path: str, expected: str) -> None:
    assert media_type(path) == expected


def test_object_key_refuses_unknown_hash_and_bad_md5() -> None:
    with pytest.raises(PointerError, match="unknown hash"):
        object_key("p", "0" * 32, "sha256", False)
    with pytest.raises(PointerError, match="invalid md5"):
        object_key("p", "../../x", "md5", False)


def test_pointer_paths_are_dvc_files_and_lock_files() -> None:
    assert (
        is_pointer_path("a/b.dvc") and is_pointer_path("dvc.lock") and is_pointer_path("s/dvc.lock")
    )
    assert not is_pointer_path(".dvc") and not is_pointer_path("a/.dvc/config")
    assert not is_pointer_path("README.md")
