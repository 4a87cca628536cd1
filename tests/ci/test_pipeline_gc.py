"""dvc-gc executed for real (gitlab-ci-local) against a local-directory remote.

Objects are made "old" by setting their mtimes; no test sleeps. The job runs in a depth-1
clone, as a GitLab runner makes it, and must deepen it before deciding anything.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.ci.harness import (
    DATASET_ID,
    PipelineRepo,
    make_dataset,
    require_tools,
    shallow_job_clone,
)

pytestmark = pytest.mark.slow
OLD = time.time() - 100 * 3600


def _objects(storage: Path) -> dict[str, Path]:
    return {p.relative_to(storage).as_posix(): p for p in storage.rglob("*") if p.is_file()}


def _key(md5: str) -> str:
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def _md5(repo: PipelineRepo, pointer: str) -> str:
    text = (repo.work / pointer).read_text()
    return text.split("md5: ", 1)[1].split()[0]


@pytest.fixture
def history(tmp_path: Path, dvc_env: dict[str, str]) -> tuple[PipelineRepo, Path, dict[str, str]]:
    """A dataset whose objects are each referenced from a different place in history."""
    require_tools()
    storage = tmp_path / "storage" / "site" / DATASET_ID
    storage.mkdir(parents=True)
    repo = make_dataset(
        tmp_path,
        str(storage),
        dvc_env,
        {},
        extra_includes=[
            {
                "component": "dvc-gc",
                "inputs": {
                    "job_name": "dvc-gc-delete",
                    "delete": True,
                    "rules": [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}],
                },
            }
        ],
    )
    keys: dict[str, str] = {}
    repo.write("data.bin", b"A" * 100)
    repo.dvc("add", "-q", "data.bin")
    keys["tagged"] = _key(_md5(repo, "data.bin.dvc"))
    repo.commit("Version 1")
    repo.git("tag", "-a", "v1", "-m", "v1")
    repo.write("data.bin", b"B" * 100)
    repo.dvc("add", "-q", "data.bin")
    keys["older_commit"] = _key(_md5(repo, "data.bin.dvc"))
    for name in ("i1", "i2"):
        repo.write(f"imgs/{name}.png", name.encode() * 40)
    repo.dvc("add", "-q", "imgs")
    keys["dir_manifest"] = _key(_md5(repo, "imgs.dvc"))
    repo.commit("Version 2")
    repo.git("checkout", "-q", "-b", "side")
    repo.write("side.bin", b"F" * 100)
    repo.dvc("add", "-q", "side.bin")
    keys["branch_only"] = _key(_md5(repo, "side.bin.dvc"))
    repo.commit("Side work")
    repo.git("checkout", "-q", "main")
    repo.write("data.bin", b"C" * 100)
    repo.dvc("add", "-q", "data.bin")
    keys["head"] = _key(_md5(repo, "data.bin.dvc"))
    repo.commit("Version 3")
    repo.git("push", "-q", "--tags", str(repo.origin), "main", "side")
    repo.dvc("push", "-q", "--all-commits")
    # Pushed before its commit exists (as `dvc push` before `git push` does): young.
    repo.write("fresh.bin", b"Y" * 100)
    repo.dvc("add", "-q", "fresh.bin")
    keys["fresh"] = _key(_md5(repo, "fresh.bin.dvc"))
    repo.dvc("push", "-q", "fresh.bin.dvc")
    (repo.work / "fresh.bin.dvc").unlink()
    orphan = storage / "files/md5/0a/bcdef0123456789abcdef012345678"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"orphan bytes")
    keys["orphan"] = "files/md5/0a/bcdef0123456789abcdef012345678"
    (storage / "README").write_text("not a DVC object")
    for relative, path in _objects(storage).items():
        if relative != keys["fresh"]:
            os.utime(path, (OLD, OLD))
    return repo, storage, keys


def test_gc_deepens_a_shallow_clone_and_collects_only_the_old_orphan(
    history: tuple[PipelineRepo, Path, dict[str, str]],
) -> None:
    repo, storage, keys = history
    everything = set(_objects(storage))
    assert set(keys.values()) <= everything

    job = shallow_job_clone(repo, "job")
    dry = repo.pipeline("dvc-gc", cwd=job)
    assert dry.returncode == 0, dry.output
    report = json.loads((job / "dvc-gc-report.json").read_text())
    assert [item["key"] for item in report["candidates"]] == [keys["orphan"]]
    assert report["candidate_bytes"] == len(b"orphan bytes")
    assert report["kept_young"] == 1 and report["ignored_keys"] == ["README"]
    assert set(_objects(storage)) == everything, "a dry run deleted something"

    real = repo.pipeline("dvc-gc-delete", cwd=job)
    assert real.returncode == 0, real.output
    assert f"gc: deleted {keys['orphan']} (12 bytes)" in real.output
    assert set(_objects(storage)) == everything - {keys["orphan"]}


def test_gc_refuses_a_shallow_clone_it_cannot_deepen(
    history: tuple[PipelineRepo, Path, dict[str, str]],
) -> None:
    repo, storage, _ = history
    before = set(_objects(storage))
    job = shallow_job_clone(repo, "job")
    refused = repo.pipeline("dvc-gc-delete", {"CI_REPOSITORY_URL": ""}, cwd=job)
    assert refused.returncode != 0
    assert "the clone is shallow and CI_REPOSITORY_URL is not set" in refused.output
    assert set(_objects(storage)) == before


def test_gc_refuses_the_remote_of_the_dataset_a_project_was_started_from(
    history: tuple[PipelineRepo, Path, dict[str, str]], tmp_path: Path
) -> None:
    repo, storage, _ = history
    before = set(_objects(storage))
    fork = {
        "CI_PROJECT_ID": "777",
        "DSHUB_DATASET_ID": "777",
        "DSHUB_DVC_REMOTE_URL": str(tmp_path / "storage" / "site" / "777"),
    }
    refused = repo.pipeline("dvc-gc-delete", fork)
    assert refused.returncode != 0
    assert f"points at {storage}, but this dataset's storage is" in refused.output
    assert set(_objects(storage)) == before
