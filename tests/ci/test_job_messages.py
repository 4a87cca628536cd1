"""Every way a CI job refuses, with the one line it prints (no pipeline needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dshub.ci.environment import Access, storage_environment
from dshub.ci.errors import CiCheckFailed, CiConfigError
from dshub.ci.gc import ensure_full_history, indexed_objects
from dshub.ci.gitrepo import require_default_branch
from dshub.ci.publish import component_files, publish
from dshub.ci.remote import (
    RemoteConfig,
    read_remote,
    remote_problems,
    require_owned_remote,
)
from dshub.ci.validate import ValidateOptions, decide_scope, run_validate
from dshub.config import CiVariables
from indexer.data.pointers import PointerError, parse_pointer
from tests.ci.dshub_stub import Stub
from tests.ci.harness import git, make_dataset, run

URL = "s3://bucket/sites/main/42"
OK = {"DSHUB_DVC_REMOTE_URL": URL, "DSHUB_DATASET_ID": "42", "CI_PROJECT_ID": "42"}


@pytest.mark.parametrize(
    ("access", "env", "variable"),
    [
        (Access.READ_WRITE, {}, "DSHUB_S3_RW_ACCESS_KEY_ID"),
        (
            Access.READ_WRITE,
            {"DSHUB_S3_RW_ACCESS_KEY_ID": "AKIAEXAMPLE1"},
            "DSHUB_S3_RW_SECRET_ACCESS_KEY",
        ),
        (
            Access.READ_ONLY,
            {"DSHUB_S3_RW_ACCESS_KEY_ID": "x", "DSHUB_S3_RW_SECRET_ACCESS_KEY": "y"},
            "DSHUB_S3_RO_ACCESS_KEY_ID",
        ),
    ],
)
def test_a_missing_storage_key_is_named(access: Access, env: dict[str, str], variable: str) -> None:
    with pytest.raises(CiConfigError, match=f"^{variable} is not set: ") as caught:
        storage_environment(CiVariables(env), URL, access)
    assert "\n" not in caught.value.message
    if access is Access.READ_WRITE:
        assert "protected" in caught.value.message


def test_keys_and_endpoint_reach_dvc_and_local_remotes_need_none() -> None:
    env = CiVariables(
        {
            "DSHUB_S3_RO_ACCESS_KEY_ID": "ro-id",
            "DSHUB_S3_RO_SECRET_ACCESS_KEY": "ro-secret",
            "DSHUB_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        }
    )
    result = storage_environment(env, URL, Access.READ_ONLY)
    assert (
        result["AWS_ACCESS_KEY_ID"] == "ro-id"
        and result["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9"
    )
    assert storage_environment(CiVariables({}), "/srv/storage/42", Access.READ_WRITE) == {}


def test_unsupported_remotes_are_refused() -> None:
    with pytest.raises(CiConfigError, match="unsupported scheme 'gs'"):
        storage_environment(CiVariables({}), "gs://bucket/42", Access.READ_ONLY)


def test_missing_remote_variable_is_named() -> None:
    with pytest.raises(CiConfigError, match=r"^DSHUB_DVC_REMOTE_URL is not set"):
        remote_problems(RemoteConfig("storage", URL), CiVariables({}))


def test_remote_problems_name_url_endpoint_and_committed_secrets() -> None:
    remote = RemoteConfig(
        "storage",
        "s3://bucket/sites/main/7",
        {"endpointurl": "http://evil.example", "secret_access_key": "s"},
    )
    problems = remote_problems(
        remote, CiVariables({**OK, "DSHUB_S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    )
    assert len(problems) == 3
    assert (
        "points at s3://bucket/sites/main/7, but this dataset's storage is s3://bucket/sites/main/42"
        in problems[0]
    )
    assert "endpointurl http://evil.example" in problems[1]
    assert "holds credentials (secret_access_key)" in problems[2]
    assert remote_problems(RemoteConfig("storage", URL + "/"), CiVariables(OK)) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({**OK, "CI_PROJECT_ID": "43"}, r"this project \(CI_PROJECT_ID 43\) is not dataset 42"),
        ({"DSHUB_DVC_REMOTE_URL": URL}, "^DSHUB_DATASET_ID is not set"),
        (
            {"DSHUB_DVC_REMOTE_URL": URL, "DSHUB_DATASET_ID": "4"},
            "does not end with this dataset's id 4",
        ),
    ],
)
def test_gc_refuses_storage_of_another_dataset(env: dict[str, str], message: str) -> None:
    with pytest.raises(CiConfigError, match=message):
        require_owned_remote(RemoteConfig("storage", URL), CiVariables(env))


def test_dvc_config_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(CiCheckFailed, match=r"has no .dvc/config"):
        read_remote(tmp_path, None)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("['remote \"a\"']\n    url = /x\n")
    with pytest.raises(CiCheckFailed, match="names no default remote"):
        read_remote(tmp_path, None)
    with pytest.raises(CiCheckFailed, match="no remote named 'b'"):
        read_remote(tmp_path, "b")
    assert read_remote(tmp_path, "a").url == "/x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("outs: [", "invalid YAML"),
        ("- a\n", "expected a YAML mapping"),
        (
            "outs:\n- md5: 0123456789abcdef0123456789abcdef\n  path: a\n  bogus: 1\n",
            "extra keys not allowed",
        ),
        ("frozen: true\n", "no `outs`"),
        ("outs:\n- md5: 0123456789abcdef0123456789abcdef\n", "outs\\[0\\]: missing `path`"),
        ("outs:\n- md5: 0123456789abcdef0123456789abcdef\n  path: ../x\n", "leaves the pointer"),
        ("outs:\n- path: a\n  size: 3\n", r"\(a\): missing md5; run `dvc commit`"),
        ("outs:\n- path: a\n  md5: 12345\n", "invalid md5"),
    ],
)
def test_malformed_pointers_are_named(text: str, message: str) -> None:
    with pytest.raises(PointerError, match=message) as caught:
        parse_pointer(text, "data/a.dvc")
    assert caught.value.message.startswith("data/a.dvc")


def test_dvc2_dvc3_imports_and_uncached_outputs_parse() -> None:
    legacy = parse_pointer(
        "outs:\n- md5: ef7047c431f5b02eca5b1d618457795d\n  size: 3002\n  path: a.jpg\n",
        "sub/a.jpg.dvc",
    )
    assert (legacy[0].hash_name, legacy[0].path) == ("md5-dos2unix", "sub/a.jpg")
    current = parse_pointer(
        "outs:\n- md5: 15de2dcc4f87e5ba75514d2ca6352ebe.dir\n  size: 4\n  nfiles: 2\n  hash: md5\n  path: images\n",
        "images.dvc",
    )
    assert current[0].is_dir and current[0].hash_name == "md5" and current[0].nfiles == 2
    imported = "md5: 8cffc7594d1da1ccae7c5477dfc592c2\nfrozen: true\ndeps:\n- path: x\n  repo: {url: u, rev: v1, rev_lock: f0a5c2ae}\nouts:\n- {md5: ee1fd3060de882aa3158a8e161ad7036, size: 1, hash: md5, path: x}\n"
    assert [out.stored_elsewhere for out in parse_pointer(imported, "x.dvc")] == ["imported from u"]
    assert parse_pointer("outs:\n- path: a\n  cache: false\n", "a.dvc") == []


@pytest.mark.parametrize(
    ("branch", "default", "message"),
    [
        ("main", None, "CI_DEFAULT_BRANCH is not set"),
        (None, "main", r"this pipeline is for \(no branch"),
        ("feature", "main", "runs only on the default branch 'main'; this pipeline is for feature"),
    ],
)
def test_gc_runs_only_on_the_default_branch(
    branch: str | None, default: str | None, message: str
) -> None:
    with pytest.raises(CiConfigError, match=message):
        require_default_branch(branch, default)


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "r"
    run(["git", "init", "-q", "-b", "main", str(repo)], tmp_path)
    (repo / "f").write_text("x")
    git(repo, "add", "f")
    git(repo, "commit", "-q", "-m", "c")
    return repo


def test_gc_history_and_merge_request_base_problems_are_named(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    with pytest.raises(CiConfigError, match=r"^CI_REPOSITORY_URL is not set"):
        ensure_full_history(repo, CiVariables({}), print)
    with pytest.raises(CiConfigError, match="could not fetch full history from CI_REPOSITORY_URL"):
        ensure_full_history(
            repo, CiVariables({"CI_REPOSITORY_URL": (tmp_path / "nowhere.git").as_uri()}), print
        )
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(CiCheckFailed, match="is not in this clone; set GIT_DEPTH: 0"):
        decide_scope(repo, CiVariables({"CI_MERGE_REQUEST_DIFF_BASE_SHA": "1" * 40}), head, [])


def test_unreachable_dshub_stops_gc() -> None:
    env = CiVariables({"DSHUB_DATASET_ID": "42", "CI_JOB_TOKEN": "token"})
    with pytest.raises(
        CiConfigError,
        match=r"could not read the objects of indexed versions .* refusing to collect",
    ):
        indexed_objects("http://127.0.0.1:9", env)
    with pytest.raises(CiConfigError, match=r"^CI_JOB_TOKEN is not set"):
        indexed_objects("http://127.0.0.1:9", CiVariables({"DSHUB_DATASET_ID": "42"}))


def test_publish_refuses_bad_versions_and_non_component_sources(tmp_path: Path) -> None:
    with pytest.raises(CiConfigError, match="is not a component project"):
        component_files(tmp_path)
    with pytest.raises(CiConfigError, match=r"'v1.0' is not a semantic version"):
        publish(
            tmp_path, gitlab_url="http://127.0.0.1:9", token="t", project_path="g/p", version="v1.0"
        )


def test_cli_prints_one_line_and_exits_2_on_a_misconfigured_job(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "DSHUB_"))}
    env["DSHUB_CI_DVC_STATE_DIR"] = str(tmp_path / "state")
    dshub = str(Path(sys.executable).parent / "dshub")
    result = subprocess.run(
        [dshub, "ci", "gc"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "dshub ci gc: CI_DEFAULT_BRANCH is not set: gc runs only in GitLab CI on the default branch"
    )
    bad = subprocess.run(
        [dshub, "ci", "push", "--jobs", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "must be 1 or more" in bad.stderr


def test_validate_flags_a_committed_ssl_verify_false(
    tmp_path: Path, dvc_env: dict[str, str], stub: Stub
) -> None:
    url = f"{stub.url}/dvc/42"
    repo = make_dataset(tmp_path, url, dvc_env, {"CI_JOB_TOKEN": "glcbt-job"})
    repo.dvc("remote", "modify", "storage", "ssl_verify", "false")
    repo.commit("Turn TLS verification off")
    variables = CiVariables(repo.variables)
    options = ValidateOptions(max_git_file_mb=0)
    lines: list[str] = []
    with pytest.raises(CiCheckFailed, match=r"^1 of \d+ checks failed"):
        run_validate(repo.work, variables, options, lines.append)
    assert "FAILED remote: TLS verification" in lines
    assert lines[lines.index("FAILED remote: TLS verification") + 1] == (
        f"  remote 'storage' in .dvc/config sets ssl_verify = false: every clone and pipeline "
        f"would send its token and data to whoever answers for {url}; remove it, or name the "
        "CA bundle that signs the server's certificate (ssl_verify = <path>)"
    )

    repo.dvc("remote", "modify", "storage", "ssl_verify", str(tmp_path / "ca.pem"))
    repo.commit("Name the CA bundle instead")
    lines.clear()
    run_validate(repo.work, variables, options, lines.append)
    assert lines[-1].startswith("all ") and lines[-1].endswith(" checks passed")
