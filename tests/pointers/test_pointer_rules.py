"""DVC's rules decide every pointer case, and the indexer and the CI jobs read them alike.

One pointer model (`indexer.data.pointers`) serves the sync jobs, the resolver and the CI jobs;
each case below was once answered differently by two parsers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from dvc.utils.serialize import dumps_yaml
from hypothesis import given
from hypothesis import strategies as st

from dshub.ci.validate import _parse_all
from indexer.data.pointers import PointerError, parse_pointer
from indexer.data.tracked_files import files_of_out
from indexer.errors import DshubError
from indexer.gitlab.reader import GitLabReader
from indexer.read.resolve import Commit, Resolver
from indexer.store import Dataset, RefInfo, open_index

MD5 = "0123456789abcdef0123456789abcdef"

# (case, pointer path, text, expected (path, stored_elsewhere) per output, or an error fragment)
CASES: list[tuple[str, str, str, list[tuple[str, str | None]] | str]] = [
    (
        "outputs are relative to wdir",
        "d/x.dvc",
        f"wdir: sub\nouts:\n- md5: {MD5}\n  hash: md5\n  path: a.bin\n",
        [("d/sub/a.bin", None)],
    ),
    (
        "cache: false outputs are in no remote",
        "d/a.bin.dvc",
        "outs:\n- path: a.bin\n  cache: false\n",
        [],
    ),
    (
        "cache: false beside a cached output",
        "m.dvc",
        f"outs:\n- md5: {MD5}\n  hash: md5\n  path: kept\n- path: plain\n  cache: false\n",
        [("kept", None)],
    ),
    (
        "a per-output remote is valid DVC 3",
        "a.dvc",
        f"outs:\n- md5: {MD5}\n  hash: md5\n  path: a\n  remote: archive\n",
        [("a", "kept in its own DVC remote 'archive', not in the dataset's storage site")],
    ),
    (
        "sizes are non-negative",
        "a.dvc",
        f"outs:\n- md5: {MD5}\n  size: -1\n  path: a\n",
        "negative size",
    ),
    (
        "YAML 1.2: `no` is a name",
        "no.dvc",
        f"outs:\n- md5: {MD5}.dir\n  path: no\n",
        [("no", None)],
    ),
    ("YAML 1.2: `on` is a name", "on.dvc", f"outs:\n- md5: {MD5}\n  path: on\n", [("on", None)]),
    (
        "YAML 1.2: `12:30` is a name",
        "12:30.dvc",
        f"outs:\n- md5: {MD5}\n  path: 12:30\n",
        [("12:30", None)],
    ),
    (
        "an import's data is the source repository's",
        "x.dvc",
        f"deps:\n- path: x\n  repo: {{url: https://example.invalid/r, rev_lock: abc}}\n"
        f"outs:\n- md5: {MD5}\n  hash: md5\n  path: x\n",
        [("x", "imported from https://example.invalid/r")],
    ),
]


@pytest.mark.parametrize(("case", "pointer", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_pointer_rules_follow_dvc(
    case: str, pointer: str, text: str, expected: list[tuple[str, str | None]] | str
) -> None:
    if isinstance(expected, str):
        with pytest.raises(PointerError, match=expected):
            parse_pointer(text, pointer)
        assert pointer in _parse_all({pointer: text}).errors
        return
    outs = parse_pointer(text, pointer)
    assert [(out.path, out.stored_elsewhere) for out in outs] == expected
    # The CI jobs check exactly the outputs kept in the dataset's storage, and say why not.
    parsed = _parse_all({pointer: text})
    assert [out.path for out in parsed.outputs[pointer]] == [p for p, why in expected if not why]
    assert [why for _, why in parsed.skipped] == [why for _, why in expected if why]


def test_cloud_versioned_outputs_are_refused_by_the_ci_jobs() -> None:
    text = f"outs:\n- md5: {MD5}\n  path: a\n  files:\n  - relpath: x\n    md5: {MD5}\n"
    assert "cloud versioning" in _parse_all({"a.dvc": text}).errors["a.dvc"]


@pytest.mark.parametrize("name", ["no", "yes", "on", "off", "12:30", "null", "1e3", "0x1f"])
def test_real_dvc_add_of_a_folder_with_a_yaml_1_1_name_is_read_back(
    name: str, tmp_path: Path, dvc_env: dict[str, str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for argv in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(argv, cwd=repo, env=dvc_env, check=True, capture_output=True)
    (repo / name).mkdir()
    (repo / name / "a.txt").write_bytes(b"a")
    subprocess.run(["dvc", "add", "-q", name], cwd=repo, env=dvc_env, check=True)
    pointer = f"{name}.dvc"
    (out,) = parse_pointer((repo / pointer).read_text(), pointer)
    assert (out.path, out.is_dir, out.nfiles) == (name, True, 1)
    assert _parse_all({pointer: (repo / pointer).read_text()}).outputs[pointer][0].path == name


names = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="/\\\x00"
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", "..") and s.strip() == s and not s.startswith("-"))


@given(name=st.one_of(names, st.sampled_from(["no", "on", "12:30", "~", "true", "0o17"])))
def test_any_name_dvc_dumps_is_read_back_unchanged(name: str) -> None:
    text = dumps_yaml({"outs": [{"md5": MD5, "size": 1, "hash": "md5", "path": name}]})
    (out,) = parse_pointer(text, "p.dvc")
    assert out.path == name


def test_a_per_output_remote_answers_not_stored_here_on_download(tmp_path: Path) -> None:
    store = open_index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    store.upsert_dataset(Dataset(7, "D", "g/d", "g", "public", default_branch="main"))
    text = f"outs:\n- md5: {MD5}\n  hash: md5\n  path: a.bin\n  remote: archive\n"
    (out,) = parse_pointer(text, "a.bin.dvc")
    store.replace_ref_files(7, RefInfo("main", "branch", "a" * 40), files_of_out(out))
    dataset = store.get_dataset(7)
    assert dataset is not None
    # The index answers; GitLab is never asked (nothing listens on this port).
    resolver = Resolver(store, GitLabReader("http://127.0.0.1:9", None), lambda _: None, {})
    with pytest.raises(DshubError) as caught:
        resolver.resolve(dataset, Commit("main", "a" * 40, False), "a.bin")
    assert (caught.value.status, caught.value.code) == (422, "not_stored_here")
    assert "its own DVC remote 'archive'" in caught.value.message
    store.close()


def test_a_lone_surrogate_in_a_path_or_ref_is_invalid_input_not_a_crash() -> None:
    from indexer.errors import InvalidInput
    from indexer.read.resolve import validate_path, validate_ref

    for check, value in ((validate_path, "a/\udc80.png"), (validate_ref, "v\udc80")):
        with pytest.raises(InvalidInput, match="lone surrogate"):
            check(value)
