"""The versions story on both index backends, in order (one world per module and backend):
v0.1.0 → replace one file, delete one → v0.2.0 → the listing shows notes and author →
compare names exactly the changes → revert a commit → restore v0.1.0 (checked on a real
clone with `git diff --quiet`), then the command line against the served dshub."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dshub import cli
from tests.versions.conftest import FILES, HOOK_SECRET, VersionsWorld
from webhook_service.app_settings import services as app_services

DATA_PATHS = ("a.png.dvc", "b.png.dvc", "c.png.dvc", "d.png.dvc", ".gitignore")


def _version(world: VersionsWorld, who: str, **body: Any) -> Any:
    return world.call("POST", f"/api/v1/datasets/{world.pid}/versions", who, json=body)


def _indexed(world: VersionsWorld) -> set[str]:
    """The files the index holds for the default branch (re-indexed in-line by each write)."""
    store = app_services(world.app).index
    return {f.path for f in store.iter_ref_files(world.pid, "main")}


def test_versions_compare_revert_and_restore(world: VersionsWorld) -> None:
    made = _version(world, "mia", name="v0.1.0", ref="main", message="Three cells")
    assert made.status_code == 201, made.get_json()
    first = made.get_json()
    assert first["author"]["username"] == "mia" and first["release_notes"] == "Three cells"
    assert first["index"] == "synced"
    tag = world.project().tags.get("v0.1.0")
    assert tag.message == "Three cells" and tag.protected is True
    assert tag.release["description"] == "Three cells"

    again = _version(world, "mia", name="v0.1.0", ref="main", message="moved?")
    assert again.status_code == 409
    assert "make a new version" in again.get_json()["error"]["message"]
    assert world.project().tags.get("v0.1.0").commit["id"] == first["commit_sha"]

    replaced = world.upload("mia", {"b.png": b"b" * 2500})
    assert replaced.status_code == 201, replaced.get_json()
    deleted = world.call("DELETE", f"/api/v1/datasets/{world.pid}/files/c.png", "mia")
    assert deleted.status_code == 201, deleted.get_json()
    made = _version(world, "mia", name="v0.2.0", message="Replaced b, dropped c")
    assert made.status_code == 201, made.get_json()

    listing = world.call("GET", f"/api/v1/datasets/{world.pid}/versions", "rep").get_json()
    by_name = {item["name"]: item for item in listing["items"]}
    assert [item["name"] for item in listing["items"]] == ["v0.2.0", "v0.1.0"]
    assert by_name["v0.1.0"]["release_notes"] == "Three cells"
    assert by_name["v0.2.0"]["release_notes"] == "Replaced b, dropped c"
    assert by_name["v0.2.0"]["author"] == {"username": "mia", "name": "mia"}
    assert by_name["v0.1.0"]["file_count"] == 3 and by_name["v0.2.0"]["file_count"] == 2
    page = world.call("GET", "/datasets/lab/cells/-/versions", "rep").get_data(as_text=True)
    assert "Replaced b, dropped c" in page and "by mia" in page

    diff = world.call(
        "GET", f"/api/v1/datasets/{world.pid}/compare?from=v0.1.0&to=v0.2.0", "rep"
    ).get_json()
    assert [f["path"] for f in diff["modified"]] == ["b.png"]
    assert [f["path"] for f in diff["removed"]] == ["c.png"]
    assert diff["added"] == [] and diff["added_total"] == 0
    assert diff["modified"][0]["old_size"] == 2000 and diff["modified"][0]["new_size"] == 2500
    assert diff["bytes_added"] == 2500 and diff["bytes_removed"] == 2000 + 3000
    assert diff["from_sha"] == first["commit_sha"]
    back = world.call(
        "GET", f"/api/v1/datasets/{world.pid}/compare?from=v0.2.0&to=v0.1.0", "rep"
    ).get_json()
    assert [f["path"] for f in back["added"]] == ["c.png"]

    # A commit to revert: d.png added, then reverted through GitLab's revert.
    added = world.upload("mia", {"d.png": b"D" * 400}, message="Add d")
    assert added.status_code == 201
    sha = added.get_json()["commit"]
    reverted = world.call("POST", f"/api/v1/datasets/{world.pid}/revert", "mia", json={"sha": sha})
    assert reverted.status_code == 201, reverted.get_json()
    body = reverted.get_json()
    assert body["branch"] == "main" and body["index"] == "synced"
    commit = world.project().commits.get(body["commit"])
    assert commit.title == 'Revert "Add d"'
    assert _indexed(world) == {"a.png", "b.png"}
    tree = world.call("GET", f"/api/v1/datasets/{world.pid}/tree", "mia").get_json()
    assert "d.png" not in {item["name"] for item in tree["items"]}
    again = world.call("POST", f"/api/v1/datasets/{world.pid}/revert", "mia", json={"sha": sha})
    assert again.status_code == 409  # GitLab: nothing left to revert

    # A non-data change on the branch survives the restore.
    world.project().commits.create(
        {
            "branch": "main",
            "commit_message": "Notes",
            "actions": [{"action": "update", "file_path": "README.md", "content": "# cells\n"}],
        }
    )
    restored = world.call(
        "POST", f"/api/v1/datasets/{world.pid}/restore", "mia", json={"version": "v0.1.0"}
    )
    assert restored.status_code == 201, restored.get_json()
    body = restored.get_json()
    assert ".dvc/config" in body["kept"] and ".gitlab-ci.yml" in body["kept"]
    assert set(body["changed"]) == {"b.png.dvc", "c.png.dvc", ".gitignore"}
    head = world.project().commits.get(body["commit"])
    assert head.parent_ids == [world.project().commits.list(get_all=False)[1].id]  # ONE commit
    clone = world.clone("restored")
    data = [p for p in DATA_PATHS if (clone / p).exists() or p != "d.png.dvc"]
    assert (
        world.git("diff", "--quiet", "v0.1.0", body["commit"], "--", *data, cwd=clone, check=False)
        == "0"
    )
    assert (
        world.git(
            "diff", "--quiet", "v0.1.0", body["commit"], "--", "README.md", cwd=clone, check=False
        )
        == "1"
    )
    assert (
        world.git("diff", "--quiet", "v0.2.0", body["commit"], "--", *data, cwd=clone, check=False)
        == "1"
    )
    assert body["index"] == "synced"
    assert _indexed(world) == FILES.keys()
    tree = world.call("GET", f"/api/v1/datasets/{world.pid}/tree", "mia").get_json()
    assert {i["name"] for i in tree["items"] if i["name"].endswith(".png")} == set(FILES)
    unchanged = world.call(
        "POST", f"/api/v1/datasets/{world.pid}/restore", "mia", json={"version": "v0.1.0"}
    )
    assert unchanged.status_code == 200 and unchanged.get_json()["unchanged"] is True


@contextlib.contextmanager
def _as(world: VersionsWorld, who: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("DSHUB_URL", "DSHUB_TOKEN", "DSHUB_CONFIG")}
    os.environ.update(
        DSHUB_URL=world.url, DSHUB_TOKEN=world.tokens[who], DSHUB_CONFIG="/nonexistent"
    )
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _dshub(world: VersionsWorld, who: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with _as(world, who), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_the_command_line(world: VersionsWorld) -> None:
    pid = str(world.pid)
    code, out, err = _dshub(
        world, "mia", "version", "create", "--project-id", pid, "-m", "CLI made", "v0.3.0"
    )
    assert code == 0, err
    assert out.startswith("version v0.3.0 at ")
    code, out, _ = _dshub(world, "mia", "version", "list", "--project-id", pid)
    assert code == 0 and "v0.3.0" in out and "by mia" in out and "    CLI made" in out
    code, out, _ = _dshub(world, "rep", "compare", "--project-id", pid, "v0.1.0", "v0.2.0")
    assert code == 0
    assert out.splitlines()[:2] == ["- c.png", "M b.png"]
    code, out, _ = _dshub(
        world, "rep", "compare", "--project-id", pid, "--json", "v0.2.0", "v0.3.0"
    )
    assert code == 0 and [f["path"] for f in json.loads(out)["added"]] == ["c.png"]
    code, out, err = _dshub(world, "mia", "restore", "--project-id", pid, "v0.2.0")
    assert code == 0, err
    assert "restored  c.png.dvc" in out and ".dvc/config" in out
    code, _, err = _dshub(world, "dev", "version", "create", "--project-id", pid, "v0.4.0")
    assert code == 4 and "Maintainer" in err
    code, out, err = _dshub(world, "mia", "version", "delete", "--project-id", pid, "v0.3.0")
    assert code == 0, err
    assert "v0.3.0" not in {t.name for t in world.project().tags.list(get_all=True)}
    code, _, err = _dshub(world, "mia", "version", "delete", "--project-id", pid, "v0.3.0")
    assert code != 0 and "no version v0.3.0" in err


def test_release_notes_edited_in_gitlab_arrive_by_the_release_hook(world: VersionsWorld) -> None:
    """Notes changed in GitLab (not through dshub) reach the versions listing through
    GitLab's Release Hook: the tag is re-read, its files left as they were."""
    _version(world, "mia", name="v0.9.0", ref="main", message="Before the edit")
    store = app_services(world.app).index
    files_before = sorted(f.path for f in store.iter_ref_files(world.pid, "v0.9.0"))
    assert files_before
    world.project().hooks.create(
        {
            "url": world.url + "/webhooks/gitlab",
            "token": HOOK_SECRET,
            "push_events": False,
            "releases_events": True,
        }
    )
    release = world.project().releases.get("v0.9.0")
    release.description = "Three cells, notes edited in GitLab"
    release.save()

    def notes() -> str:
        listing = world.call("GET", f"/api/v1/datasets/{world.pid}/versions", "rep").get_json()
        return str(next(i["release_notes"] for i in listing["items"] if i["name"] == "v0.9.0"))

    deadline = time.monotonic() + 30
    while notes() != "Three cells, notes edited in GitLab" and time.monotonic() < deadline:
        time.sleep(0.2)
    outcomes = [(d.event, d.outcome, d.status) for d in world.sandbox.deliveries()]
    assert notes() == "Three cells, notes edited in GitLab", outcomes
    assert sorted(f.path for f in store.iter_ref_files(world.pid, "v0.9.0")) == files_before


@pytest.fixture
def missing(world: VersionsWorld) -> int:
    return world.pid + 1000
