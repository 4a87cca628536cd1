"""Repository archive contract (`GET /projects/:id/repository/archive[.format]`), as GitLab
documents it (doc/api/repositories.md, lib/api/repositories.rb): formats `tar.gz` (the
default), `tar`, `tar.bz2` (and its aliases), `zip`; `sha` any ref (default branch when
absent); `path` one folder; every entry under `<project>-<ref>-<sha>[-<path>]/`, the sha
always appended by the API; `application/zip` for zip, else `application/octet-stream`;
unknown ref or path 404 `404 File Not Found`; read access as for the repository."""

from __future__ import annotations

import bz2
import gzip
import io
import tarfile
import zipfile
from collections.abc import Callable
from typing import Any

import gitlab
import pytest
import requests

from tests.gitlab_sandbox.server import Sandbox

Client = Callable[..., tuple[Any, gitlab.Gitlab]]


@pytest.fixture
def project(gitlab_admin: gitlab.Gitlab) -> Any:
    made = gitlab_admin.projects.create(
        {"name": "cats", "visibility": "private", "initialize_with_readme": True}
    )
    made.commits.create(
        {
            "branch": "main",
            "commit_message": "files",
            "actions": [
                {"action": "create", "file_path": "d/x.txt", "content": "x"},
                {"action": "create", "file_path": "d/e/y.txt", "content": "y"},
                {"action": "create", "file_path": "top.txt", "content": "t"},
            ],
        }
    )
    made.tags.create({"tag_name": "v1", "ref": "main"})
    return made


def _tar_files(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile())


@pytest.mark.parametrize(
    ("fmt", "unpack"),
    [
        (None, gzip.decompress),
        ("tar.gz", gzip.decompress),
        ("tar", lambda data: data),
        ("tar.bz2", bz2.decompress),
        ("tbz2", bz2.decompress),
    ],
)
def test_tar_formats_hold_every_file_under_gitlabs_prefix(
    project: Any, fmt: str | None, unpack: Callable[[bytes], bytes]
) -> None:
    sha = project.commits.get("v1").id
    data = project.repository_archive(sha="v1", format=fmt)
    plain = unpack(data)
    assert plain[257:262] == b"ustar"  # a real tar, as `git archive` writes it
    prefix = f"cats-v1-{sha}"
    assert _tar_files(plain) == [
        f"{prefix}/README.md",
        f"{prefix}/d/e/y.txt",
        f"{prefix}/d/x.txt",
        f"{prefix}/top.txt",
    ]


def test_zip_with_path_and_a_full_sha_and_the_answers_headers(
    gitlab_sandbox: Sandbox, project: Any
) -> None:
    sha = project.commits.get("main").id
    zipped = project.repository_archive(sha=sha, format="zip", path="d")
    names = [n for n in zipfile.ZipFile(io.BytesIO(zipped)).namelist() if not n.endswith("/")]
    assert names == [f"cats-{sha}-{sha}-d/d/e/y.txt", f"cats-{sha}-{sha}-d/d/x.txt"]

    answer = requests.get(
        f"{gitlab_sandbox.url}/api/v4/projects/{project.id}/repository/archive.zip",
        params={"sha": "main", "path": "d/e"},
        headers={"PRIVATE-TOKEN": gitlab_sandbox.admin_token},
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/zip"
    assert (
        answer.headers["Content-Disposition"] == f'attachment; filename="cats-main-{sha}-d-e.zip"'
    )
    assert answer.headers["Content-Transfer-Encoding"] == "binary"
    tgz = requests.get(
        f"{gitlab_sandbox.url}/api/v4/projects/{project.id}/repository/archive",
        params={"sha": "v1"},
        headers={"PRIVATE-TOKEN": gitlab_sandbox.admin_token},
        timeout=30,
    )
    assert tgz.headers["Content-Type"] == "application/octet-stream"
    assert tgz.headers["Content-Disposition"].endswith(f'filename="cats-v1-{sha}.tar.gz"')


def test_streamed_iterator_gives_the_same_bytes(project: Any) -> None:
    whole = project.repository_archive(sha="v1", format="zip")
    chunks = project.repository_archive(sha="v1", format="zip", streamed=True, iterator=True)
    assert b"".join(chunks) == whole


def test_unknown_ref_or_path_is_404_and_reading_needs_repository_access(
    gitlab_admin: gitlab.Gitlab, project: Any, make_client: Client, anonymous: gitlab.Gitlab
) -> None:
    for kwargs in ({"sha": "nope"}, {"sha": "main", "path": "no/such"}):
        with pytest.raises(gitlab.GitlabListError) as exc:
            project.repository_archive(**kwargs)
        assert exc.value.response_code == 404
        assert exc.value.error_message == "404 File Not Found"
    reporter, as_reporter = make_client("rita")
    _, stranger = make_client("stranger")
    project.members.create({"user_id": reporter.id, "access_level": 20})
    assert as_reporter.projects.get(project.id, lazy=True).repository_archive(format="zip")
    for client in (stranger, anonymous):
        with pytest.raises(gitlab.GitlabListError) as exc:
            client.projects.get(project.id, lazy=True).repository_archive(format="zip")
        assert exc.value.response_code == 404
        assert exc.value.error_message == "404 Project Not Found"
