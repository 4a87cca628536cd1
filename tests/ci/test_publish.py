"""`dshub ci publish` against the GitLab sandbox: project, files, semver tag, the catalog path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import gitlab
import pytest
import yaml

from dshub.ci.errors import CiCheckFailed, CiConfigError
from dshub.ci.publish import component_files, publish
from tests.gitlab_sandbox.server import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "ci-templates"
PROJECT = "dshub/ci-components"


@pytest.fixture
def dshub_group(gitlab_admin: gitlab.Gitlab) -> None:
    gitlab_admin.groups.create({"name": "dshub", "path": "dshub"})


def _tree_at(project: object, ref: str) -> dict[str, str]:
    found = {}
    for item in project.repository_tree(ref=ref, recursive=True, get_all=True):  # type: ignore[attr-defined]
        if item["type"] == "blob":
            raw = project.files.raw(file_path=item["path"], ref=ref)  # type: ignore[attr-defined]
            found[item["path"]] = raw.decode()
    return found


def _publish_cli(sandbox: Sandbox, version: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSHUB_GITLAB_TOKEN": token}
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "dshub"),
            "ci",
            "publish",
            "--gitlab-url",
            sandbox.url,
            "--project",
            PROJECT,
            "--version",
            version,
            "--source",
            str(SOURCE),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_publish_creates_the_component_project_tags_it_and_prints_the_pipelines_includes(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, dshub_group: None
) -> None:
    done = _publish_cli(gitlab_sandbox, "0.1.0", gitlab_sandbox.admin_token)
    assert done.returncode == 0, done.stderr

    project = gitlab_admin.projects.get(PROJECT)
    assert project.description  # the CI/CD Catalog requires one
    tag = project.tags.get("0.1.0")
    assert _tree_at(project, "0.1.0") == component_files(SOURCE)
    assert tag.commit["id"] == project.commits.get(project.default_branch).id

    printed = [
        line.split("component:", 1)[1].strip()
        for line in done.stdout.splitlines()
        if "component:" in line
    ]
    included = [
        entry["component"]
        for name in ("dataset.gitlab-ci.yml", "dataset-consumer.gitlab-ci.yml")
        for entry in yaml.safe_load((ROOT / "gitlab-ci" / name).read_text())["include"]
    ]
    assert printed == sorted(included)
    assert len(printed) == 4


def test_publishing_the_same_version_again_is_refused_and_changes_nothing(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, dshub_group: None
) -> None:
    token = gitlab_sandbox.admin_token
    first = publish(
        SOURCE,
        gitlab_url=gitlab_sandbox.url,
        token=token,
        project_path=PROJECT,
        version="1.0.0",
        say=lambda _: None,
    )
    assert first.files_changed == len(component_files(SOURCE))
    with pytest.raises(CiConfigError, match=r"already has tag 1\.0\.0; publish a new version"):
        publish(
            SOURCE,
            gitlab_url=gitlab_sandbox.url,
            token=token,
            project_path=PROJECT,
            version="1.0.0",
            say=lambda _: None,
        )
    project = gitlab_admin.projects.get(PROJECT)
    assert len(project.commits.list(get_all=True)) == 1
    assert project.tags.get("1.0.0").commit["id"] == first.commit


def test_a_new_version_commits_only_the_changes_and_removes_deleted_files(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, dshub_group: None, tmp_path: Path
) -> None:
    source = tmp_path / "ci-templates"
    shutil.copytree(SOURCE, source)
    token = gitlab_sandbox.admin_token
    first = publish(
        source,
        gitlab_url=gitlab_sandbox.url,
        token=token,
        project_path=PROJECT,
        version="1.0.0",
        say=lambda _: None,
    )
    readme = source / "templates" / "dvc-gc" / "README.md"
    readme.write_text(readme.read_text() + "\nA new note.\n")
    (source / "LICENSE.md").unlink()
    second = publish(
        source,
        gitlab_url=gitlab_sandbox.url,
        token=token,
        project_path=PROJECT,
        version="1.1.0-rc.1",
        say=lambda _: None,
    )
    assert second.files_changed == 2 and second.commit != first.commit
    project = gitlab_admin.projects.get(PROJECT)
    at_first, at_second = _tree_at(project, "1.0.0"), _tree_at(project, "1.1.0-rc.1")
    assert "LICENSE.md" in at_first and "LICENSE.md" not in at_second
    assert at_second["templates/dvc-gc/README.md"].endswith("A new note.\n")
    # An unchanged source tags the current commit without a new one.
    third = publish(
        source,
        gitlab_url=gitlab_sandbox.url,
        token=token,
        project_path=PROJECT,
        version="1.1.0",
        say=lambda _: None,
    )
    assert third.files_changed == 0 and third.commit == second.commit


@pytest.mark.parametrize("version", ["v1.0.0", "1.0", "01.2.3", "latest"])
def test_a_version_that_is_not_semver_is_refused_before_gitlab_is_touched(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, dshub_group: None, version: str
) -> None:
    done = _publish_cli(gitlab_sandbox, version, gitlab_sandbox.admin_token)
    assert done.returncode == 2
    assert f"dshub ci publish: version {version!r} is not a semantic version" in done.stderr
    with pytest.raises(gitlab.GitlabGetError):
        gitlab_admin.projects.get(PROJECT)


def test_publish_names_a_missing_group_and_a_token_without_rights(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    with pytest.raises(CiConfigError, match="group 'dshub' does not exist"):
        publish(
            SOURCE,
            gitlab_url=gitlab_sandbox.url,
            token=gitlab_sandbox.admin_token,
            project_path=PROJECT,
            version="1.0.0",
            say=lambda _: None,
        )
    # Public: GitLab refuses a project more visible than its group.
    group = gitlab_admin.groups.create({"name": "dshub", "path": "dshub", "visibility": "public"})
    gitlab_admin.projects.create(
        {
            "name": "ci-components",
            "namespace_id": group.id,
            "visibility": "public",
            "description": "components",
        }
    )
    _, reader_token = gitlab_sandbox.create_user("someone")
    with pytest.raises(CiCheckFailed, match=r"GitLab refused the publication \(40[34]\)"):
        publish(
            SOURCE,
            gitlab_url=gitlab_sandbox.url,
            token=reader_token,
            project_path=PROJECT,
            version="1.0.0",
            say=lambda _: None,
        )
