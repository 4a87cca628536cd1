"""Sync end to end: real git + dvc pushed to the sandbox and S3, indexed on both backends."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import gitlab
import pytest

from indexer.data.storage import StorageSite
from indexer.gitlab.reader import GitLabReader
from indexer.read import search
from indexer.read.resolve import DvcObject, Resolver
from indexer.read.search import Viewer
from indexer.sites.registry import SiteRegistry
from indexer.store import IndexStore
from indexer.sync import refs as sync
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.support.dataset_repo import DatasetRepo, image_bytes
from tests.support.index_snapshot import index_snapshot


@pytest.fixture
def ctx(
    gitlab_sandbox: Sandbox, store: IndexStore, index_url: str, s3_bucket: S3Bucket
) -> sync.SyncContext:
    registry = SiteRegistry(index_url)
    registry.put(
        StorageSite(
            name="lab",
            kind="s3",
            bucket=s3_bucket.name,
            prefix="team",
            endpoint_url=s3_bucket.endpoint_url,
            region=s3_bucket.region,
        )
    )
    return sync.SyncContext(
        reader=GitLabReader(gitlab_sandbox.url, gitlab_sandbox.admin_token, max_retries=1),
        store=store,
        sites=registry.get,
    )


@pytest.fixture
def dataset(
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    s3_bucket: S3Bucket,
    tmp_path: Path,
    dvc_env: dict[str, str],
) -> dict[str, Any]:
    group = gitlab_admin.groups.create({"name": "vision", "path": "vision"})
    project = gitlab_admin.projects.create(
        {
            "name": "cats",
            "namespace_id": group.id,
            "visibility": "private",
            "initialize_with_readme": True,
            "topics": ["cats", "classification"],
            "description": "Cat pictures with masks",
        }
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "lab"})
    repo = DatasetRepo(
        tmp_path / "work", gitlab_sandbox.url, "vision/cats", gitlab_sandbox.admin_token, dvc_env
    )
    repo.init_dvc_s3(s3_bucket, f"team/{project.id}")
    for index in range(3):
        repo.write(f"images/cat{index}.png", image_bytes(index))
    repo.write("images/masks/cat0.png", image_bytes(10, 500))
    repo.write("model.bin", image_bytes(99, 4096))
    repo.track("images", "model.bin")
    first = repo.commit_and_push("Add cats")
    repo.tag("v0.1.0", "First version")
    return {"project": project, "repo": repo, "first": first}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_a_pushed_dataset_is_indexed_with_versions_and_sizes(
    ctx: sync.SyncContext, store: IndexStore, dataset: dict[str, Any]
) -> None:
    pid = dataset["project"].id
    assert sync.sync_project(ctx, pid) == "synced"
    refs = {ref.ref: ref for ref in store.list_refs(pid)}
    assert set(refs) == {"main", "v0.1.0"}
    assert refs["v0.1.0"].kind == "tag" and refs["v0.1.0"].commit_sha == dataset["first"]
    assert refs["v0.1.0"].status == "ok"
    files = {f.path: f for f in store.iter_ref_files(pid, "v0.1.0")}
    assert set(files) == {
        "images/cat0.png",
        "images/cat1.png",
        "images/cat2.png",
        "images/masks/cat0.png",
        "model.bin",
    }
    assert files["images/cat1.png"].md5 == _md5(image_bytes(1))
    assert files["images/cat1.png"].in_directory
    assert files["images/cat1.png"].media_type == "image/png"
    # Directory entries have no size in the manifest: the background HEAD fill found them.
    assert files["images/masks/cat0.png"].size == 500
    assert files["model.bin"].size == 4096 and not files["model.bin"].in_directory
    indexed = store.get_dataset(pid)
    assert indexed is not None and indexed.storage_site == "lab"
    assert indexed.topics == ("cats", "classification")
    # Idempotent: a second run changes nothing.
    before = index_snapshot(store)
    sync.sync_project(ctx, pid)
    assert index_snapshot(store) == before


def test_push_to_the_default_branch_updates_only_changed_pointers(
    ctx: sync.SyncContext, store: IndexStore, dataset: dict[str, Any]
) -> None:
    pid, repo = dataset["project"].id, dataset["repo"]
    sync.sync_project(ctx, pid)
    repo.write("labels.csv", b"file,label\ncat0.png,cat\n")
    repo.track("labels.csv")
    second = repo.commit_and_push("Add labels")
    outcome = sync.sync_ref(ctx, pid, "main", before=dataset["first"], after=second)
    assert outcome == "updated incrementally"
    main = {f.path for f in store.iter_ref_files(pid, "main")}
    assert "labels.csv" in main and "images/cat0.png" in main
    assert "labels.csv" not in {f.path for f in store.iter_ref_files(pid, "v0.1.0")}
    # A stale or replayed event changes nothing.
    assert sync.sync_ref(ctx, pid, "main", before=dataset["first"], after=second) == "unchanged"


def test_deleted_tag_and_deleted_project_leave_the_index(
    ctx: sync.SyncContext, store: IndexStore, dataset: dict[str, Any], gitlab_admin: gitlab.Gitlab
) -> None:
    project = dataset["project"]
    sync.sync_project(ctx, project.id)
    # A remove event for a tag that still exists is only a hint: nothing is lost.
    assert sync.remove_ref(ctx, project.id, "v0.1.0") == "unchanged"
    project.tags.delete("v0.1.0")
    assert sync.remove_ref(ctx, project.id, "v0.1.0") == "removed"
    assert store.get_ref(project.id, "v0.1.0") is None
    gitlab_admin.projects.delete(project.id)
    assert sync.remove_project(ctx, project.id) == "removed"
    assert store.get_dataset(project.id) is None


def test_search_respects_visibility_after_sync(
    ctx: sync.SyncContext, store: IndexStore, dataset: dict[str, Any]
) -> None:
    pid = dataset["project"].id
    sync.sync_project(ctx, pid)
    anonymous = search.search_datasets(store, Viewer.anonymous(), "cats")
    assert anonymous.total == 0 and anonymous.facets.get("namespace", {}) == {}
    reader = search.search_datasets(
        store, Viewer(user_id=5, readable_private_ids=frozenset({pid})), "cats"
    )
    assert [item.dataset.project_id for item in reader.items] == [pid]
    files = search.search_files(store, Viewer(user_id=1, is_admin=True), "masks")
    assert {item.row.file.path for item in files.items} == {"images/masks/cat0.png"}


def test_missing_manifest_is_marked_not_fatal(
    ctx: sync.SyncContext, store: IndexStore, dataset: dict[str, Any], s3_bucket: S3Bucket
) -> None:
    pid = dataset["project"].id
    client = s3_bucket.client()
    listing = client.list_objects_v2(Bucket=s3_bucket.name, Prefix=f"team/{pid}/")
    for item in listing["Contents"]:
        if item["Key"].endswith(".dir"):
            client.delete_object(Bucket=s3_bucket.name, Key=item["Key"])
    sync.sync_project(ctx, pid)
    ref = store.get_ref(pid, "v0.1.0")
    assert ref is not None and ref.status == "partial"
    assert ref.error is not None and "is missing from storage site 'lab'" in ref.error
    files = {f.path: f for f in store.iter_ref_files(pid, "v0.1.0")}
    assert files["model.bin"].status == "ok"
    assert files["images"].status == "error"


def _object_key(pid: int, md5: str) -> str:
    return f"team/{pid}/files/md5/{md5[:2]}/{md5[2:]}"


def test_sync_marks_files_whose_objects_the_site_does_not_hold(
    ctx: sync.SyncContext, store: IndexStore, dataset: dict[str, Any], s3_bucket: S3Bucket
) -> None:
    pid, repo = dataset["project"].id, dataset["repo"]
    sync.sync_project(ctx, pid)
    for ref in ("main", "v0.1.0"):
        marks = {f.path: f.in_storage for f in store.iter_ref_files(pid, ref)}
        assert set(marks.values()) == {True}, (ref, marks)
    # The bytes of one directory entry and of one single-file pointer are lost from S3.
    client = s3_bucket.client()
    for data in (image_bytes(1), image_bytes(99, 4096)):
        client.delete_object(Bucket=s3_bucket.name, Key=_object_key(pid, _md5(data)))
    lost = {"images/cat1.png", "model.bin"}
    # A ref sync with nothing new does not look again; a project sync (reconcile) does.
    sync.sync_project(ctx, pid)
    for ref in ("main", "v0.1.0"):
        marks = {f.path: f.in_storage for f in store.iter_ref_files(pid, ref)}
        assert {path for path, present in marks.items() if present is False} == lost, ref
        assert all(marks[path] is True for path in set(marks) - lost)
    # The tree and the file carry the mark, read from the index (no request to the site).
    resolver = Resolver(store, ctx.reader, ctx.sites, {})
    indexed = store.get_dataset(pid)
    assert indexed is not None
    commit = resolver.commit(indexed, "v0.1.0")
    level = {item.name: item for item in resolver.list_level(indexed, commit, "images")}
    assert level["cat1.png"].in_storage is False and level["cat0.png"].in_storage is True
    assert level["masks"].in_storage is None  # a folder: no mark
    # Any page of a level: the store skips the entries before it, the same entries follow.
    whole = [item.path for item in resolver.list_level(indexed, commit, "")]
    assert {"README.md", "images", "model.bin"} <= set(whole)
    for offset in range(1, len(whole) + 2):
        assert [i.path for i in resolver.list_level(indexed, commit, "", offset)] == whole[offset:]
    target = resolver.resolve(indexed, commit, "model.bin")
    assert isinstance(target, DvcObject) and target.in_storage is False
    # A push re-checks what was missing and checks what is new. `dvc push` sends model.bin
    # again; it trusts the directory's `.dir` on the remote, so the entry is put back here.
    client.put_object(
        Bucket=s3_bucket.name, Key=_object_key(pid, _md5(image_bytes(1))), Body=image_bytes(1)
    )
    repo.write("labels.csv", b"file,label\ncat0.png,cat\n")
    repo.track("labels.csv")
    second = repo.commit_and_push("Add labels")
    sync.sync_ref(ctx, pid, "main", before=dataset["first"], after=second)
    main = {f.path: f.in_storage for f in store.iter_ref_files(pid, "main")}
    assert main["images/cat1.png"] is True and main["labels.csv"] is True
    assert main["model.bin"] is True
    # Without a usable storage site, presence is unknown, not "missing".
    dataset["project"].variables.delete("DSHUB_STORAGE_SITE")
    sync.sync_project(ctx, pid)
    assert {f.in_storage for f in store.iter_ref_files(pid, "main")} == {None}
