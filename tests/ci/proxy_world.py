"""A proxy-mode dataset for pipeline tests: GitLab sandbox, gunicorn-served dshub, a storage site.

The dataset is a sandbox project whose storage site (proxy access mode) is selected the way
dshub does it: the selection is recorded and the contract's CI/CD variables are written to
the project with `indexer.sites.selection`, then read back from GitLab for the pipeline. Its
`.dvc/config` names `DSHUB_DVC_REMOTE_URL`; no storage key is anywhere in the project. Jobs
run under gitlab-ci-local in the working clone (or a shallow job clone) with a CI_JOB_TOKEN
minted by the sandbox for the pipeline's ref.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gitlab

from indexer.data.storage import Credentials, StorageSite
from indexer.gitlab.reader import GitLabReader
from indexer.sites.registry import SiteRegistry
from indexer.sites.selection import contract_variables, set_variables
from indexer.store import open_index
from indexer.sync import refs as sync
from tests.ci import harness
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn


@dataclass
class Dshub:
    """A gunicorn-served dshub over its own index, and the GitLab sandbox it trusts."""

    sandbox: Sandbox
    admin: gitlab.Gitlab
    server: Gunicorn
    index_url: str
    credentials: dict[str, Credentials]

    @property
    def host(self) -> str:
        """The sandbox's host:port."""
        return urlsplit(self.sandbox.url).netloc

    def job_token(self, project_id: int, ref: str = "main") -> str:
        """A running job's CI_JOB_TOKEN of project `project_id` for `ref`."""
        user = self.sandbox.state.user_by_username("root")
        assert user is not None
        return self.sandbox.create_job_token(project_id, user, ref=ref)

    def sync(self, project_id: int) -> None:
        """Index the dataset now (what a webhook would trigger)."""
        with open_index(self.index_url) as store:
            ctx = sync.SyncContext(
                reader=GitLabReader(self.sandbox.url, self.sandbox.admin_token, max_retries=1),
                store=store,
                sites=SiteRegistry(self.index_url).get,
                credentials=self.credentials,
            )
            assert sync.sync_project(ctx, project_id) == "synced"


@dataclass
class ProxyWorld:
    """One proxy-mode dataset (GitLab project `path`) served by `dshub`."""

    dshub: Dshub
    project: Any
    other_project: Any
    path: str
    repo: harness.PipelineRepo

    def job_token(self, ref: str = "main", project: Any | None = None) -> str:
        """A running job's CI_JOB_TOKEN of `project` (default: the dataset) for `ref`."""
        return self.dshub.job_token((project or self.project).id, ref)

    def push(self, *refspecs: str) -> None:
        """`git push` to the dataset's GitLab project (the clone's `sandbox` remote)."""
        self.repo.git("push", "-q", "sandbox", *refspecs)

    def sync(self) -> None:
        """Index the dataset now."""
        self.dshub.sync(self.project.id)

    def repository_url(self, token: str) -> str:
        """CI_REPOSITORY_URL as GitLab gives it to a job holding `token`."""
        return f"http://gitlab-ci-token:{token}@{self.dshub.host}/{self.path}.git"

    def pipeline(
        self, job: str, ref: str, extra: dict[str, str] | None = None, cwd: Path | None = None
    ) -> harness.Pipeline:
        """Run `job` as a pipeline of `ref` would: with a job token minted for `ref`."""
        token = self.job_token(ref)
        variables = {
            "CI_JOB_TOKEN": token,
            "CI_REPOSITORY_URL": self.repository_url(token),
            **(extra or {}),
        }
        return self.repo.pipeline(job, variables, cwd=cwd)

    def shallow_clone(self, name: str) -> Path:
        """A depth-1 clone of the dataset's main, as a GitLab runner makes it."""
        target = self.repo.work.parent / name
        url = self.repository_url(self.job_token())
        harness.run(
            ["git", "clone", "-q", "--depth", "1", url, str(target)],
            self.repo.work.parent,
            self.repo.env,
        )
        harness.git(target, "remote", "set-url", "origin", harness.COMPONENT_ORIGIN)
        harness.set_origin_main(target, harness.git(target, "rev-parse", "HEAD"))
        return target


@contextmanager
def served_dshub(
    workdir: Path,
    sandbox: Sandbox,
    credentials: dict[str, Credentials] | None = None,
    workers: int = 1,
) -> Iterator[Dshub]:
    """dshub under gunicorn, trusting `sandbox`, with `credentials` for its storage sites."""
    index_url = f"sqlite:///{workdir / 'index.sqlite3'}"
    env = {
        "DSHUB_DATA_DIR": str(workdir / "data"),
        "DSHUB_INDEX_URL": index_url,
        "DSHUB_GITLAB_URL": sandbox.url,
        "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
        "DSHUB_WEBHOOK_SECRET": "s3cret-for-tests",
        "DSHUB_RECONCILE_INTERVAL": "0",
    }
    workdir.mkdir(parents=True, exist_ok=True)
    if credentials:
        creds = workdir / "credentials.json"
        creds.write_text(
            json.dumps(
                {
                    ref: {
                        "access_key_id": c.access_key_id,
                        "secret_access_key": c.secret_access_key,
                    }
                    for ref, c in credentials.items()
                }
            )
        )
        env["DSHUB_STORAGE_CREDENTIALS_FILE"] = str(creds)
    admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
    server = start_gunicorn(workdir / "gunicorn", env, workers=workers)
    try:
        yield Dshub(sandbox, admin, server, index_url, dict(credentials or {}))
    finally:
        server.stop()


def job_environment(workdir: Path, dvc_env: dict[str, str]) -> dict[str, str]:
    """The environment jobs and the test's own dvc calls run with (no AWS config of ours)."""
    aws_config = workdir / "aws-config"
    aws_config.write_text("")
    return {
        **dvc_env,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), dvc_env.get("PATH", "")]),
        "AWS_CONFIG_FILE": str(aws_config),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws_config),
        "GIT_TERMINAL_PROMPT": "0",
    }


def create_dataset(
    dshub: Dshub,
    workdir: Path,
    name: str,
    site: StorageSite,
    dvc_env: dict[str, str],
    extra_includes: list[dict[str, Any]] | None = None,
) -> ProxyWorld:
    """A new dataset `datasets/<name>` on `site`, its contract variables set, cloned in
    `workdir/work` with the dataset pipeline committed, pushed and indexed."""
    admin = dshub.admin
    try:
        group: Any = admin.groups.get("datasets")
    except gitlab.exceptions.GitlabGetError:
        group = admin.groups.create({"name": "datasets", "path": "datasets"})
    project = admin.projects.create(
        {"name": name, "namespace_id": group.id, "visibility": "private"}
    )
    other = admin.projects.create({"name": f"{name}-other", "namespace_id": group.id})

    registry = SiteRegistry(dshub.index_url)
    if registry.record(site.name) is None:
        registry.put(site)
    record = registry.record(site.name)
    assert record is not None and record.site.access_mode == "proxy"
    registry.select(project.id, site.name, None)
    set_variables(admin, project.id, contract_variables(record, project.id, dshub.server.url, {}))
    registry.mark_applied(project.id)
    contract = {v.key: v.value for v in project.variables.list(get_all=True)}
    assert not any(key.startswith("DSHUB_S3_") for key in contract), "proxy mode leaked keys"

    workdir.mkdir(parents=True, exist_ok=True)
    env = job_environment(workdir, dvc_env)
    work = workdir / "work"
    path = f"datasets/{name}"
    clone_url = f"http://oauth2:{dshub.sandbox.admin_token}@{dshub.host}/{path}.git"
    harness.run(["git", "clone", "-q", clone_url, str(work)], workdir, env)
    harness.git(work, "symbolic-ref", "HEAD", "refs/heads/main")
    (workdir / ".gcl-home").mkdir(exist_ok=True)
    repo = harness.PipelineRepo(origin=workdir / "unused", work=work, env=env)
    repo.dvc("init", "-q")
    repo.dvc("remote", "add", "-d", "site", contract["DSHUB_DVC_REMOTE_URL"])
    shutil.copytree(harness.TEMPLATES, work / "templates")
    (work / ".gitlab-ci.yml").write_text(harness.pipeline_yaml(extra_includes))
    (work / ".gitignore").write_text(
        ".gitlab-ci-local/\n/dvc-gc-report.json\n/validate-storage.xml\n/dvc-data-diff.md\n"
    )
    repo.commit("Start the dataset")
    harness.git(work, "remote", "rename", "origin", "sandbox")
    harness.git(work, "remote", "add", "origin", harness.COMPONENT_ORIGIN)
    repo.variables = {
        **contract,
        "CI_PROJECT_ID": str(project.id),
        "DSHUB_CI_DVC_STATE_DIR": str(workdir / "_ci_dvc_state"),
    }
    world = ProxyWorld(dshub, project, other, path, repo)
    world.push("main")
    harness.set_origin_main(work, repo.git("rev-parse", "HEAD"))
    world.sync()
    return world


@contextmanager
def proxy_world(
    tmp_path: Path,
    sandbox: Sandbox,
    dvc_env: dict[str, str],
    site: StorageSite,
    credentials: dict[str, Credentials] | None = None,
    extra_includes: list[dict[str, Any]] | None = None,
) -> Iterator[ProxyWorld]:
    """One dataset on `site` (proxy mode) with its own dshub, stopped afterwards."""
    harness.require_tools()
    with served_dshub(tmp_path, sandbox, credentials) as dshub:
        yield create_dataset(dshub, tmp_path, "cats", site, dvc_env, extra_includes)
