"""The dataset pipeline in proxy mode, executed for real: gitlab-ci-local runs the components
in the dataset's clone, DVC talks to a gunicorn-served dshub's DVC remote with a CI_JOB_TOKEN
minted by the GitLab sandbox, and dshub stores the bytes on the dataset's storage site (a
local directory, and moto S3). No storage key is in the project or the job.

Objects are made "old" by setting their mtimes on the local site; no test sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from indexer.data.storage import Credentials, StorageSite
from tests.ci import harness
from tests.ci.proxy_world import ProxyWorld, proxy_world
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.support.dataset_repo import object_key, pointer_md5

pytestmark = pytest.mark.slow
OLD = time.time() - 100 * 3600
ORPHAN = "files/md5/0a/bcdef0123456789abcdef012345678"


def _junit_failures(path: Path) -> dict[str, str]:
    tree = ET.parse(path)  # noqa: S314 - the job's own report
    return {
        f"{case.get('classname')}:{case.get('name')}": (case.find("failure").text or "")  # type: ignore[union-attr]
        for case in tree.iter("testcase")
        if case.find("failure") is not None
    }


def _files(storage: Path) -> dict[str, Path]:
    return {p.relative_to(storage).as_posix(): p for p in storage.rglob("*") if p.is_file()}


def _store_from_cache(world: ProxyWorld, storage: Path, oids: list[str]) -> None:
    """Put objects straight onto the site, as an earlier push would have left them."""
    cache = world.repo.work / ".dvc" / "cache"
    for oid in oids:
        target = storage / object_key(oid)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache / object_key(oid), target)


def _remote_counts(world: ProxyWorld) -> dict[str, float]:
    """dshub's DVC remote metrics, scraped from the served dshub's /metrics."""
    text = requests.get(f"{world.dshub.server.url}/metrics", timeout=30).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("dshub_dvc_remote_"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _grown(before: dict[str, float], after: dict[str, float], prefix: str) -> float:
    return sum(
        value - before.get(name, 0) for name, value in after.items() if name.startswith(prefix)
    )


PRESENCE = "dshub_dvc_remote_presence_keys_total"
GETS = 'dshub_dvc_remote_requests_total{method="GET"'


def _assert_no_token_left(work: Path) -> None:
    assert not (work / ".dvc" / "config.local").exists(), "the job left its token behind"
    assert "password" not in (work / ".dvc" / "config").read_text()


@pytest.fixture
def local_world(
    tmp_path: Path, gitlab_sandbox: Sandbox, dvc_env: dict[str, str]
) -> Iterator[tuple[ProxyWorld, Path]]:
    site_root = tmp_path / "sites" / "lab"
    site_root.mkdir(parents=True)
    site = StorageSite(name="lab", kind="local", path=str(site_root), prefix="team")
    extra = [
        {
            "component": "dvc-gc",
            "inputs": {
                "job_name": "dvc-gc-delete",
                "delete": True,
                "rules": [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}],
            },
        }
    ]
    with proxy_world(tmp_path, gitlab_sandbox, dvc_env, site, None, extra) as world:
        storage = site_root / "team" / str(world.project.id)
        storage.mkdir(parents=True, exist_ok=True)
        yield world, storage


def test_merge_request_lifecycle_through_dshub(local_world: tuple[ProxyWorld, Path]) -> None:
    world, storage = local_world
    repo = world.repo
    base = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "add-data")
    repo.write("a.bin", b"single file " * 100)
    for name in ("one.jpg", "two.jpg", "sub/x.jpg"):
        repo.write(f"images/{name}", f"image {name}".encode() * 50)
    repo.dvc("add", "-q", "a.bin", "images")
    head = repo.commit("Add data")
    world.push("add-data")
    listing = json.loads(repo.dvc("ls", "--json", "--dvc-only", "--show-hash", "."))
    hashes = {entry["path"]: entry["md5"] for entry in listing}
    entries = json.loads(repo.dvc("ls", "--json", "--show-hash", "-R", ".", "images"))
    entry_md5 = {f"images/{e['path']}": e["md5"] for e in entries}
    x_md5 = entry_md5["images/sub/x.jpg"]

    # The directory reached storage earlier, and then one of its entries was lost.
    _store_from_cache(world, storage, [hashes["images"], *entry_md5.values()])
    (storage / object_key(x_md5)).unlink()
    mr = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_DIFF_BASE_SHA": base}

    before = _remote_counts(world)
    failed = world.pipeline("validate-storage", "add-data", mr)
    assert failed.returncode != 0, failed.output
    # The five objects were checked by dshub's batch answer; DVC asked for none of them (the
    # one GET is the access check).
    after = _remote_counts(world)
    assert _grown(before, after, PRESENCE) == 5
    assert _grown(before, after, f'{PRESENCE}{{method="stat",state="missing"}}') == 2
    assert _grown(before, after, GETS) == 1
    assert "proxy mode: reaching" in failed.output
    failures = _junit_failures(repo.work / "validate-storage.xml")
    assert set(failures) == {"storage:a.bin.dvc", "storage:images.dvc"}, failures
    assert f"a.bin ({hashes['a.bin']})" in failures["storage:a.bin.dvc"]
    assert f"images/sub/x.jpg ({x_md5})" in failures["storage:images.dvc"]
    assert "images/one.jpg" not in failures["storage:images.dvc"]
    _assert_no_token_left(repo.work)

    # A job token of another project may not read this dataset.
    foreign = world.job_token("main", world.other_project)
    refused = world.pipeline("validate-storage", "add-data", {**mr, "CI_JOB_TOKEN": foreign})
    assert refused.returncode != 0, refused.output
    assert "dshub refused this job's CI_JOB_TOKEN" in refused.output
    assert "dshub answered 403 (this CI job token belongs to another project" in refused.output
    assert foreign not in refused.output
    _assert_no_token_left(repo.work)

    # Merged: dvc push uploads a.bin through dshub but trusts the stored .dir; the proof
    # catches the lost entry.
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", "add-data")
    world.push("main")
    harness.set_origin_main(repo.work, head)
    before = _remote_counts(world)
    partial = world.pipeline("dvc-push", "main")
    assert partial.returncode != 0, partial.output
    assert _grown(before, _remote_counts(world), PRESENCE) == 5
    assert object_key(hashes["a.bin"]) in _files(storage)
    assert "missing from" in partial.output and "images/sub/x.jpg" in partial.output
    _assert_no_token_left(repo.work)

    # With the manifest gone DVC uploads the whole directory again; now the proof passes.
    (storage / object_key(hashes["images"])).unlink()
    pushed = world.pipeline("dvc-push", "main")
    assert pushed.returncode == 0, pushed.output
    assert "verified: all 5 objects" in pushed.output
    stored = _files(storage)
    for md5 in [hashes["a.bin"], hashes["images"], *entry_md5.values()]:
        cached = repo.work / ".dvc" / "cache" / object_key(md5)
        assert stored[object_key(md5)].read_bytes() == cached.read_bytes()
    _assert_no_token_left(repo.work)

    repo.git("checkout", "-q", "add-data")
    passed = world.pipeline("validate-storage", "add-data", mr)
    assert passed.returncode == 0, passed.output
    assert _junit_failures(repo.work / "validate-storage.xml") == {}


def test_gc_through_dshub_keeps_history_and_removes_only_the_old_orphan(
    local_world: tuple[ProxyWorld, Path],
) -> None:
    world, storage = local_world
    repo = world.repo
    keys: dict[str, str] = {}
    repo.write("data.bin", b"A" * 100)
    repo.dvc("add", "-q", "data.bin")
    keys["tagged"] = pointer_md5(repo, "data.bin.dvc")
    repo.commit("Version 1")
    repo.git("tag", "-a", "v1", "-m", "v1")
    repo.write("data.bin", b"B" * 100)
    repo.dvc("add", "-q", "data.bin")
    keys["older_commit"] = pointer_md5(repo, "data.bin.dvc")
    for name in ("i1", "i2"):
        repo.write(f"imgs/{name}.png", name.encode() * 40)
    repo.dvc("add", "-q", "imgs")
    keys["dir_manifest"] = pointer_md5(repo, "imgs.dvc")
    repo.commit("Version 2")
    repo.git("checkout", "-q", "-b", "side")
    repo.write("side.bin", b"F" * 100)
    repo.dvc("add", "-q", "side.bin")
    keys["branch_only"] = pointer_md5(repo, "side.bin.dvc")
    repo.commit("Side work")
    repo.git("checkout", "-q", "main")
    repo.write("data.bin", b"C" * 100)
    repo.dvc("add", "-q", "data.bin")
    keys["head"] = pointer_md5(repo, "data.bin.dvc")
    repo.commit("Version 3")
    repo.write("fresh.bin", b"Y" * 100)
    repo.dvc("add", "-q", "fresh.bin")
    keys["fresh"] = pointer_md5(repo, "fresh.bin.dvc")
    (repo.work / "fresh.bin.dvc").unlink()  # pushed before its commit exists: young
    world.push("--tags", "main", "side")
    harness.set_origin_main(repo.work, repo.git("rev-parse", "HEAD"))

    cache = repo.work / ".dvc" / "cache" / "files"
    shutil.copytree(cache, storage / "files", dirs_exist_ok=True)
    (storage / ORPHAN).parent.mkdir(parents=True, exist_ok=True)
    (storage / ORPHAN).write_bytes(b"orphan bytes")
    (storage / "README").write_text("not a DVC object")
    for relative, path in _files(storage).items():
        if relative != object_key(keys["fresh"]):
            os.utime(path, (OLD, OLD))
    everything = set(_files(storage))
    assert {object_key(md5) for md5 in keys.values()} <= everything
    world.sync()  # dshub indexes main and v1 with their bytes stored

    job = world.shallow_clone("job")
    dry = world.pipeline("dvc-gc", "main", cwd=job)
    assert dry.returncode == 0, dry.output
    assert "gc runs inside dshub: POST" in dry.output and "history: full clone" in dry.output
    report = json.loads((job / "dvc-gc-report.json").read_text())
    assert report["collected_by"] == "dshub" and report["dry_run"] is True
    assert [item["key"] for item in report["candidates"]] == [ORPHAN]
    assert report["candidate_bytes"] == len(b"orphan bytes")
    assert report["kept_young"] == 1 and report["ignored_key_count"] == 1
    assert set(_files(storage)) == everything, "a dry run deleted something"
    _assert_no_token_left(job)

    real = world.pipeline("dvc-gc-delete", "main", cwd=job)
    assert real.returncode == 0, real.output
    assert f"gc: dshub deleted {ORPHAN} (12 bytes)" in real.output
    assert set(_files(storage)) == everything - {ORPHAN}
    _assert_no_token_left(job)

    # A job token of another project may not collect this dataset.
    (storage / ORPHAN).write_bytes(b"orphan bytes")
    os.utime(storage / ORPHAN, (OLD, OLD))
    foreign = world.job_token("main", world.other_project)
    refused = world.pipeline("dvc-gc-delete", "main", {"CI_JOB_TOKEN": foreign}, cwd=job)
    assert refused.returncode != 0, refused.output
    assert "dshub answered 403 (this CI job token belongs to another project" in refused.output
    assert (storage / ORPHAN).exists()
    _assert_no_token_left(job)


def test_push_validate_and_gc_through_dshub_on_s3(
    tmp_path: Path,
    gitlab_sandbox: Sandbox,
    dvc_env: dict[str, str],
    s3_bucket: S3Bucket,
) -> None:
    site = StorageSite(
        name="s3lab",
        kind="s3",
        bucket=s3_bucket.name,
        prefix="sites/proxy",
        endpoint_url=s3_bucket.endpoint_url,
        region=s3_bucket.region,
        credentials_ref="moto",
    )
    keys = {"moto": Credentials(s3_bucket.access_key, s3_bucket.secret_key)}
    with proxy_world(tmp_path, gitlab_sandbox, dvc_env, site, keys) as world:
        repo = world.repo
        prefix = f"sites/proxy/{world.project.id}/"
        client = s3_bucket.client()

        def stored() -> set[str]:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=s3_bucket.name, Prefix=prefix
            )
            return {
                item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", [])
            }

        repo.write("a.bin", b"s3 file " * 100)
        for name in ("one.jpg", "sub/x.jpg"):
            repo.write(f"images/{name}", f"s3 image {name}".encode() * 50)
        repo.dvc("add", "-q", "a.bin", "images")
        repo.commit("Add data")
        world.push("main")
        harness.set_origin_main(repo.work, repo.git("rev-parse", "HEAD"))
        world.sync()

        before = _remote_counts(world)
        pushed = world.pipeline("dvc-push", "main")
        assert pushed.returncode == 0, pushed.output
        assert "verified: all 4 objects" in pushed.output
        after = _remote_counts(world)
        assert _grown(before, after, f'{PRESENCE}{{method="head",state="stored"}}') == 4
        assert object_key(pointer_md5(repo, "a.bin.dvc")) in stored()
        assert len(stored()) == 4
        _assert_no_token_left(repo.work)

        validated = world.pipeline("validate-storage", "main")
        assert validated.returncode == 0, validated.output
        assert _grown(after, _remote_counts(world), PRESENCE) == 4

        # Everything on S3 is minutes old: dshub keeps the orphan as young, and says so.
        client.put_object(Bucket=s3_bucket.name, Key=prefix + ORPHAN, Body=b"orphan")
        dry = world.pipeline("dvc-gc", "main")
        assert dry.returncode == 0, dry.output
        report = json.loads((repo.work / "dvc-gc-report.json").read_text())
        assert report["collected_by"] == "dshub" and report["candidates"] == []
        assert report["kept_referenced"] == 4 and report["kept_young"] == 1
        assert ORPHAN in stored()
