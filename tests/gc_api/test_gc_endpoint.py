"""dshub's gc endpoints: objects of indexed versions, and gc inside dshub (proxy mode)."""

from __future__ import annotations

import json
from typing import Any

import gitlab
import pytest
from flask import Flask
from flask.testing import FlaskClient

from indexer.data.storage import StorageSite
from indexer.gc.lock import gc_lock
from indexer.gitlab.reader import GitLabReader
from indexer.sites.registry import SiteRegistry
from indexer.store import Dataset, open_index
from indexer.sync import refs as sync
from tests.gc_api.conftest import OLD_ORPHAN, YOUNG_ORPHAN, World
from tests.support.dataset_repo import object_key


def _client(app: Flask) -> FlaskClient:
    return app.test_client()


def _objects(app: Flask, world: World, headers: dict[str, str]) -> Any:
    return _client(app).get(
        f"/api/v1/datasets/{world.project.id}/objects?indexed=true", headers=headers
    )


def _gc(app: Flask, world: World, headers: dict[str, str], body: Any = None) -> Any:
    return _client(app).post(
        f"/api/v1/datasets/{world.project.id}/gc",
        headers=headers,
        data=json.dumps({} if body is None else body),
        content_type="application/json",
    )


def _user(world: World, name: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": world.token(name)}


def test_objects_of_indexed_versions_are_files_entries_and_manifests(
    app: Flask, dataset_world: World
) -> None:
    world = dataset_world
    answer = _objects(app, world, _user(world, "rep"))
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    i1, i2 = (
        {
            f.path: f.md5
            for f in open_index(world.env["DSHUB_INDEX_URL"]).iter_ref_files(world.project.id, "v1")
        }[f"imgs/{n}.png"]
        for n in ("i1", "i2")
    )
    expected = {world.oids["a_v1"], world.oids["a_main"], world.oids["dir"], i1, i2}
    assert set(body["oids"]) == expected
    assert world.oids["dir"].endswith(".dir")
    assert world.oids["c"] not in body["oids"]  # only in an unindexed commit
    assert sorted(body["refs"]) == ["main", "v1"]
    assert body["complete"] is True and body["incomplete"] == []


def test_the_datasets_own_job_token_reads_objects_another_projects_does_not(
    app: Flask, dataset_world: World
) -> None:
    world = dataset_world
    own = _objects(app, world, {"JOB-TOKEN": world.job_token("dev")})
    assert own.status_code == 200
    assert world.oids["dir"] in own.get_json()["oids"]

    foreign = _objects(app, world, {"JOB-TOKEN": world.job_token("dev", world.other_project)})
    assert foreign.status_code == 403
    assert "belongs to another project" in foreign.get_json()["error"]["message"]

    finished = world.job_token("dev")
    world.sandbox.finish_job(finished)
    refused = _objects(app, world, {"JOB-TOKEN": finished})
    assert refused.status_code == 401
    assert "job has finished" in refused.get_json()["error"]["message"]


def test_objects_of_a_private_dataset_are_invisible_to_non_members(
    app: Flask, dataset_world: World
) -> None:
    world = dataset_world
    for headers in (_user(world, "out"), {}):
        answer = _objects(app, world, headers)
        assert answer.status_code == 404
        assert answer.get_json()["error"]["message"] == f"dataset {world.project.id} not found"
    assert _client(app).get(f"/api/v1/datasets/{world.project.id}/objects").status_code == 400


def test_gc_dry_run_lists_only_old_unreferenced_objects_and_deletes_nothing(
    app: Flask, dataset_world: World
) -> None:
    world = dataset_world
    before = world.files()
    answer = _gc(app, world, _user(world, "mia"))
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["dry_run"] is True and body["min_age_hours"] == 72
    assert [c["key"] for c in body["candidates"]] == sorted(
        [OLD_ORPHAN, object_key(world.oids["c"])]
    )
    assert body["candidate_bytes"] == len(b"orphan bytes") + 64
    assert body["kept_young"] == 1 and body["deleted"] == [] and body["deleted_count"] == 0
    assert world.files() == before
    assert str(world.storage) not in answer.get_data(as_text=True)


def test_real_gc_keeps_the_keep_set_indexed_and_young_objects_and_logs_each_deletion(
    app: Flask, dataset_world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world = dataset_world
    before = world.files()
    answer = _gc(app, world, _user(world, "mia"), {"keep": [world.oids["c"]], "dry_run": False})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["deleted"] == [OLD_ORPHAN] and body["failed"] == []
    assert world.files() == before - {OLD_ORPHAN}
    assert YOUNG_ORPHAN in world.files()
    logged = [r for r in caplog.records if r.name == "dshub.gc" and "deleted an" in r.getMessage()]
    assert [(r.key, r.project_id, r.by) for r in logged] == [  # type: ignore[attr-defined]
        (OLD_ORPHAN, world.project.id, f"user {world.users['mia'][0].id}")
    ]


def test_the_project_job_token_on_the_default_branch_may_collect(
    app: Flask, dataset_world: World
) -> None:
    world = dataset_world
    answer = _gc(app, world, {"JOB-TOKEN": world.job_token("dev")}, {"dry_run": False})
    assert answer.status_code == 200, answer.get_json()
    assert set(answer.get_json()["deleted"]) == {OLD_ORPHAN, object_key(world.oids["c"])}


def test_gc_is_refused_below_maintainer_outside_the_project_and_off_the_default_branch(
    app: Flask, dataset_world: World
) -> None:
    world = dataset_world
    before = world.files()
    for name in ("dev", "rep"):
        answer = _gc(app, world, _user(world, name), {"dry_run": False})
        assert answer.status_code == 403
        assert "Maintainer" in answer.get_json()["error"]["message"]
    assert _gc(app, world, _user(world, "out"), {"dry_run": False}).status_code == 404
    assert _gc(app, world, {}, {"dry_run": False}).status_code == 401
    side = world.job_token("mia", ref="v1")
    assert _gc(app, world, {"JOB-TOKEN": side}, {"dry_run": False}).status_code == 403
    other = world.job_token("mia", world.other_project)
    assert _gc(app, world, {"JOB-TOKEN": other}, {"dry_run": False}).status_code == 403
    assert world.files() == before


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"min_age_hours": 0.5}, "at least 1"),
        ({"min_age_hours": "72"}, "min_age_hours must be a number from"),
        ({"min_age_hours": True}, "min_age_hours must be a number from"),
        ({"keep": ["not-an-oid"]}, "not object ids"),
        ({"keep": "abc"}, "list of object ids"),
        ({"dry_run": "no"}, "true or false"),
        ({"delete": True}, "unknown fields"),
        ([1, 2], "JSON object"),
    ],
)
def test_malformed_gc_requests_are_400_with_what_to_change(
    app: Flask, dataset_world: World, body: Any, needle: str
) -> None:
    world = dataset_world
    answer = _gc(app, world, _user(world, "mia"), body)
    assert answer.status_code == 400
    assert needle in answer.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "status", "needle"),
    [
        (b"[" * 100_000, 400, "nested too deeply"),
        (b'{"keep": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "nested more than 32 levels"),
        (b'{"min_age_hours": 1e999}', 400, "min_age_hours must be a number from"),
        (b'{"min_age_hours": ' + b"9" * 400 + b"}", 400, "min_age_hours must be a number from"),
        (b'{"min_age_hours": NaN}', 400, "NaN is not allowed"),
        (b"\xff", 400, "not valid UTF-8"),
        (b'{"keep": ["' + b"a" * 2 * 1024 * 1024 + b'"]}', 413, "larger than"),
    ],
)
def test_hostile_gc_bodies_are_refused_after_the_permission_check(
    app: Flask, dataset_world: World, raw: bytes, status: int, needle: str
) -> None:
    world = dataset_world
    url = f"/api/v1/datasets/{world.project.id}/gc"
    post = _client(app).post
    answer = post(url, headers=_user(world, "mia"), data=raw, content_type="application/json")
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert needle in answer.get_json()["error"]["message"]
    # Callers who may not collect never get their body parsed: the same answer as for {}.
    for headers, refused in ((_user(world, "dev"), 403), (_user(world, "out"), 404), ({}, 401)):
        answer = post(url, headers=headers, data=raw, content_type="application/json")
        assert answer.status_code == refused, answer.get_data(as_text=True)


def test_a_second_gc_of_the_same_dataset_is_refused_while_one_runs(
    app: Flask, dataset_world: World
) -> None:
    world = dataset_world
    with gc_lock(world.project.id, None, world.root / "data"):
        answer = _gc(app, world, _user(world, "mia"), {"dry_run": False})
    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "gc_in_progress"
    assert OLD_ORPHAN in world.files()
    assert _gc(app, world, _user(world, "mia")).status_code == 200  # lock released


def test_gc_refuses_a_dataset_without_storage_site(app: Flask, dataset_world: World) -> None:
    world = dataset_world
    with open_index(world.env["DSHUB_INDEX_URL"]) as store:
        store.upsert_dataset(
            Dataset(
                project_id=world.other_project.id,
                name="dogs",
                path_with_namespace="vision/dogs",
                namespace="vision",
                visibility="private",
                default_branch="main",
            )
        )
    try:
        answer = _client(app).post(
            f"/api/v1/datasets/{world.other_project.id}/gc",
            headers=_user(world, "mia"),
            json={},
        )
        assert answer.status_code == 409
        assert "has no storage site" in answer.get_json()["error"]["message"]
    finally:
        with open_index(world.env["DSHUB_INDEX_URL"]) as store:
            store.remove_dataset(world.other_project.id)


def test_real_gc_is_refused_while_an_indexed_version_cannot_be_fully_listed(
    app: Flask, dataset_world: World
) -> None:
    world = dataset_world
    admin = gitlab.Gitlab(world.sandbox.url, private_token=world.sandbox.admin_token)
    project = admin.projects.get(world.project.id)
    commit = project.commits.create(
        {
            "branch": "broken",
            "start_branch": "main",
            "commit_message": "A pointer that is not YAML",
            "actions": [{"action": "create", "file_path": "bad.dvc", "content": "outs: [\n"}],
        }
    )
    project.tags.create({"tag_name": "v-broken", "ref": commit.id})
    index_url = world.env["DSHUB_INDEX_URL"]
    try:
        with open_index(index_url) as store:
            ctx = sync.SyncContext(
                reader=GitLabReader(world.sandbox.url, world.sandbox.admin_token, max_retries=1),
                store=store,
                sites=SiteRegistry(index_url).get,
            )
            sync.sync_project(ctx, world.project.id)
        listed = _objects(app, world, _user(world, "mia")).get_json()
        assert listed["complete"] is False
        assert listed["incomplete"][0].startswith("v-broken")
        refused = _gc(app, world, _user(world, "mia"), {"dry_run": False})
        assert refused.status_code == 409
        assert "v-broken" in refused.get_json()["error"]["message"]
        assert OLD_ORPHAN in world.files()
        assert _gc(app, world, _user(world, "mia")).status_code == 200  # a dry run still answers
    finally:
        project.tags.delete("v-broken")
        with open_index(index_url) as store:
            store.remove_ref(world.project.id, "v-broken")


def test_gc_refuses_when_the_site_variable_disagrees_with_the_recorded_selection(
    app: Flask, dataset_world: World
) -> None:
    world = dataset_world
    admin = gitlab.Gitlab(world.sandbox.url, private_token=world.sandbox.admin_token)
    birds = admin.projects.create({"name": "birds", "visibility": "private"})
    birds.members.create({"user_id": world.users["mia"][0].id, "access_level": 40})
    index_url = world.env["DSHUB_INDEX_URL"]
    registry = SiteRegistry(index_url)
    registry.put(StorageSite(name="elsewhere", kind="local", path=str(world.root / "elsewhere")))
    registry.select(birds.id, "elsewhere", None)
    with open_index(index_url) as store:
        store.upsert_dataset(
            Dataset(
                project_id=birds.id,
                name="birds",
                path_with_namespace=birds.path_with_namespace,
                namespace="root",
                visibility="private",
                default_branch="main",
                storage_site="lab",  # the CI/CD variable, edited by hand
            )
        )
    answer = _client(app).post(
        f"/api/v1/datasets/{birds.id}/gc", headers=_user(world, "mia"), json={"dry_run": False}
    )
    assert answer.status_code == 409
    assert "refusing to collect until they agree" in answer.get_json()["error"]["message"]
    assert OLD_ORPHAN in world.files()
