"""The one data diff (`indexer.data.diff.diff_files`) and its vocabulary everywhere."""

from __future__ import annotations

from dshub.ci.datadiff import diff_outputs, render_markdown
from indexer.data.diff import CHANGE_KINDS, FileState, diff_files
from indexer.data.pointers import parse_pointer

A, B, C = "a" * 32, "b" * 32, "c" * 32


def test_added_removed_and_modified_files_are_named_and_sorted() -> None:
    old = {"x": FileState(A, "md5", 1, "x.dvc"), "y": FileState(B, "md5", 2, "y.dvc")}
    new = {"x": FileState(C, "md5", 3, "x.dvc"), "z": FileState(A, "md5", 4, "z.dvc")}
    changes = diff_files(old, new)
    assert [(c.path, c.change, c.old_size, c.new_size) for c in changes] == [
        ("x", "modified", 1, 3),
        ("y", "removed", 2, None),
        ("z", "added", None, 4),
    ]


def test_a_change_of_hash_kind_alone_is_a_modification() -> None:
    old = {"x": FileState(A, "md5-dos2unix", 1, "x.dvc")}
    new = {"x": FileState(A, "md5", 1, "x.dvc")}
    assert [c.change for c in diff_files(old, new)] == ["modified"]
    assert diff_files(new, dict(new)) == []


def test_the_ci_report_uses_the_same_words() -> None:
    before = parse_pointer(f"outs:\n- md5: {A}\n  size: 1\n  hash: md5\n  path: a\n", "a.dvc")
    after = parse_pointer(f"outs:\n- md5: {B}\n  size: 2\n  hash: md5\n  path: a\n", "a.dvc")
    changes = diff_outputs(before, after, {})
    assert [c.change for c in changes] == ["modified"]
    report = render_markdown("Data diff", changes, before, after)
    assert "| modified | 1 |" in report and "| modified | `a` |" in report
    assert "changed" not in report
    assert set(CHANGE_KINDS) == {"added", "removed", "modified"}
