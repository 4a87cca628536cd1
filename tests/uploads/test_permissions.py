"""Who may write: the permission matrix of every write route, and GitLab's protected branch."""

from __future__ import annotations

from typing import Any

import pytest

from tests.uploads.conftest import UploadWorld

# anonymous, non-member, Guest, Reporter: refused; Developer: GitLab refuses the protected
# default branch; Maintainer: allowed.
MATRIX = [(None, 401), ("out", 404), ("gus", 403), ("rep", 403), ("dev", 403), ("mia", 201)]


def _route(world: UploadWorld, name: str, who: str | None) -> Any:
    base = f"/api/v1/datasets/{world.pid}/files"
    if name == "upload":
        return world.upload(who, {"new.bin": f"by {who}".encode()}, folder="m")
    if name == "delete":
        return world.call("DELETE", f"{base}/seed/a.bin", who)
    if name == "delete_many":
        return world.call("DELETE", base, who, json={"paths": ["seed/a.bin"]})
    return world.call("POST", f"{base}/move", who, json={"from": "seed/a.bin", "to": "seed/z.bin"})


@pytest.mark.parametrize("route", ["upload", "delete", "delete_many", "move"])
def test_permission_matrix_of_every_write_route(upload_world: UploadWorld, route: str) -> None:
    assert upload_world.upload("mia", {"a.bin": b"seed"}, folder="seed").status_code == 201
    head = upload_world.admin.projects.get(upload_world.pid).branches.get("main").commit["id"]
    for who, status in MATRIX:
        answer = _route(upload_world, route, who)
        assert answer.status_code == status, (who, answer.get_json())
        if status != 201:
            now = upload_world.admin.projects.get(upload_world.pid).branches.get("main")
            assert now.commit["id"] == head
    missing = upload_world.call("DELETE", "/api/v1/datasets/999999/files/a.bin", "mia")
    assert missing.status_code == 404
    hidden = _route(upload_world, route, "out").get_json()["error"]["message"]
    assert hidden == missing.get_json()["error"]["message"].replace("999999", str(upload_world.pid))


def test_protected_branch_is_relayed_and_new_branch_with_a_merge_request_works(
    upload_world: UploadWorld,
) -> None:
    world = upload_world
    refused = world.upload("dev", {"d.bin": b"dev data"}, folder="contrib")
    assert refused.status_code == 403
    assert "You are not allowed to push into this branch" in refused.get_json()["error"]["message"]
    answer = world.upload(
        "dev",
        {"d.bin": b"dev data"},
        folder="contrib",
        new_branch="dev-data",
        merge_request=True,
        message="Add dev data",
    )
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["branch"] == "dev-data" and body["index"].startswith("not indexed")
    mr = world.admin.projects.get(world.pid).mergerequests.get(body["merge_request"]["iid"])
    assert (mr.source_branch, mr.target_branch, mr.title) == ("dev-data", "main", "Add dev data")
    assert world.pointer("contrib/d.bin.dvc", ref="dev-data").startswith(b"outs:\n- md5: ")
    again = world.upload("dev", {"e.bin": b"more"}, folder="contrib", new_branch="dev-data")
    assert again.status_code == 409
    assert "already exists" in again.get_json()["error"]["message"]
