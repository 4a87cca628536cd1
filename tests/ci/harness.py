"""Temporary dataset repositories whose pipeline runs for real under gitlab-ci-local.

A dataset repository gets the shipped pipeline (`gitlab-ci/dataset.gitlab-ci.yml`) with its
component addresses rewritten to `$CI_SERVER_FQDN/$CI_PROJECT_PATH/<name>@$CI_COMMIT_SHA`,
and a copy of `ci-templates/templates/`; its `origin` remote names the component project
path, which is how gitlab-ci-local resolves components locally. CI_REPOSITORY_URL always
points at the local bare repository, so nothing ever leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GITLAB_CI_LOCAL = ROOT / "node_modules" / ".bin" / "gitlab-ci-local"
DATASET_PIPELINE = ROOT / "gitlab-ci" / "dataset.gitlab-ci.yml"
CONSUMER_PIPELINE = ROOT / "gitlab-ci" / "dataset-consumer.gitlab-ci.yml"
TEMPLATES = ROOT / "ci-templates" / "templates"
COMPONENT_ORIGIN = "git@gitlab.example.com:dshub/ci-components.git"
DATASET_ID = "4242"
GIT_ID = ["-c", "user.email=ci@example.com", "-c", "user.name=CI test"]


def require_tools() -> None:
    """Stop the run with one actionable line when gitlab-ci-local or rsync is missing."""
    import pytest

    if not GITLAB_CI_LOCAL.exists():
        pytest.fail(
            "gitlab-ci-local is not installed: run `npm ci --no-audit --no-fund` (make test does)"
        )
    if shutil.which("rsync") is None:
        pytest.fail("gitlab-ci-local needs rsync: apt-get install -y rsync")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, raising with its output when it fails; returns stdout."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def git(repo: Path, *args: str) -> str:
    """`git <args>` in `repo` with a fixed identity."""
    return run(["git", *GIT_ID, *args], repo).strip()


def pipeline_yaml(
    extra_includes: list[dict[str, Any]] | None = None, source: Path = DATASET_PIPELINE
) -> str:
    """A shipped pipeline (default: the dataset's) with local component addresses (plus
    `extra_includes`)."""
    pipeline = yaml.safe_load(source.read_text())
    includes = []
    for entry in pipeline["include"]:
        name = entry["component"].rsplit("/", 1)[1].split("@", 1)[0]
        includes.append({**entry, "component": component(name)})
    for entry in extra_includes or []:
        includes.append({**entry, "component": component(entry["component"])})
    pipeline["include"] = includes
    return yaml.safe_dump(pipeline, sort_keys=False)


def component(name: str) -> str:
    """The local address of component `name`."""
    return f"$CI_SERVER_FQDN/$CI_PROJECT_PATH/{name}@$CI_COMMIT_SHA"


@dataclass
class Pipeline:
    """The outcome of one gitlab-ci-local run."""

    returncode: int
    output: str


@dataclass
class PipelineRepo:
    """A dataset's bare origin and a working clone, with the pipeline committed on main."""

    origin: Path
    work: Path
    env: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)
    dvc_extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The working clone (what `tests.support.dataset_repo.pointer_md5` reads)."""
        return self.work

    def dvc(self, *args: str, cwd: Path | None = None) -> str:
        """Run `dvc <args>` with the test's DVC state and storage environment."""
        return run(
            [str(Path(sys.executable).parent / "dvc"), *args],
            cwd or self.work,
            {**self.env, **self.dvc_extra_env},
        )

    def git(self, *args: str, cwd: Path | None = None) -> str:
        """Run git in the working clone (or `cwd`)."""
        return git(cwd or self.work, *args)

    def commit(self, message: str, *paths: str) -> str:
        """Stage `paths` (all changes when empty), commit, and return the new sha."""
        self.git("add", *(paths or ("-A",)))
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def write(self, relative: str, data: bytes) -> Path:
        """Write a data file in the working clone."""
        path = self.work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def pipeline(
        self, job: str, variables: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Pipeline:
        """Run `job` with gitlab-ci-local (shell executor) in the clone, with CI variables."""
        directory = cwd or self.work
        merged = {**self.variables, **(variables or {})}
        cmd = [
            str(GITLAB_CI_LOCAL),
            "--force-shell-executor",
            "--home",
            str(directory.parent / ".gcl-home"),
            "--manual",
            job,
        ]
        for key, value in merged.items():
            cmd += ["--variable", f"{key}={value}"]
        cmd += ["--ignore-predefined-vars", ",".join(sorted(merged))]
        cmd.append(job)
        result = subprocess.run(
            cmd,
            cwd=directory,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        return Pipeline(result.returncode, result.stdout + result.stderr)


def make_dataset(
    tmp_path: Path,
    remote_url: str,
    dvc_env: dict[str, str],
    variables: dict[str, str],
    extra_includes: list[dict[str, Any]] | None = None,
) -> PipelineRepo:
    """A dataset repository: `dvc init`, default remote `storage` = `remote_url`, the test
    pipeline and templates, committed on main and pushed to a bare origin."""
    origin = tmp_path / "origin.git"
    work = tmp_path / "work"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)
    run(["git", "init", "-q", "-b", "main", str(work)], tmp_path)
    # dvc-s3 reads AWS_CONFIG_FILE itself and rejects the harness's /dev/null; an empty file
    # keeps the developer's own AWS configuration out just the same.
    aws_config = tmp_path / "aws-config"
    aws_config.write_text("")
    env = {
        **dvc_env,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), dvc_env.get("PATH", "")]),
        "AWS_CONFIG_FILE": str(aws_config),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws_config),
    }
    (tmp_path / ".gcl-home").mkdir()
    repo = PipelineRepo(origin=origin, work=work, env=env)
    repo.dvc("init", "-q")
    repo.dvc("remote", "add", "-d", "storage", remote_url)
    shutil.copytree(TEMPLATES, work / "templates")
    (work / ".gitlab-ci.yml").write_text(pipeline_yaml(extra_includes))
    (work / ".gitignore").write_text(
        ".gitlab-ci-local/\n/dvc-gc-report.json\n/validate-storage.xml\n/dvc-data-diff.md\n"
    )
    repo.commit("Start the dataset")
    repo.git("remote", "add", "origin", COMPONENT_ORIGIN)
    repo.git("push", "-q", str(origin), "main")
    set_origin_main(work, repo.git("rev-parse", "HEAD"))
    repo.variables = {
        "CI_PROJECT_ID": DATASET_ID,
        "DSHUB_DATASET_ID": DATASET_ID,
        "DSHUB_STORAGE_SITE": "test-site",
        "DSHUB_DVC_REMOTE_URL": remote_url,
        "CI_REPOSITORY_URL": origin.as_uri(),
        "DSHUB_CI_DVC_STATE_DIR": str(tmp_path / "_ci_dvc_state"),
        **variables,
    }
    return repo


def set_origin_main(work: Path, sha: str) -> None:
    """Point `origin/main` (what gitlab-ci-local diffs `rules:changes` against) at `sha`."""
    git(work, "update-ref", "refs/remotes/origin/main", sha)
    git(work, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")


def shallow_job_clone(repo: PipelineRepo, name: str) -> Path:
    """A depth-1 clone of origin's main, as a GitLab runner makes, with the component origin."""
    target = repo.work.parent / name
    run(
        [
            "git",
            "clone",
            "-q",
            "--depth",
            "1",
            "--branch",
            "main",
            repo.origin.as_uri(),
            str(target),
        ],
        repo.work.parent,
    )
    git(target, "remote", "set-url", "origin", COMPONENT_ORIGIN)
    set_origin_main(target, git(target, "rev-parse", "HEAD"))
    return target
