"""GitRepo against real bare repositories: commits, reads, refs, compare, revert, archives."""

from __future__ import annotations

import base64
import io
import subprocess
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.gitlab_sandbox.gitrepo import (
    REVERT_FAILED,
    ZERO_SHA,
    CommitError,
    GitRepo,
    Person,
    RefError,
    RevertError,
    archive_prefix,
    commit_title,
)

WHEN = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _create(path: str, content: str = "x\n", **extra: object) -> dict[str, object]:
    return {"action": "create", "file_path": path, "content": content, **extra}


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "g" / "p.git")
    r.init_bare("main")
    return r


def _commit(
    repo: GitRepo, actions: list[dict[str, object]], branch: str = "main", **kw: object
) -> str:
    return repo.commit(branch, actions, kw.pop("message", "msg"), "Ann", "ann@example.com", **kw)  # type: ignore[arg-type]


def test_new_repository_is_empty_until_the_first_commit_creates_the_branch(repo: GitRepo) -> None:
    assert repo.is_empty()
    assert repo.refs() == {}
    sha = _commit(repo, [_create("README.md", "hello\n")], message="Initial commit")
    assert not repo.is_empty()
    assert repo.refs() == {"refs/heads/main": sha}
    info = repo.commit_info(sha)
    assert info is not None
    assert info["parent_ids"] == []
    assert info["title"] == "Initial commit"
    assert info["message"] == "Initial commit"
    assert info["short_id"] == sha[:11]
    assert info["author_name"] == "Ann" and info["committer_email"] == "ann@example.com"


def test_commit_dates_use_gitlabs_millisecond_iso_format(repo: GitRepo) -> None:
    sha = _commit(repo, [_create("a")], created_at=WHEN)
    info = repo.commit_info(sha)
    assert info is not None
    assert info["authored_date"] == "2026-03-01T12:00:00.000+00:00"
    assert info["created_at"] == info["committed_date"] == info["authored_date"]


def test_create_on_existing_path_is_refused_with_gitlabs_message(repo: GitRepo) -> None:
    _commit(repo, [_create("a.txt")])
    with pytest.raises(CommitError, match=r"^A file with this name already exists$"):
        _commit(repo, [_create("a.txt")])


@pytest.mark.parametrize("action", ["update", "delete", "chmod"])
def test_actions_on_missing_files_are_refused(repo: GitRepo, action: str) -> None:
    _commit(repo, [_create("a.txt")])
    with pytest.raises(CommitError, match=r"^A file with this name doesn't exist$"):
        _commit(repo, [{"action": action, "file_path": "b.txt", "content": "x"}])


def test_move_keeps_content_when_none_given_and_update_replaces_it(repo: GitRepo) -> None:
    _commit(repo, [_create("dir/a.txt", "one\n")])
    _commit(repo, [{"action": "move", "previous_path": "dir/a.txt", "file_path": "b/c.txt"}])
    blob = repo.read_blob("main", "b/c.txt")
    assert blob is not None and blob.content == b"one\n"
    assert repo.read_blob("main", "dir/a.txt") is None
    _commit(
        repo,
        [
            {
                "action": "update",
                "file_path": "b/c.txt",
                "content": base64.b64encode(b"\x00\xff").decode(),
                "encoding": "base64",
            }
        ],
    )
    blob = repo.read_blob("main", "b/c.txt")
    assert blob is not None and blob.content == b"\x00\xff" and blob.size == 2


def test_chmod_sets_and_clears_the_executable_mode(repo: GitRepo) -> None:
    _commit(repo, [_create("run.sh")])
    _commit(repo, [{"action": "chmod", "file_path": "run.sh", "execute_filemode": True}])
    blob = repo.read_blob("main", "run.sh")
    assert blob is not None and blob.mode == "100755" and blob.executable
    _commit(repo, [{"action": "chmod", "file_path": "run.sh", "execute_filemode": False}])
    blob = repo.read_blob("main", "run.sh")
    assert blob is not None and blob.mode == "100644"


def test_multi_action_commit_is_all_or_nothing(repo: GitRepo) -> None:
    first = _commit(repo, [_create("a")])
    with pytest.raises(CommitError):
        _commit(repo, [_create("b"), {"action": "delete", "file_path": "missing"}])
    assert repo.branch_sha("main") == first
    assert repo.read_blob("main", "b") is None


def test_stale_last_commit_id_is_refused_like_the_files_api(repo: GitRepo) -> None:
    first = _commit(repo, [_create("a.txt", "1")])
    _commit(repo, [{"action": "update", "file_path": "a.txt", "content": "2"}])
    with pytest.raises(
        CommitError,
        match=r"^You are attempting to update a file that has changed since you started editing it.$",
    ):
        _commit(
            repo, [{"action": "update", "file_path": "a.txt", "content": "3"}], last_commit_id=first
        )
    current = repo.last_commit_for_path("main", "a.txt")
    assert current is not None
    _commit(
        repo, [{"action": "update", "file_path": "a.txt", "content": "3"}], last_commit_id=current
    )
    blob = repo.read_blob("main", "a.txt")
    assert blob is not None and blob.content == b"3"


def test_stale_per_action_last_commit_id_names_the_file(repo: GitRepo) -> None:
    first = _commit(repo, [_create("a.txt", "1")])
    _commit(repo, [{"action": "update", "file_path": "a.txt", "content": "2"}])
    with pytest.raises(
        CommitError, match=r"^The file has changed since you started editing it: a.txt$"
    ):
        _commit(repo, [{"action": "delete", "file_path": "a.txt", "last_commit_id": first}])


def test_unknown_branch_needs_a_start_branch(repo: GitRepo) -> None:
    base = _commit(repo, [_create("a")])
    with pytest.raises(
        CommitError, match="You can only create or edit files when you are on a branch"
    ):
        _commit(repo, [_create("b")], branch="feature")
    sha = _commit(repo, [_create("b")], branch="feature", start_branch="main")
    info = repo.commit_info(sha)
    assert info is not None and info["parent_ids"] == [base]
    assert repo.branch_sha("main") == base


def test_start_branch_onto_an_existing_other_branch_is_refused(repo: GitRepo) -> None:
    _commit(repo, [_create("a")])
    repo.create_branch("dev", "main")
    with pytest.raises(CommitError, match="A branch called 'dev' already exists"):
        _commit(repo, [_create("b")], branch="dev", start_branch="main")


def test_concurrent_writer_loses_the_compare_and_swap(repo: GitRepo) -> None:
    base = _commit(repo, [_create("a")])
    repo.update_ref("refs/heads/main", base, base)
    with pytest.raises(CommitError, match="Please refresh and try again"):
        repo.update_ref("refs/heads/main", base, ZERO_SHA)


@pytest.mark.parametrize("ref", ["--all", "-h", "main..main", "main:a", "HEAD@{1}", "", "a b"])
def test_option_like_and_range_refs_do_not_resolve(repo: GitRepo, ref: str) -> None:
    _commit(repo, [_create("a")])
    assert repo.resolve(ref) is None


def test_resolve_accepts_branches_tags_and_short_shas(repo: GitRepo) -> None:
    sha = _commit(repo, [_create("a")])
    repo.create_tag("v1", "main", "release one", Person("T", "t@example.com", WHEN))
    assert repo.resolve("main") == sha
    assert repo.resolve("v1") == sha
    assert repo.resolve(sha[:8]) == sha
    assert repo.resolve("HEAD") == sha
    assert repo.resolve("nope") is None


def test_tree_lists_trees_first_with_paths_and_modes(repo: GitRepo) -> None:
    _commit(
        repo,
        [
            _create("z.txt"),
            _create("dir/sub/b.txt"),
            _create("dir/a.txt"),
            {"action": "create", "file_path": "run", "content": "", "execute_filemode": True},
        ],
    )
    top = repo.tree("main")
    assert top is not None
    assert [(e["name"], e["type"], e["mode"]) for e in top] == [
        ("dir", "tree", "040000"),
        ("run", "blob", "100755"),
        ("z.txt", "blob", "100644"),
    ]
    deep = repo.tree("main", "dir", recursive=True)
    assert deep is not None
    assert [e["path"] for e in deep] == ["dir/sub", "dir/a.txt", "dir/sub/b.txt"]
    assert repo.tree("main", "missing") is None
    assert repo.tree("main", "z.txt") is None
    assert repo.tree("nope") is None


def test_read_blob_reports_blob_and_last_commit_ids(repo: GitRepo) -> None:
    first = _commit(repo, [_create("a.txt", "A"), _create("b.txt", "B")])
    second = _commit(repo, [{"action": "update", "file_path": "b.txt", "content": "BB"}])
    blob = repo.read_blob("main", "a.txt")
    assert blob is not None
    assert blob.commit_id == second and blob.last_commit_id == first
    expected = (
        subprocess.run(
            ["git", "hash-object", "--stdin"], input=b"A", capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    assert blob.blob_id == expected
    assert repo.blob(blob.blob_id) == b"A"
    assert repo.blob(first) is None


def test_commits_lists_newest_first_with_path_filter_and_window(repo: GitRepo) -> None:
    shas = [_commit(repo, [_create(f"f{i}")], message=f"c{i}") for i in range(5)]
    listed = repo.commits("main")
    assert listed is not None and [c["id"] for c in listed] == shas[::-1]
    window = repo.commits("main", offset=1, limit=2)
    assert window is not None and [c["id"] for c in window] == [shas[3], shas[2]]
    only = repo.commits("main", path="f2")
    assert only is not None and [c["id"] for c in only] == [shas[2]]
    assert repo.commits("missing") is None


def test_compare_gives_commits_oldest_first_and_file_diffs(repo: GitRepo) -> None:
    base = _commit(repo, [_create("a.txt", "one\n"), _create("gone.txt")])
    repo.create_branch("feature", "main")
    c1 = _commit(
        repo, [{"action": "update", "file_path": "a.txt", "content": "two\n"}], branch="feature"
    )
    c2 = _commit(
        repo,
        [{"action": "delete", "file_path": "gone.txt"}, _create("new.txt", "n\n")],
        branch="feature",
    )
    result = repo.compare("main", "feature")
    assert result is not None
    assert [c["id"] for c in result["commits"]] == [c1, c2]
    assert result["commit"]["id"] == c2
    by_path = {d["new_path"]: d for d in result["diffs"]}
    assert by_path["a.txt"]["diff"].startswith("@@ -1 +1 @@\n-one\n+two\n")
    assert by_path["gone.txt"]["deleted_file"] and by_path["new.txt"]["new_file"]
    assert result["compare_same_ref"] is False
    same = repo.compare(base, "main")
    assert (
        same is not None
        and same["compare_same_ref"]
        and same["commits"] == []
        and same["diffs"] == []
    )
    assert repo.compare("main", "nope") is None


def test_compare_detects_renames(repo: GitRepo) -> None:
    _commit(repo, [_create("old.txt", "same content here\n")])
    _commit(repo, [{"action": "move", "previous_path": "old.txt", "file_path": "new.txt"}])
    result = repo.compare("main~1", "main", straight=True)
    assert result is not None
    assert [(d["old_path"], d["new_path"], d["renamed_file"]) for d in result["diffs"]] == [
        ("old.txt", "new.txt", True)
    ]


def test_changed_paths_sorts_files_into_added_modified_removed(repo: GitRepo) -> None:
    a = _commit(repo, [_create("keep"), _create("drop")])
    b = _commit(
        repo,
        [
            {"action": "update", "file_path": "keep", "content": "y"},
            {"action": "delete", "file_path": "drop"},
            _create("new"),
        ],
    )
    assert repo.changed_paths(a, b) == {"added": ["new"], "modified": ["keep"], "removed": ["drop"]}
    assert repo.commit_changes(a) == {"added": ["drop", "keep"], "modified": [], "removed": []}


def test_revert_inverts_a_commit_and_refuses_a_second_time(repo: GitRepo) -> None:
    _commit(repo, [_create("a.txt", "1\n")])
    bad = _commit(
        repo, [{"action": "update", "file_path": "a.txt", "content": "2\n"}], message="Break it"
    )
    new = repo.revert(bad, "main", Person("Rev", "rev@example.com", WHEN))
    blob = repo.read_blob("main", "a.txt")
    assert blob is not None and blob.content == b"1\n"
    info = repo.commit_info(new)
    assert info is not None
    assert info["message"] == f'Revert "Break it"\n\nThis reverts commit {bad}.'
    with pytest.raises(RevertError) as exc:
        repo.revert(bad, "main", Person("Rev", "rev@example.com", WHEN))
    assert exc.value.message == REVERT_FAILED and exc.value.code == "empty"


def test_revert_that_conflicts_is_refused(repo: GitRepo) -> None:
    _commit(repo, [_create("a.txt", "1\n")])
    changed = _commit(repo, [{"action": "update", "file_path": "a.txt", "content": "2\n"}])
    _commit(repo, [{"action": "update", "file_path": "a.txt", "content": "3\n"}])
    with pytest.raises(RevertError) as exc:
        repo.revert(changed, "main", Person("Rev", "rev@example.com", WHEN))
    assert exc.value.code == "conflict"


def test_branches_create_list_delete_with_gitlab_errors(repo: GitRepo) -> None:
    sha = _commit(repo, [_create("a")])
    assert repo.create_branch("feature/x", "main") == sha
    assert repo.branches() == [("feature/x", sha), ("main", sha)]
    with pytest.raises(RefError, match=r"^Branch already exists$"):
        repo.create_branch("feature/x", "main")
    with pytest.raises(RefError, match=r"^Invalid reference name: nope$"):
        repo.create_branch("other", "nope")
    with pytest.raises(RefError, match=r"^Branch name is invalid$"):
        repo.create_branch("bad..name", "main")
    assert repo.delete_branch("feature/x") == sha
    assert repo.branches() == [("main", sha)]


def test_annotated_tags_point_at_a_tag_object_that_dereferences_to_the_commit(
    repo: GitRepo,
) -> None:
    sha = _commit(repo, [_create("a")])
    target = repo.create_tag("v1.0", "main", "First release", Person("T", "t@example.com", WHEN))
    light = repo.create_tag("light", sha[:10], None, Person("T", "t@example.com", WHEN))
    assert target != sha and repo.object_type(target) == "tag" and light == sha
    tags = {t["name"]: t for t in repo.tags()}
    assert tags["v1.0"]["target"] == target and tags["v1.0"]["commit_sha"] == sha
    assert tags["v1.0"]["message"].strip() == "First release"
    assert tags["light"]["message"] is None and tags["light"]["target"] == sha
    with pytest.raises(RefError, match=r"^Tag v1.0 already exists$"):
        repo.create_tag("v1.0", "main", None, Person("T", "t@example.com"))
    with pytest.raises(RefError, match=r"^Target nope is invalid$"):
        repo.create_tag("v2", "nope", None, Person("T", "t@example.com"))
    assert repo.delete_tag("v1.0") == target
    assert "refs/tags/v1.0" not in repo.refs()


def test_archives_put_every_entry_under_gitlabs_prefix(repo: GitRepo) -> None:
    sha = _commit(repo, [_create("a.txt", "A"), _create("d/b.txt", "B")])
    prefix = archive_prefix("proj", "main", sha)
    assert prefix == f"proj-main-{sha}"
    # The API passes append_sha: true, so a sha as the ref appears twice (GitLab does so).
    assert archive_prefix("proj", sha, sha, "d/") == f"proj-{sha}-{sha}-d"
    assert archive_prefix("proj", sha, sha, "d/", append_sha=False) == f"proj-{sha}-d"
    data = repo.archive("main", "tar.gz", prefix)
    assert data is not None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    assert sorted(names) == [f"{prefix}/a.txt", f"{prefix}/d/b.txt"]
    zipped = repo.archive("main", "zip", prefix, path="d")
    assert zipped is not None
    assert [n for n in zipfile.ZipFile(io.BytesIO(zipped)).namelist() if not n.endswith("/")] == [
        f"{prefix}/d/b.txt"
    ]
    bz = repo.archive("main", "tar.bz2", prefix)
    assert bz is not None
    with tarfile.open(fileobj=io.BytesIO(bz), mode="r:bz2") as tar:
        assert f"{prefix}/a.txt" in tar.getnames()
    assert repo.archive("nope", "tar", prefix) is None
    assert repo.archive("main", "tar", prefix, path="missing") is None


def test_long_titles_are_shortened_like_gitlab() -> None:
    assert commit_title("short\nbody") == "short"
    long = "word " * 30
    title = commit_title(long)
    assert title.endswith("…") and len(title) <= 81


def test_refs_containing_names_branches_and_tags(repo: GitRepo) -> None:
    sha = _commit(repo, [_create("a")])
    repo.create_branch("b2", "main")
    repo.create_tag("t1", "main", None, Person("T", "t@example.com"))
    _commit(repo, [_create("b")])
    assert repo.refs_containing(sha) == [
        {"type": "branch", "name": "b2"},
        {"type": "branch", "name": "main"},
        {"type": "tag", "name": "t1"},
    ]
