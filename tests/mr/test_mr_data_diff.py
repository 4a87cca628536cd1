"""A merge request's data diff, end to end: real dvc data in moto S3, the diff endpoint, the
MR note kept in place through webhook → receiver → RQ → worker, and the permission checks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import gitlab
import requests

from indexer.sync.mr_note import MARKER
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, dshub, work_until
from tests.support.dataset_repo import DatasetRepo, image_bytes


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _our_notes(project: Any, iid: int) -> list[Any]:
    return [n for n in project.mergerequests.get(iid).notes.list() if MARKER in n.body]


def test_merge_request_diff_is_exact_and_its_note_is_kept_in_place(
    tmp_path: Path,
    service: Gunicorn,
    service_env: dict[str, str],
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    s3_bucket: S3Bucket,
    lab_site: str,
    dvc_env: dict[str, str],
) -> None:
    hooks = dshub(
        service_env, "hooks", "install", "--system", "--url", f"{service.url}/webhooks/gitlab"
    )
    assert hooks.returncode == 0, hooks.stderr
    group = gitlab_admin.groups.create({"name": "vision", "path": "vision"})
    project = gitlab_admin.projects.create(
        {"name": "cats", "namespace_id": group.id, "visibility": "private"}
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": lab_site})
    repo = DatasetRepo(
        tmp_path / "work", gitlab_sandbox.url, "vision/cats", gitlab_sandbox.admin_token, dvc_env
    )
    repo.init_dvc_s3(s3_bucket, f"team/{project.id}")
    old = {
        "a.bin": image_bytes(1, 1000),
        "b.bin": image_bytes(2, 2000),
        "images/cat0.png": image_bytes(3, 300),
        "images/cat1.png": image_bytes(4, 400),
        "images/keep.png": image_bytes(5, 500),
    }
    for path, data in old.items():
        repo.write(path, data)
    repo.track("a.bin", "b.bin", "images")
    repo.commit_and_push("Add data")
    admin = {"PRIVATE-TOKEN": gitlab_sandbox.admin_token}

    def indexed() -> bool:
        url = f"{service.url}/api/v1/datasets/{project.id}"
        return requests.get(url, headers=admin, timeout=10).status_code == 200

    work_until(service_env, indexed)

    # On a branch: modify a.bin, remove b.bin, add c.bin; in images/ modify cat1, remove
    # cat0, add a file whose name needs escaping in markdown.
    repo.git("checkout", "-q", "-b", "more")
    new = {
        "a.bin": image_bytes(6, 1500),
        "c.bin": image_bytes(7, 600),
        "images/cat1.png": image_bytes(8, 3000),
        "images/x|y_*.png": image_bytes(9, 700),
    }
    for path, data in new.items():
        repo.write(path, data)
    repo.dvc("remove", "-q", "b.bin.dvc")
    (repo.path / "b.bin").unlink()
    (repo.path / "images" / "cat0.png").unlink()
    repo.track("a.bin", "c.bin", "images")
    repo.commit_and_push("Change data", branch="more")
    mr = project.mergerequests.create(
        {"source_branch": "more", "target_branch": "main", "title": "More cats"}
    )

    # The MR hook reaches the receiver, the worker writes the note.
    work_until(service_env, lambda: len(_our_notes(project, mr.iid)) == 1)
    diff_url = f"{service.url}/api/v1/datasets/{project.id}/merge_requests/{mr.iid}/diff"
    body = requests.get(diff_url, headers=admin, timeout=30).json()
    assert [f["path"] for f in body["added"]] == ["c.bin", "images/x|y_*.png"]
    assert [f["path"] for f in body["removed"]] == ["b.bin", "images/cat0.png"]
    assert [f["path"] for f in body["modified"]] == ["a.bin", "images/cat1.png"]
    assert (body["added_total"], body["removed_total"], body["modified_total"]) == (2, 2, 2)
    modified = {f["path"]: f for f in body["modified"]}
    assert modified["images/cat1.png"]["old_md5"] == _md5(old["images/cat1.png"])
    assert modified["images/cat1.png"]["new_md5"] == _md5(new["images/cat1.png"])
    assert (modified["a.bin"]["old_size"], modified["a.bin"]["new_size"]) == (1000, 1500)
    assert body["bytes_added"] == sum(len(data) for data in new.values())
    assert body["bytes_removed"] == sum(
        len(old[p]) for p in ("a.bin", "b.bin", "images/cat0.png", "images/cat1.png")
    )
    assert body["unsized"] == 0 and body["problems"] == []
    assert sorted(body["pointers_changed"]) == ["a.bin.dvc", "b.bin.dvc", "c.bin.dvc", "images.dvc"]
    capped = requests.get(diff_url, params={"limit": 1}, headers=admin, timeout=30).json()
    assert len(capped["added"]) == 1 and capped["added_total"] == 2
    bad_limit = requests.get(diff_url, params={"limit": "0"}, headers=admin, timeout=30)
    assert bad_limit.status_code == 400

    [note] = _our_notes(project, mr.iid)
    assert "| added | c\\.bin |" in note.body
    assert "x\\|y\\_\\*\\.png" in note.body  # the pipe cannot break the table
    assert "**2** added, **2** removed, **2** modified" in note.body

    # Another push to the source branch: the same note is edited, never a second one.
    repo.write("d.bin", image_bytes(10, 100))
    repo.track("d.bin")
    repo.commit_and_push("One more", branch="more")

    def note_mentions_d() -> bool:
        notes = _our_notes(project, mr.iid)
        return len(notes) == 1 and "d\\.bin" in notes[0].body

    work_until(service_env, note_mentions_d)
    [edited] = _our_notes(project, mr.iid)
    assert edited.id == note.id
    assert "**3** added" in edited.body

    # Permissions: anonymous and non-members get the 404 of a dataset that does not exist;
    # a Reporter reads the diff.
    missing = requests.get(
        f"{service.url}/api/v1/datasets/999999/merge_requests/{mr.iid}/diff", timeout=10
    )
    anonymous = requests.get(diff_url, timeout=10)
    _, outsider_token = gitlab_sandbox.create_user("outsider")
    outsider = requests.get(diff_url, headers={"PRIVATE-TOKEN": outsider_token}, timeout=10)
    assert anonymous.status_code == outsider.status_code == missing.status_code == 404
    assert anonymous.json()["error"]["message"] == f"dataset {project.id} not found"
    assert outsider.json() == anonymous.json()
    reporter, reporter_token = gitlab_sandbox.create_user("reporter")
    project.members.create({"user_id": reporter.id, "access_level": 20})
    seen = requests.get(diff_url, headers={"PRIVATE-TOKEN": reporter_token}, timeout=30)
    assert seen.status_code == 200 and seen.json()["added_total"] == 3
    gone = requests.get(
        f"{service.url}/api/v1/datasets/{project.id}/merge_requests/999/diff",
        headers=admin,
        timeout=10,
    )
    assert gone.status_code == 404
