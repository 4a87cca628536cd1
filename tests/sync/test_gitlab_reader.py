"""The GitLab reader against the sandbox: projects, datasets, refs, pointer files, compare."""

from __future__ import annotations

import gitlab
import pytest

from indexer.errors import NotAuthenticated
from indexer.gitlab.reader import GitLabReader
from tests.gitlab_sandbox.server import Sandbox


def _commit(project: object, files: dict[str, str], message: str = "data") -> str:
    actions = [
        {"action": "create", "file_path": path, "content": content}
        for path, content in files.items()
    ]
    commit = project.commits.create(  # type: ignore[attr-defined]
        {"branch": "main", "commit_message": message, "actions": actions}
    )
    return str(commit.id)


@pytest.fixture
def reader(gitlab_sandbox: Sandbox) -> GitLabReader:
    return GitLabReader(gitlab_sandbox.url, gitlab_sandbox.admin_token, max_retries=1)


def test_dataset_is_a_project_with_dvc_config(
    gitlab_admin: gitlab.Gitlab, reader: GitLabReader
) -> None:
    plain = gitlab_admin.projects.create({"name": "plain", "initialize_with_readme": True})
    data = gitlab_admin.projects.create(
        {
            "name": "data",
            "initialize_with_readme": True,
            "topics": ["mri", "masks"],
            "description": "Scans",
        }
    )
    _commit(data, {".dvc/config": "[core]\n    remote = site\n"})
    empty = gitlab_admin.projects.create({"name": "empty"})
    info = reader.project(data.id)
    assert info is not None
    assert info.topics == ("mri", "masks")
    assert info.description == "Scans"
    assert info.path_with_namespace == "root/data"
    assert reader.is_dataset(info)
    plain_info = reader.project(plain.id)
    assert plain_info is not None and not reader.is_dataset(plain_info)
    empty_info = reader.project(empty.id)
    assert empty_info is not None and not reader.is_dataset(empty_info)
    assert reader.project(999_999) is None
    assert {p.id for p in reader.projects()} == {plain.id, data.id, empty.id}


def test_refs_files_and_changes(gitlab_admin: gitlab.Gitlab, reader: GitLabReader) -> None:
    project = gitlab_admin.projects.create({"name": "ds", "initialize_with_readme": True})
    first = _commit(
        project,
        {
            "images.dvc": "outs:\n- md5: aa.dir\n  path: images\n",
            "labels/a.txt.dvc": "outs:\n- md5: bb\n  path: a.txt\n",
        },
    )
    project.tags.create({"tag_name": "v0.1.0", "ref": "main", "message": "first"})
    second = _commit(project, {"masks.dvc": "outs:\n- md5: cc\n  path: masks\n"})
    tag = reader.resolve_ref(project.id, "v0.1.0")
    assert tag is not None and tag.kind == "tag" and tag.commit_sha == first
    assert tag.message == "first"
    branch = reader.resolve_ref(project.id, "main")
    assert branch is not None and branch.kind == "branch" and branch.commit_sha == second
    assert reader.resolve_ref(project.id, "nope") is None
    assert [t.name for t in reader.tags(project.id)] == ["v0.1.0"]
    assert set(reader.list_paths(project.id, first)) == {
        "README.md",
        "images.dvc",
        "labels/a.txt.dvc",
    }
    assert reader.read_file(project.id, "images.dvc", "v0.1.0") == (
        b"outs:\n- md5: aa.dir\n  path: images\n"
    )
    assert reader.read_file(project.id, "masks.dvc", "v0.1.0") is None
    assert reader.changed_paths(project.id, first, second) == ["masks.dvc"]


def test_ci_variable_names_the_storage_site(
    gitlab_admin: gitlab.Gitlab, reader: GitLabReader
) -> None:
    project = gitlab_admin.projects.create({"name": "ds"})
    assert reader.ci_variable(project.id, "DSHUB_STORAGE_SITE") is None
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "lab-s3"})
    assert reader.ci_variable(project.id, "DSHUB_STORAGE_SITE") == "lab-s3"


def test_transient_failures_are_retried(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, reader: GitLabReader
) -> None:
    project = gitlab_admin.projects.create({"name": "ds"})
    gitlab_sandbox.faults.fail_next(count=1, status=502)
    info = reader.project(project.id)
    assert info is not None and info.name == "ds"


def test_refused_token_is_not_authenticated(gitlab_sandbox: Sandbox) -> None:
    with pytest.raises(NotAuthenticated):
        GitLabReader(gitlab_sandbox.url, "glpat-wrong").current_user()
