"""Upload sessions: resumable PUTs, owner-only, resumable on another web process, one commit."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from typing import Any

from indexer.errors import InvalidInput
from indexer.write.sessions import StagingArea
from tests.uploads.conftest import UploadWorld
from webhook_service import create_app
from webhook_service.app_settings import services as app_services


def _open(world: UploadWorld, who: str = "mia", **body: Any) -> str:
    answer = world.call("POST", f"/api/v1/datasets/{world.pid}/uploads", who, json=body)
    assert answer.status_code == 201, answer.get_json()
    session_id: str = answer.get_json()["id"]
    return session_id


def _put(
    world: UploadWorld, sid: str, path: str, data: bytes, who: str = "mia", **headers: str
) -> Any:
    token = {"PRIVATE-TOKEN": world.tokens[who]}
    return world.client.put(
        f"/api/v1/uploads/{sid}/files/{path}", data=data, headers={**token, **headers}
    )


def test_a_broken_transfer_resumes_from_the_acknowledged_offset_and_commits_once(
    upload_world: UploadWorld,
) -> None:
    world = upload_world
    sid = _open(world, folder="scans")
    assert len(sid) >= 32  # 192 random bits, URL-safe
    whole, big = b"small file", bytes(range(256)) * 600  # 153,600 bytes
    assert _put(world, sid, "a.bin", whole).get_json()["complete"] is True
    first = _put(
        world, sid, "sub/b.bin", big[:50_000], **{"Content-Range": f"bytes 0-49999/{len(big)}"}
    )
    assert first.get_json() == {
        "path": "sub/b.bin",
        "received": 50_000,
        "total": len(big),
        "complete": False,
    }
    head = world.client.head(
        f"/api/v1/uploads/{sid}/files/sub/b.bin", headers={"PRIVATE-TOKEN": world.tokens["mia"]}
    )
    assert head.headers["X-Dshub-Received"] == "50000" and head.headers["X-Dshub-Total"] == str(
        len(big)
    )
    early = world.call("POST", f"/api/v1/uploads/{sid}/commit", "mia", json={})
    assert early.status_code == 400 and "incomplete" in early.get_json()["error"]["message"]
    staging = StagingArea(world.root / "data" / "upload-sessions")
    assert staging.bytes_of([sid]) == len(whole) + 50_000  # the running total of the caps
    wrong = _put(
        world,
        sid,
        "sub/b.bin",
        big[60_000:],
        **{"Content-Range": f"bytes 60000-{len(big) - 1}/{len(big)}"},
    )
    assert wrong.status_code == 416 and wrong.headers["X-Dshub-Received"] == "50000"

    # The rest goes through a second web process of the same deployment: its own data
    # directory (its journal), the deployment's one staging directory.
    first = app_services(world.app).settings
    second = create_app(
        dataclasses.replace(
            first, data_dir=world.root / "data-b", upload_staging_dir=first.staging_dir
        )
    )
    try:
        client = second.test_client()
        token = {"PRIVATE-TOKEN": world.tokens["mia"]}
        rest = client.put(
            f"/api/v1/uploads/{sid}/files/sub/b.bin",
            data=big[50_000:],
            headers={**token, "Content-Range": f"bytes 50000-{len(big) - 1}/{len(big)}"},
        )
        assert rest.get_json()["complete"] is True
        done = client.post(
            f"/api/v1/uploads/{sid}/commit", headers=token, json={"message": "Scans"}
        )
        assert done.status_code == 201, done.get_json()
    finally:
        app_services(second).close()
    files = {f["path"]: f["md5"] for f in done.get_json()["files"]}
    assert files == {
        "scans/a.bin": hashlib.md5(whole).hexdigest(),
        "scans/sub/b.bin": hashlib.md5(big).hexdigest(),
    }
    assert world.admin.projects.get(world.pid).commits.list(get_all=False)[0].title == "Scans"
    assert not (world.root / "data" / "upload-sessions" / sid).exists()
    gone = world.call("POST", f"/api/v1/uploads/{sid}/commit", "mia", json={})
    assert gone.status_code == 404


def test_a_session_is_its_creators_only(upload_world: UploadWorld) -> None:
    world = upload_world
    sid = _open(world)
    unknown = _put(world, "x" * 32, "a.bin", b"x")
    assert unknown.status_code == 404
    for who in ("dev", "out", "admin"):
        answer = _put(world, sid, "a.bin", b"x", who=who)
        assert answer.status_code == 404 and answer.get_json() == unknown.get_json(), who
        assert world.call("DELETE", f"/api/v1/uploads/{sid}", who).status_code == 404
    assert (
        world.call("POST", f"/api/v1/datasets/{world.pid}/uploads", None, json={}).status_code
        == 401
    )
    for who, status in (("out", 404), ("gus", 403), ("rep", 403)):
        refused = world.call("POST", f"/api/v1/datasets/{world.pid}/uploads", who, json={})
        assert refused.status_code == status, who
    # Developers may open sessions (GitLab decides about the branch at commit).
    _open(world, "dev", new_branch="dev-scans", merge_request=True)


def test_abandoned_and_expired_sessions_leave_no_bytes(upload_world: UploadWorld) -> None:
    world = upload_world
    sid = _open(world)
    assert _put(world, sid, "a.bin", b"abandon me").status_code == 200
    staged = world.root / "data" / "upload-sessions" / sid
    assert staged.exists()
    assert world.call("DELETE", f"/api/v1/uploads/{sid}", "mia").status_code == 204
    assert not staged.exists() and _put(world, sid, "a.bin", b"x").status_code == 404

    old = _open(world)
    assert _put(world, old, "a.bin", b"expire me").status_code == 200
    with sqlite3.connect(world.root / "data" / "index.sqlite3") as db:
        db.execute(
            "UPDATE upload_sessions SET expires_at = '2000-01-01T00:00:00+00:00' WHERE id = ?",
            (old,),
        )
    assert _put(world, old, "a.bin", b"x").status_code == 404
    _open(world)  # creating a session sweeps expired ones
    assert not (world.root / "data" / "upload-sessions" / old).exists()


def test_a_session_file_over_the_limit_is_413(upload_world: UploadWorld) -> None:
    world = upload_world
    sid = _open(world)
    limit = app_services(world.app).settings.upload_max_bytes
    declared = _put(world, sid, "big.bin", b"x", **{"Content-Range": f"bytes 0-0/{limit + 1}"})
    assert declared.status_code == 413 and declared.get_json()["error"]["max_bytes"] == limit
    streamed = _put(world, sid, "big.bin", b"x" * (limit + 1))
    assert streamed.status_code == 413
    head = world.client.head(
        f"/api/v1/uploads/{sid}/files/big.bin", headers={"PRIVATE-TOKEN": world.tokens["mia"]}
    )
    assert head.status_code == 404  # nothing of a refused file is kept
    bad = _put(world, sid, "../up.bin", b"x")
    assert bad.status_code in (400, 404)


def _objects(world: UploadWorld) -> dict[str, Any]:
    listed = world.bucket.client().list_objects_v2(Bucket=world.bucket.name)
    return {item["Key"]: item["LastModified"] for item in listed.get("Contents", [])}


def test_each_completed_file_is_stored_at_once_and_a_failed_commit_can_be_retried(
    upload_world: UploadWorld,
) -> None:
    world = upload_world
    sid = _open(world, folder="early")
    whole, big = b"stored while the rest arrives", bytes(range(256)) * 100
    assert _put(world, sid, "a.bin", whole).get_json()["complete"] is True
    key = f"datasets/{world.pid}/files/md5/{hashlib.md5(whole).hexdigest()[:2]}/"
    key += hashlib.md5(whole).hexdigest()[2:]
    assert list(_objects(world)) == [key]  # the completed file, before any commit
    partial = _put(world, sid, "b.bin", big[:1000], **{"Content-Range": f"bytes 0-999/{len(big)}"})
    assert partial.get_json()["complete"] is False
    assert list(_objects(world)) == [key]  # an incomplete file is not stored
    rest = _put(
        world,
        sid,
        "b.bin",
        big[1000:],
        **{"Content-Range": f"bytes 1000-{len(big) - 1}/{len(big)}"},
    )
    assert rest.get_json()["complete"] is True
    stored = _objects(world)
    assert len(stored) == 2

    head = world.admin.projects.get(world.pid).branches.get("main").commit["id"]
    world.sandbox.faults.fail_next(
        count=5, status=503, path_contains="/repository/commits", method="POST"
    )
    failed = world.call("POST", f"/api/v1/uploads/{sid}/commit", "mia", json={})
    world.sandbox.faults.reset()
    assert failed.status_code == 503 and "retry" in failed.get_json()["error"]["message"]
    assert world.admin.projects.get(world.pid).branches.get("main").commit["id"] == head
    # Nothing of the session was lost with the failed commit: the retry commits both files,
    # and the objects stored at the PUTs are not written again.
    done = world.call("POST", f"/api/v1/uploads/{sid}/commit", "mia", json={"message": "Early"})
    assert done.status_code == 201, done.get_json()
    assert {f["path"] for f in done.get_json()["files"]} == {"early/a.bin", "early/b.bin"}
    assert _objects(world) == stored
    repo = world.clone("early-clone")
    repo.dvc("pull", "-q")
    assert (repo.path / "early" / "a.bin").read_bytes() == whole
    assert (repo.path / "early" / "b.bin").read_bytes() == big


def test_a_session_counts_its_files_without_listing_them(tmp_path: Any) -> None:
    staging = StagingArea(tmp_path)
    too_large = lambda: InvalidInput("too large")  # noqa: E731

    def write(path: str, data: bytes) -> int:
        chunks = iter((data,))
        return staging.write(
            "s1",
            path,
            start=0,
            total=len(data),
            read=lambda: next(chunks, b""),
            limit=100,
            too_large=too_large,
            max_files=2,
        )

    assert write("a", b"12") == 2 and write("b", b"345") == 3
    assert write("a", b"6789") == 4  # the same file again is not another file
    try:
        write("c", b"x")
    except InvalidInput as exc:
        assert "at most 2 files" in exc.message
    else:
        raise AssertionError("a third file was accepted")
    assert staging.bytes_of(["s1"]) == 7 and staging.received("s1", "c") is None
