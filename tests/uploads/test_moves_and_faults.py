"""Moving folders and tracked directories, deleting folders, and faults after bytes are stored."""

from __future__ import annotations

from typing import Any

from tests.uploads.conftest import UploadWorld


def _move(world: UploadWorld, source: str, target: str) -> Any:
    body = {"from": source, "to": target}
    return world.call("POST", f"/api/v1/datasets/{world.pid}/files/move", "mia", json=body)


def _names(world: UploadWorld) -> set[str]:
    tree = world.admin.projects.get(world.pid).repository_tree(recursive=True, get_all=True)
    return {entry["path"] for entry in tree if entry["type"] == "blob"}


def test_folders_and_tracked_directories_move_and_folders_delete(upload_world: UploadWorld) -> None:
    world = upload_world
    files = {"a.bin": b"a" * 10, "b.bin": b"b" * 20}
    assert world.upload("mia", files, folder="raw/day1").status_code == 201
    assert world.upload("mia", files, folder="set", layout="directory").status_code == 201
    pointer = world.pointer("set.dvc")

    moved = _move(world, "raw", "archive")
    assert moved.status_code == 201, moved.get_json()
    assert {f["path"] for f in moved.get_json()["files"]} == {
        "archive/day1/a.bin",
        "archive/day1/b.bin",
    }
    names = _names(world)
    assert {"archive/day1/a.bin.dvc", "archive/day1/b.bin.dvc", "archive/day1/.gitignore"} <= names
    assert not any(name.startswith("raw/") for name in names)

    renamed = _move(world, "set", "sets/final")
    assert renamed.status_code == 201, renamed.get_json()
    assert world.pointer("sets/final.dvc") == pointer.replace(b"path: set\n", b"path: final\n")
    assert world.pointer("sets/.gitignore") == b"/final\n"
    assert ".gitignore" not in _names(world)  # emptied, so deleted, as `dvc remove` does

    into = _move(world, "archive/day1/a.bin", "sets/final/a-copy.bin")
    assert into.status_code == 201, into.get_json()
    assert b"nfiles: 3" in world.pointer("sets/final.dvc")

    gone = world.call("DELETE", f"/api/v1/datasets/{world.pid}/files/archive", "mia")
    assert gone.status_code == 201, gone.get_json()
    assert [f["path"] for f in gone.get_json()["files"]] == ["archive/day1/b.bin"]
    assert not any(name.startswith("archive/") for name in _names(world))


def test_a_gitlab_failure_after_the_bytes_are_stored_commits_nothing_and_a_retry_lands(
    upload_world: UploadWorld,
) -> None:
    world = upload_world
    head = world.admin.projects.get(world.pid).branches.get("main").commit["id"]
    world.sandbox.faults.fail_next(
        count=5, status=503, path_contains="/repository/commits", method="POST"
    )
    failed = world.upload("mia", {"x.bin": b"precious"}, folder="f")
    assert failed.status_code == 503
    assert "retry" in failed.get_json()["error"]["message"]
    assert world.admin.projects.get(world.pid).branches.get("main").commit["id"] == head
    listed = world.bucket.client().list_objects_v2(Bucket=world.bucket.name)
    assert len(listed.get("Contents", [])) == 1  # the object waits, unreferenced, for gc
    world.sandbox.faults.reset()
    again = world.upload("mia", {"x.bin": b"precious"}, folder="f")
    assert again.status_code == 201 and again.get_json()["files"][0]["action"] == "created"


def test_a_storage_failure_commits_nothing(upload_world: UploadWorld) -> None:
    world = upload_world
    head = world.admin.projects.get(world.pid).branches.get("main").commit["id"]
    client = world.bucket.client()
    client.put_bucket_policy(
        Bucket=world.bucket.name,
        Policy='{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*",'
        f'"Action":"s3:PutObject","Resource":"arn:aws:s3:::{world.bucket.name}/*"}}]}}',
    )
    try:
        answer = world.upload("mia", {"y.bin": b"never stored"}, folder="f")
    finally:
        client.delete_bucket_policy(Bucket=world.bucket.name)
    assert answer.status_code == 503, answer.get_json()
    assert world.admin.projects.get(world.pid).branches.get("main").commit["id"] == head
