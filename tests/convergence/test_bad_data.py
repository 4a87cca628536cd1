"""Bad pointers are indexed as far as possible and marked; a sync never crashes on them."""

from __future__ import annotations

from pathlib import Path

import gitlab
import pytest

from indexer.gitlab.reader import GitLabReader
from indexer.sites.registry import SiteRegistry
from indexer.store import IndexStore, open_index
from indexer.sync import refs as sync
from tests.convergence.gitlab_ops import commit, create_dataset, md5_of
from tests.gitlab_sandbox.server import Sandbox

BAD_POINTERS = {
    "broken/yaml.csv.dvc": "outs: [\n  - md5: {{ nope\n",
    "broken/nomd5.csv.dvc": "outs:\n- size: 3\n  hash: md5\n  path: nomd5.csv\n",
    "broken/hash.csv.dvc": f"outs:\n- md5: {md5_of('h')}\n  hash: sha256\n  path: hash.csv\n",
}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> IndexStore:
    url = (
        f"sqlite:///{tmp_path / 'index.sqlite3'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    opened = open_index(url)
    request.addfinalizer(opened.close)
    return opened


def test_bad_pointers_are_marked_and_good_ones_indexed(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, store: IndexStore
) -> None:
    group = gitlab_admin.groups.create({"name": "lab", "path": "lab"})
    project = create_dataset(gitlab_admin, group.id, "messy", files={"good/a.csv": ("a", 11)})
    actions = [{"action": "create", "file_path": p, "content": c} for p, c in BAD_POINTERS.items()]
    after = commit(project, "bad pointers", actions)
    project.tags.create({"tag_name": "v1", "ref": "main"})
    ctx = sync.SyncContext(
        reader=GitLabReader(gitlab_sandbox.url, gitlab_sandbox.admin_token, max_retries=1),
        store=store,
        sites=SiteRegistry(store.url).get,
    )

    assert sync.sync_project(ctx, project.id) == "synced"
    for name in ("main", "v1"):
        ref = store.get_ref(project.id, name)
        assert ref is not None and ref.status == "partial" and ref.error is not None
        for pointer in BAD_POINTERS:
            assert pointer in ref.error, (pointer, ref.error)
        assert {f.path: f.size for f in store.iter_ref_files(project.id, name)} == {
            "good/a.csv": 11
        }

    # A repaired pointer, pushed incrementally, clears only what it fixed.
    fixed = commit(
        project,
        "fix one",
        [
            {
                "action": "update",
                "file_path": "broken/nomd5.csv.dvc",
                "content": f"outs:\n- md5: {md5_of('n')}\n  size: 3\n  hash: md5\n  path: nomd5.csv\n",
            }
        ],
    )
    outcome = sync.sync_ref(ctx, project.id, "refs/heads/main", before=after, after=fixed)
    assert outcome in ("indexed", "updated incrementally")
    main = store.get_ref(project.id, "main")
    assert main is not None and main.status == "partial" and main.error is not None
    assert "broken/nomd5.csv.dvc" not in main.error and "broken/yaml.csv.dvc" in main.error
    assert {f.path for f in store.iter_ref_files(project.id, "main")} == {
        "good/a.csv",
        "broken/nomd5.csv",
    }
    # The good state before the bad commit is still a state the index can return to.
    commit(
        project,
        "clean up",
        [{"action": "delete", "file_path": p} for p in BAD_POINTERS if "nomd5" not in p],
    )
    assert sync.sync_ref(ctx, project.id, "refs/heads/main") == "indexed"
    main = store.get_ref(project.id, "main")
    assert main is not None and main.status == "ok" and main.error is None
