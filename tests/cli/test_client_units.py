"""The CLI client's pure parts: configuration, output names, hash verification."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest

from dshub.client import file_path
from dshub.config import ClientConfig
from dshub.download import compute_hash, safe_output_name
from indexer.errors import InvalidInput


def test_environment_wins_over_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"url": "http://file:1", "token": "from-file"}))
    loaded = ClientConfig.load({"DSHUB_URL": "http://127.0.0.1:9/"}, config)
    assert loaded.url == "http://127.0.0.1:9"
    assert loaded.token == "from-file"
    assert "from-file" not in repr(loaded)


def test_missing_server_says_how_to_configure_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="set DSHUB_URL"):
        ClientConfig.load({}, tmp_path / "absent.json")


def test_bad_config_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{oops")
    with pytest.raises(InvalidInput, match="is not valid JSON"):
        ClientConfig.load({}, config)


def test_leading_slash_means_the_dataset_root() -> None:
    assert file_path(4473, "/dataset/VITVI/a b.jpg") == file_path(4473, "dataset/VITVI/a b.jpg")
    assert file_path(4473, "/dataset/x.jpg") == "/api/v1/datasets/4473/files/dataset/x.jpg"
    with pytest.raises(InvalidInput):
        file_path(1, "/")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "..\\x", "a\x00"])
def test_output_names_cannot_escape_the_output_directory(name: str) -> None:
    with pytest.raises(InvalidInput):
        safe_output_name(name)


def test_dvc2_text_files_hash_after_crlf_to_lf() -> None:
    crlf = b"line1\r\nline2\r\n"
    assert compute_hash(io.BytesIO(crlf), "md5") == hashlib.md5(crlf).hexdigest()
    assert (
        compute_hash(io.BytesIO(crlf), "md5-dos2unix") == hashlib.md5(b"line1\nline2\n").hexdigest()
    )
    binary = bytes(range(256)) * 10 + b"\r\n"
    assert compute_hash(io.BytesIO(binary), "md5-dos2unix") == hashlib.md5(binary).hexdigest()


def test_git_files_verify_with_the_blob_id(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_bytes(b"# hello\n")
    expected = subprocess.run(
        ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()
    with path.open("rb") as handle:
        assert compute_hash(handle, "git-sha1") == expected


def test_unknown_hash_name_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown hash"):
        compute_hash(io.BytesIO(b""), "sha3")
