"""Every refusal of the write path: the status, a message a person can act on, nothing written."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.uploads.conftest import MAX_BYTES, POINTER_WARN, UploadWorld, make_dataset


def _keys(world: UploadWorld) -> set[str]:
    listed = world.bucket.client().list_objects_v2(Bucket=world.bucket.name)
    return {item["Key"] for item in listed.get("Contents", [])}


def _head(world: UploadWorld, pid: int | None = None) -> str:
    return str(world.admin.projects.get(pid or world.pid).branches.get("main").commit["id"])


def _error(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.get_json()
    error: dict[str, Any] = answer.get_json()["error"]
    return error


def _commit(world: UploadWorld, files: dict[str, str]) -> None:
    world.admin.projects.get(world.pid).commits.create(
        {
            "branch": "main",
            "commit_message": "set up",
            "actions": [
                {"action": "create", "file_path": path, "content": content}
                for path, content in files.items()
            ],
        }
    )


@pytest.mark.parametrize(
    ("fields", "name", "needle"),
    [
        ({"folder": "../up"}, "a.png", "folder"),
        ({"folder": ".dvc"}, "a.png", "DVC's own files"),
        ({"folder": ".git/hooks"}, "a.png", "git's"),
        ({"folder": "a\\b"}, "a.png", "backslash"),
        ({"folder": "C:/x"}, "a.png", "relative"),
        ({}, "../escape.png", "file name"),
        ({}, "bad\x01name.png", "control character"),
        ({}, "sneaky.dvc", ".dvc"),
        ({}, "sub/.gitignore", "not data paths"),
        ({"layout": "zip"}, "a.png", "layout"),
        ({"layout": "directory"}, "a.png", "needs a folder"),
        ({"merge_request": "true"}, "a.png", "new_branch"),
        ({"confirm": "maybe"}, "a.png", "true or false"),
    ],
)
def test_bad_input_is_400_and_nothing_is_written(
    upload_world: UploadWorld, fields: dict[str, Any], name: str, needle: str
) -> None:
    head = _head(upload_world)
    error = _error(upload_world.upload("mia", {name: b"bytes"}, **fields), 400)
    assert error["code"] == "invalid_input" and needle in error["message"]
    assert _head(upload_world) == head and _keys(upload_world) == set()


def test_a_bad_folder_in_the_query_is_refused_before_the_body_is_read(
    upload_world: UploadWorld,
) -> None:
    answer = upload_world.upload("mia", {"a.png": b"x"}, query="folder=..%2Fx")
    assert _error(answer, 400)["code"] == "invalid_input"


def test_a_file_over_the_limit_is_413_publishing_the_limit(upload_world: UploadWorld) -> None:
    answer = upload_world.upload("mia", {"big.bin": b"x" * (MAX_BYTES + 1)})
    error = _error(answer, 413)
    assert error["max_bytes"] == MAX_BYTES and str(MAX_BYTES) in error["message"]
    assert not list((upload_world.root / "data" / "uploads").glob("*.part"))
    assert _keys(upload_world) == set()


def test_a_declared_md5_the_bytes_do_not_match_is_422(upload_world: UploadWorld) -> None:
    data = b"some bytes"
    right = hashlib.md5(data).hexdigest()
    wrong = upload_world.upload("mia", {"a.bin": data}, md5="0" * 32)
    assert _error(wrong, 422)["code"] == "unprocessable"
    assert _keys(upload_world) == set()
    assert upload_world.upload("mia", {"a.bin": data}, md5=right).status_code == 201


def test_more_pointers_than_the_warning_need_confirm(upload_world: UploadWorld) -> None:
    files = {f"f{i}.bin": f"{i}".encode() for i in range(POINTER_WARN + 1)}
    error = _error(upload_world.upload("mia", files, folder="many"), 422)
    assert error["code"] == "too_many_pointers" and "layout=directory" in error["message"]
    assert _keys(upload_world) == set()


def test_uploads_before_a_site_is_selected_are_409(upload_world: UploadWorld) -> None:
    empty = make_dataset(upload_world, upload_world.group, "empty")
    error = _error(upload_world.upload("mia", {"a.bin": b"x"}, pid=int(empty.id)), 409)
    assert error["message"].startswith("select a storage site first")


@pytest.mark.parametrize(
    ("files", "target", "needle"),
    [
        ({}, "README.md", "git itself tracks README.md"),
        ({"docs/notes.txt": "plain"}, "docs/notes.txt/x.png", "is a file in git"),
        (
            {
                "old.dvc": "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  size: 3\n"
                "  nfiles: 1\n  path: old\n"
            },
            "old/new.png",
            "DVC 2 directory",
        ),
        (
            {
                "ghost.dvc": "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  size: 3\n"
                "  nfiles: 1\n  hash: md5\n  path: ghost\n"
            },
            "ghost/new.png",
            "missing from the storage site",
        ),
        (
            {"dvc.yaml": "stages:\n  train:\n    cmd: python train.py\n    outs:\n    - model\n"},
            "model/weights.bin",
            "output of a pipeline stage",
        ),
        (
            {
                "ext.csv.dvc": "md5: fedcba9876543210fedcba9876543210\nfrozen: true\ndeps:\n- path: data/ext.csv\n  repo:\n"
                "    url: https://example.com/other.git\n    rev_lock: abc\nouts:\n"
                "- md5: 0123456789abcdef0123456789abcdef\n  size: 3\n  hash: md5\n"
                "  path: ext.csv\n"
            },
            "ext.csv",
            "imported",
        ),
    ],
)
def test_paths_dshub_must_not_write_are_409_with_the_reason(
    upload_world: UploadWorld, files: dict[str, str], target: str, needle: str
) -> None:
    if files:
        _commit(upload_world, files)
    head = _head(upload_world)
    folder, _, name = target.rpartition("/")
    error = _error(upload_world.upload("mia", {name: b"data"}, folder=folder), 409)
    assert needle in error["message"]
    assert _head(upload_world) == head and _keys(upload_world) == set()


def test_deleting_or_moving_what_is_not_there(upload_world: UploadWorld) -> None:
    base = f"/api/v1/datasets/{upload_world.pid}/files"
    assert _error(upload_world.call("DELETE", f"{base}/nope.png", "mia"), 404)
    assert _error(upload_world.call("DELETE", f"{base}/README.md", "mia"), 409)
    empty = upload_world.call("DELETE", base, "mia", json={"paths": []})
    assert _error(empty, 400)["message"].startswith('send {"paths"')
    bad = upload_world.call("POST", f"{base}/move", "mia", json={"from": "a"})
    assert _error(bad, 400)
    assert _error(
        upload_world.call("POST", f"{base}/move", "mia", json={"from": "a", "to": "a/b"}), 400
    )
    assert upload_world.upload("mia", {"a.bin": b"1", "b.bin": b"2"}, folder="d").status_code == 201
    taken = upload_world.call(
        "POST", f"{base}/move", "mia", json={"from": "d/a.bin", "to": "d/b.bin"}
    )
    assert "already exists" in _error(taken, 409)["message"]
