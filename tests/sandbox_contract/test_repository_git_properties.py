"""Property test: any sequence of GitLab commit actions leaves the tree equal to a dict model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.gitlab_sandbox.gitrepo import CommitError, GitRepo

NAMES = st.sampled_from(["a.txt", "b.txt", "d", "d/c.txt", "d/e/f.txt"])
ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["create", "update", "delete", "move"]), NAMES, NAMES, st.text(max_size=5)
    ),
    min_size=1,
    max_size=6,
)


def _clash(model: dict[str, bytes], path: str) -> bool:
    return any(p.startswith(path + "/") or path.startswith(p + "/") for p in model)


def _expected(model: dict[str, bytes], kind: str, path: str, other: str, text: str) -> str | None:
    """Apply one action to the model; return the error GitLab would give instead, if any."""
    source = other if kind == "move" else path
    error = None
    if kind != "create" and source not in model:
        error = "A file with this name doesn't exist"
    elif kind in ("create", "move") and path in model:
        error = "A file with this name already exists"
    elif kind == "delete":
        del model[path]
    else:
        content = model.pop(other) if kind == "move" else text.encode()
        error = "placement" if _clash(model, path) else None
        model[path] = content
    return error


@settings(max_examples=15, deadline=None)
@given(ACTIONS)
def test_commit_sequences_match_a_dict_model(steps: list[tuple[str, str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = GitRepo(Path(tmp) / "p.git")
        repo.init_bare("main")
        model: dict[str, bytes] = {}
        for kind, path, other, text in steps:
            trial = dict(model)
            error = _expected(trial, kind, path, other, text)
            action: dict[str, Any] = {"action": kind, "file_path": path, "content": text}
            if kind == "move":
                action = {"action": "move", "file_path": path, "previous_path": other}
            try:
                repo.commit("main", [action], "step", "A", "a@example.com")
            except CommitError as exc:
                assert error is not None, exc.message
                if error != "placement":
                    assert exc.message == error
                continue
            assert error is None, f"expected {error!r}"
            model = trial
        if model:
            entries = repo.tree("main", recursive=True) or []
            assert sorted(e["path"] for e in entries if e["type"] == "blob") == sorted(model)
            for path, content in model.items():
                blob = repo.read_blob("main", path)
                assert blob is not None and blob.content == content
