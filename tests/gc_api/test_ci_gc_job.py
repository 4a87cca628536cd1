"""The dvc-gc component end to end with dshub: gitlab-ci-local runs the job, which asks a
gunicorn-served dshub for the objects of indexed versions with a sandbox-minted CI_JOB_TOKEN.

The dataset lives in the GitLab sandbox; the job clone is shallow and deepens itself from
CI_REPOSITORY_URL with the job token (`gitlab-ci-token:<token>`), as on a GitLab runner.
Version `v-gone` was indexed by dshub and then deleted in GitLab before dshub heard of it:
git history no longer references its object, only dshub's index does.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gitlab
import pytest

from indexer.data.storage import StorageSite
from indexer.gitlab.reader import GitLabReader
from indexer.sites.registry import SiteRegistry
from indexer.store import open_index
from indexer.sync import refs as sync
from tests.ci import harness
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn
from tests.support.dataset_repo import DatasetRepo, object_key, pointer_md5

pytestmark = pytest.mark.slow
OLD = time.time() - 100 * 3600
ORPHAN = "files/md5/0a/bcdef0123456789abcdef012345678"


@pytest.fixture
def dshub(tmp_path: Path, gitlab_sandbox: Sandbox) -> Iterator[tuple[Gunicorn, str]]:
    index_url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    server = start_gunicorn(
        tmp_path / "gunicorn",
        {
            "DSHUB_DATA_DIR": str(tmp_path / "data"),
            "DSHUB_INDEX_URL": index_url,
            "DSHUB_GITLAB_URL": gitlab_sandbox.url,
            "DSHUB_GITLAB_TOKEN": gitlab_sandbox.admin_token,
            "DSHUB_WEBHOOK_SECRET": "s3cret-for-tests",
            "DSHUB_RECONCILE_INTERVAL": "0",
        },
        workers=1,
    )
    try:
        yield server, index_url
    finally:
        server.stop()


def test_the_gc_job_keeps_objects_of_indexed_versions_that_git_no_longer_references(
    tmp_path: Path,
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    dshub: tuple[Gunicorn, str],
    dvc_env: dict[str, str],
) -> None:
    harness.require_tools()
    server, index_url = dshub
    group = gitlab_admin.groups.create({"name": "vision", "path": "vision"})
    project = gitlab_admin.projects.create(
        {"name": "cats", "namespace_id": group.id, "visibility": "private"}
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "lab"})
    site_root = tmp_path / "sites" / "lab"
    storage = site_root / "team" / str(project.id)
    storage.mkdir(parents=True)
    SiteRegistry(index_url).put(
        StorageSite(name="lab", kind="local", path=str(site_root), prefix="team")
    )

    repo = DatasetRepo(
        tmp_path / "cats", gitlab_sandbox.url, "vision/cats", gitlab_sandbox.admin_token, dvc_env
    )
    repo.init_dvc_local(storage)
    shutil.copytree(harness.TEMPLATES, repo.path / "templates")
    with_dshub = {"dshub_url": server.url, "rules": [{"when": "manual"}]}
    (repo.path / ".gitlab-ci.yml").write_text(
        harness.pipeline_yaml(
            [
                {
                    "component": "dvc-gc",
                    "inputs": {"job_name": "gc-delete-dshub", "delete": True, **with_dshub},
                },
            ]
        )
    )
    (repo.path / ".gitignore").write_text(".gitlab-ci-local/\n/dvc-gc-report.json\n")
    repo.write("a.bin", b"A" * 64)
    repo.track("a.bin")
    kept = object_key(pointer_md5(repo, "a.bin.dvc"))
    repo.commit_and_push("Version 1")
    repo.tag("v1", "First version")
    repo.git("checkout", "-q", "-b", "side")
    repo.write("x.bin", b"X" * 64)
    repo.track("x.bin")
    gone = object_key(pointer_md5(repo, "x.bin.dvc"))
    repo.commit_and_push("Only in a version that will be deleted", branch="side")
    repo.tag("v-gone", "Soon deleted")
    repo.git("checkout", "-q", "main")

    with open_index(index_url) as store:
        ctx = sync.SyncContext(
            reader=GitLabReader(gitlab_sandbox.url, gitlab_sandbox.admin_token, max_retries=1),
            store=store,
            sites=SiteRegistry(index_url).get,
        )
        assert sync.sync_project(ctx, project.id) == "synced"
        assert {ref.ref for ref in store.list_refs(project.id)} == {"main", "v1", "v-gone"}
    project.tags.delete("v-gone")  # GitLab forgets the version; dshub has not heard yet
    project.branches.delete("side")

    (storage / ORPHAN).parent.mkdir(parents=True, exist_ok=True)
    (storage / ORPHAN).write_bytes(b"orphan bytes")
    for path in storage.rglob("*"):
        if path.is_file():
            os.utime(path, (OLD, OLD))
    before = {p.relative_to(storage).as_posix() for p in storage.rglob("*") if p.is_file()}
    assert {kept, gone, ORPHAN} <= before

    job_token = gitlab_sandbox.create_job_token(project.id, gitlab_sandbox_user(gitlab_sandbox))
    host = urlsplit(gitlab_sandbox.url).netloc
    repository_url = f"http://gitlab-ci-token:{job_token}@{host}/vision/cats.git"
    job_dir = tmp_path / "job"
    harness.run(
        ["git", "clone", "-q", "--depth", "1", repository_url, str(job_dir)],
        tmp_path,
        {**dvc_env, "GIT_TERMINAL_PROMPT": "0"},
    )
    harness.git(job_dir, "remote", "set-url", "origin", harness.COMPONENT_ORIGIN)
    harness.set_origin_main(job_dir, harness.git(job_dir, "rev-parse", "HEAD"))
    (tmp_path / ".gcl-home").mkdir()
    runner = _runner(tmp_path, job_dir, dvc_env, project.id, storage, repository_url, job_token)

    # Without dshub, git history alone would let the deleted version's object go.
    alone = runner.pipeline("dvc-gc", cwd=job_dir)
    assert alone.returncode == 0, alone.output
    report = json.loads((job_dir / "dvc-gc-report.json").read_text())
    assert sorted(c["key"] for c in report["candidates"]) == sorted([gone, ORPHAN])

    # The shipped job asks dshub whenever dshub has set DSHUB_URL on the dataset.
    dry = runner.pipeline("dvc-gc", {"DSHUB_URL": server.url}, cwd=job_dir)
    assert dry.returncode == 0, dry.output
    assert "keep set: 2 objects of versions dshub indexed" in dry.output
    report = json.loads((job_dir / "dvc-gc-report.json").read_text())
    assert [c["key"] for c in report["candidates"]] == [ORPHAN]

    real = runner.pipeline("gc-delete-dshub", cwd=job_dir)
    assert real.returncode == 0, real.output
    after = {p.relative_to(storage).as_posix() for p in storage.rglob("*") if p.is_file()}
    assert after == before - {ORPHAN}

    # A job token of another project (CI_JOB_TOKEN mixed up) must not stand for this one.
    other = gitlab_admin.projects.create({"name": "dogs", "namespace_id": group.id})
    foreign = gitlab_sandbox.create_job_token(other.id, gitlab_sandbox_user(gitlab_sandbox))
    (storage / ORPHAN).write_bytes(b"orphan bytes")
    os.utime(storage / ORPHAN, (OLD, OLD))
    refused = runner.pipeline("gc-delete-dshub", {"CI_JOB_TOKEN": foreign}, cwd=job_dir)
    assert refused.returncode != 0
    assert "dshub answered 403 (this CI job token belongs to another project" in refused.output
    assert (storage / ORPHAN).exists()


def gitlab_sandbox_user(sandbox: Sandbox) -> Any:
    """The sandbox's admin user (who 'starts' the scheduled gc pipeline)."""
    user = sandbox.state.user_by_username("root")
    assert user is not None
    return user


def _runner(
    tmp_path: Path,
    job_dir: Path,
    dvc_env: dict[str, str],
    project_id: int,
    storage: Path,
    repository_url: str,
    job_token: str,
) -> harness.PipelineRepo:
    aws_config = tmp_path / "aws-config"
    aws_config.write_text("")
    env = {
        **dvc_env,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), dvc_env.get("PATH", "")]),
        "AWS_CONFIG_FILE": str(aws_config),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws_config),
        "GIT_TERMINAL_PROMPT": "0",
    }
    return harness.PipelineRepo(
        origin=tmp_path / "unused",
        work=job_dir,
        env=env,
        variables={
            "CI_PROJECT_ID": str(project_id),
            "DSHUB_DATASET_ID": str(project_id),
            "DSHUB_DVC_REMOTE_URL": str(storage),
            "CI_REPOSITORY_URL": repository_url,
            "CI_JOB_TOKEN": job_token,
            "DSHUB_CI_DVC_STATE_DIR": str(tmp_path / "_ci_dvc_state"),
        },
    )
