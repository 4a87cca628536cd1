"""A project that uses a dataset through a `dvc import` pointer pulls it in its pipeline with
nothing but its CI_JOB_TOKEN: gitlab-ci-local runs the dataset-consumer component against the
GitLab sandbox (git, with the dataset's CI/CD job token allowlist) and a gunicorn-served
dshub (its DVC remote), exactly while the consumer is on the dataset's allowlist."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import requests

from indexer.data.storage import StorageSite
from tests.ci import harness
from tests.ci.proxy_world import ProxyWorld, proxy_world
from tests.gitlab_sandbox.server import Sandbox
from tests.support.dataset_repo import object_key, pointer_md5

pytestmark = pytest.mark.slow
IMAGES = {"images/one.jpg": b"one " * 300, "images/sub/two.jpg": b"two " * 500}


def _publish_data(world: ProxyWorld) -> str:
    """Commit a tracked directory to the dataset and push its bytes through dshub (as its
    Maintainer, root); the credential lives in `.dvc/config.local`, removed afterwards."""
    repo = world.repo
    for path, data in IMAGES.items():
        repo.write(path, data)
    repo.dvc("add", "-q", "images")
    repo.commit("Add images")
    world.push("main")
    local = repo.work / ".dvc" / "config.local"
    for option, value in (("auth", "basic"), ("user", "root")):
        repo.dvc("remote", "modify", "--local", "site", option, value)
    repo.dvc("remote", "modify", "--local", "site", "password", world.dshub.sandbox.admin_token)
    try:
        repo.dvc("push", "-q")
    finally:
        local.unlink()
    return pointer_md5(repo, "images.dvc")


def _credential_env(root: Path, sandbox: Sandbox) -> dict[str, str]:
    """What `dshub login` sets up, for the test's own `dvc import` (root's token)."""
    root.mkdir(parents=True, exist_ok=True)
    store = root / "git-credentials"
    scheme, _, hostport = sandbox.url.partition("://")
    store.write_text(f"{scheme}://root:{sandbox.admin_token}@{hostport}\n")
    (root / "gitconfig").write_text(f"[credential]\n\thelper = store --file={store}\n")
    return {"GIT_CONFIG_GLOBAL": str(root / "gitconfig")}


def _consumer(world: ProxyWorld, tmp_path: Path) -> tuple[Any, harness.PipelineRepo]:
    """A consumer project whose repository holds an import pointer of the dataset's images."""
    admin = world.dshub.admin
    project = admin.projects.create({"name": "trainer", "visibility": "private"})
    work = tmp_path / "consumer"
    env = world.repo.env
    clone_url = f"http://oauth2:{world.dshub.sandbox.admin_token}@{world.dshub.host}/"
    harness.run(["git", "init", "-q", "-b", "main", str(work)], tmp_path, env)
    repo = harness.PipelineRepo(origin=tmp_path / "unused", work=work, env=env)
    repo.dvc("init", "-q")
    source = f"{world.dshub.sandbox.url}/{world.path}.git"
    repo.dvc_extra_env = _credential_env(tmp_path / "import-creds", world.dshub.sandbox)
    repo.dvc("import", "-q", "--no-download", source, "images", "--rev", "main")
    repo.dvc_extra_env = {}
    shutil.copytree(harness.TEMPLATES, work / "templates")
    (work / ".gitlab-ci.yml").write_text(harness.pipeline_yaml(source=harness.CONSUMER_PIPELINE))
    (work / ".gitignore").write_text(".gitlab-ci-local/\n")
    repo.commit("Import the images of the dataset")
    harness.git(work, "remote", "add", "sandbox", f"{clone_url}{project.path_with_namespace}.git")
    repo.git("push", "-q", "sandbox", "main")
    harness.git(work, "remote", "add", "origin", harness.COMPONENT_ORIGIN)
    harness.set_origin_main(work, repo.git("rev-parse", "HEAD"))
    return project, repo


def _run(
    world: ProxyWorld, consumer: Any, repo: harness.PipelineRepo, tmp: Path
) -> tuple[harness.Pipeline, str]:
    token = world.dshub.job_token(consumer.id)
    variables = {
        "CI_JOB_TOKEN": token,
        "CI_SERVER_URL": world.dshub.sandbox.url,
        "CI_PROJECT_ID": str(consumer.id),
        "DSHUB_URL": world.dshub.server.url,
    }
    repo.env = {**repo.env, "TMPDIR": str(tmp)}
    return repo.pipeline("dataset-pull", variables), token


def _pulled(repo: harness.PipelineRepo) -> dict[str, bytes]:
    for base in (repo.work, *sorted((repo.work / ".gitlab-ci-local" / "builds").glob("*"))):
        if (base / "images").is_dir():
            root = base / "images"
            return {
                f"images/{p.relative_to(root).as_posix()}": p.read_bytes()
                for p in root.rglob("*")
                if p.is_file()
            }
    return {}


def _forget_pulled(repo: harness.PipelineRepo) -> None:
    """Remove the pulled files and every DVC cache, so the next pull must fetch again."""
    for base in (repo.work, *(repo.work / ".gitlab-ci-local" / "builds").glob("*")):
        for leftover in ("images", ".dvc/cache", ".dvc/tmp"):
            shutil.rmtree(base / leftover, ignore_errors=True)


def test_an_allowlisted_consumer_pipeline_pulls_the_dataset_with_its_job_token(
    tmp_path: Path, gitlab_sandbox: Sandbox, dvc_env: dict[str, str]
) -> None:
    site_root = tmp_path / "sites" / "lab"
    site_root.mkdir(parents=True)
    site = StorageSite(name="lab", kind="local", path=str(site_root), prefix="team")
    with proxy_world(tmp_path, gitlab_sandbox, dvc_env, site) as world:
        directory_md5 = _publish_data(world)
        consumer, repo = _consumer(world, tmp_path)
        assert "password" not in (repo.work / "images.dvc").read_text()
        scope = world.project.job_token_scope.get()
        scope.allowlist.create({"target_project_id": consumer.id})
        job_tmp = tmp_path / "job-tmp"
        job_tmp.mkdir()

        pulled, token = _run(world, consumer, repo, job_tmp)
        assert pulled.returncode == 0, pulled.output
        assert _pulled(repo) == IMAGES
        assert token not in pulled.output
        assert list(job_tmp.iterdir()) == [], "the job left its credentials behind"

        # Off the allowlist: GitLab refuses the job's git fetch of the dataset ...
        scope.allowlist.delete(consumer.id)
        _forget_pulled(repo)
        refused, token = _run(world, consumer, repo, job_tmp)
        assert refused.returncode != 0, refused.output
        # (dvc's git client reports GitLab's 403 of the first request of the fetch)
        assert f"Failed to clone repo '{world.dshub.sandbox.url}/{world.path}.git'" in (
            refused.output
        ), refused.output
        assert "unexpected http resp 403" in refused.output
        assert _pulled(repo) == {}
        assert token not in refused.output
        assert not list(job_tmp.glob("dshub-job-*"))

        # ... and dshub's DVC remote refuses its token like any other project's.
        other = world.dshub.job_token(consumer.id)
        answer = requests.get(
            f"{world.dshub.server.url}/dvc/{world.project.id}/{object_key(directory_md5)}",
            auth=("gitlab-ci-token", other),
            timeout=30,
        )
        assert answer.status_code == 403, answer.text
        assert "this CI job token belongs to another project" in answer.json()["error"]["message"]
