"""Proxy mode without a pipeline: the job token's life in `.dvc/config.local`, and every message.

The HTTP answers here come from `tests.ci.dshub_stub` (the `stub` fixture), a small stdlib
server playing dshub's documented answers; the real dshub answers the same requests in
tests/ci/test_pipeline_proxy.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dshub.ci.access import remote_access
from dshub.ci.environment import Access, storage_environment
from dshub.ci.errors import CiCheckFailed, CiConfigError
from dshub.ci.gc import Collected, GcOptions, collect_in_dshub
from dshub.ci.proxy import check_access, job_token_auth, service_url, ssl_verify_of
from dshub.ci.remote import RemoteConfig
from dshub.config import CiVariables
from tests.ci.dshub_stub import Reply, Stub

TOKEN = "glcbt-64_secretjobtoken1234"


def _dvc_repo(root: Path, remote_url: str) -> Path:
    from dvc.repo import Repo

    root.mkdir(parents=True, exist_ok=True)
    Repo.init(str(root), no_scm=True).close()
    (root / ".dvc" / "config").write_text(
        f"[core]\n    no_scm = true\n    remote = site\n['remote \"site\"']\n    url = {remote_url}\n"
    )
    return root


def _remote_section(root: Path) -> dict[str, object]:
    from dvc.repo import Repo

    repo = Repo(str(root))
    try:
        return dict(repo.config["remote"]["site"])
    finally:
        repo.close()


def test_a_proxy_remote_needs_no_environment_only_the_job_token(tmp_path: Path) -> None:
    url = "https://dshub.example/dvc/42"
    assert storage_environment(CiVariables({}), url, Access.READ_WRITE) == {}
    with (
        pytest.raises(CiConfigError, match=r"^CI_JOB_TOKEN is not set: ") as caught,
        remote_access(tmp_path, RemoteConfig("site", url), CiVariables({}), Access.READ_ONLY),
    ):
        pass
    assert "\n" not in caught.value.message


def test_the_job_token_is_in_config_local_only_while_the_job_runs(
    tmp_path: Path, stub: Stub
) -> None:
    url = f"{stub.url}/dvc/42"
    root = _dvc_repo(tmp_path / "repo", url)
    committed = (root / ".dvc" / "config").read_bytes()
    local = root / ".dvc" / "config.local"
    local.write_text("[core]\n    autostage = true\n")
    local.chmod(0o644)
    before = local.read_bytes()

    lines: list[str] = []
    variables = CiVariables({"CI_JOB_TOKEN": TOKEN})
    with remote_access(root, RemoteConfig("site", url), variables, Access.READ_ONLY, lines.append):
        section = _remote_section(root)
        assert section["auth"] == "custom" and section["custom_auth_header"] == "JOB-TOKEN"
        assert section["password"] == TOKEN and section["url"] == url
        assert stat.S_IMODE(local.stat().st_mode) == 0o600
        assert "autostage = true" in local.read_text()
    assert local.read_bytes() == before and stat.S_IMODE(local.stat().st_mode) == 0o644
    assert (root / ".dvc" / "config").read_bytes() == committed
    assert TOKEN not in "\n".join(lines)
    # The access check asked for an object nobody has, with the token in JOB-TOKEN.
    method, path, headers, _ = stub.seen[0]
    assert (method, path) == ("GET", "/dvc/42/files/md5/00/" + "0" * 30)
    assert headers["JOB-TOKEN"] == TOKEN

    local.unlink()
    with pytest.raises(RuntimeError), job_token_auth(root, "site", url, TOKEN):
        assert TOKEN in local.read_text()
        raise RuntimeError("the job failed")
    assert not local.exists(), "a failed job left its token behind"


def test_a_cancelled_job_removes_its_token(tmp_path: Path) -> None:
    root = _dvc_repo(tmp_path / "repo", "http://127.0.0.1:9/dvc/42")
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from dshub.ci.proxy import job_token_auth\n"
        "with job_token_auth(Path(sys.argv[1]), 'site', 'http://127.0.0.1:9/dvc/42', 'tok-en'):\n"
        "    print('inside', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    signal.pause()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )
    assert result.stdout.strip() == "inside", result.stderr
    assert result.returncode == 128 + signal.SIGTERM
    assert not (root / ".dvc" / "config.local").exists()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Reply(403, {"error": {"code": "forbidden", "message": "belongs to another project"}}),
            r"dshub refused this job's CI_JOB_TOKEN for .*/dvc/42: dshub answered 403 "
            r"\(belongs to another project\)$",
        ),
        (Reply(401, None), r"dshub answered 401 \(Unauthorized\)$"),
        (Reply(502, None), r"DVC remote .*/dvc/42 answered 502 \(Bad Gateway\)$"),
    ],
)
def test_a_refused_or_failing_remote_is_named_before_dvc_runs(
    stub: Stub, reply: Reply, message: str
) -> None:
    stub.reply = reply
    with pytest.raises(CiConfigError, match=message) as caught:
        check_access(f"{stub.url}/dvc/42", TOKEN)
    assert TOKEN not in caught.value.message


def test_an_unreachable_dshub_is_named() -> None:
    with pytest.raises(
        CiConfigError, match=r"cannot reach dshub's DVC remote .* \(ConnectionError"
    ):
        check_access("http://127.0.0.1:9/dvc/42", TOKEN)


def test_service_url_comes_from_the_remote_of_this_dataset() -> None:
    assert service_url("https://dshub.example/base/dvc/42/", "42") == "https://dshub.example/base"
    with pytest.raises(CiConfigError, match="is not dshub's DVC remote of dataset 42"):
        service_url("https://dshub.example/dvc/420", "42")
    with pytest.raises(CiConfigError, match="is not dshub's DVC remote"):
        service_url("/dvc/42", "42")


def test_ssl_verify_follows_the_remote_and_defaults_to_on() -> None:
    assert ssl_verify_of({}) is True
    assert ssl_verify_of({"ssl_verify": "false"}) is False
    assert ssl_verify_of({"ssl_verify": False}) is False
    assert ssl_verify_of({"ssl_verify": "/etc/ca.pem"}) == "/etc/ca.pem"


CANDIDATE = {
    "key": "files/md5/0a/" + "b" * 30,
    "size": 12,
    "last_modified": "2026-01-01T00:00:00+00:00",
}


def _collect(stub: Stub, delete: bool = False) -> Collected:
    variables = CiVariables({"DSHUB_DATASET_ID": "42", "CI_JOB_TOKEN": TOKEN})
    remote = RemoteConfig("site", f"{stub.url}/dvc/42")
    return collect_in_dshub(remote, variables, GcOptions(delete=delete), {"a" * 32}, print)


def test_gc_through_dshub_sends_the_keep_set_and_reports_the_answer(stub: Stub) -> None:
    stub.reply = Reply(
        200,
        {
            "dry_run": False,
            "candidates": [CANDIDATE],
            "kept_referenced": 3,
            "kept_young": 1,
            "ignored_key_count": 2,
            "deleted": [CANDIDATE["key"]],
            "failed": [],
        },
    )
    collected = _collect(stub, delete=True)
    method, path, headers, body = stub.seen[0]
    assert (method, path, headers["JOB-TOKEN"]) == ("POST", "/api/v1/datasets/42/gc", TOKEN)
    assert json.loads(body) == {"keep": ["a" * 32], "dry_run": False, "min_age_hours": 72.0}
    result = collected.result
    assert [item.key for item in result.deleted] == [CANDIDATE["key"]]
    assert result.deleted_bytes == 12 and collected.ignored_key_count == 2


def test_a_deletion_dshub_could_not_make_is_logged_with_its_reason(stub: Stub) -> None:
    stub.reply = Reply(
        200,
        {
            "dry_run": False,
            "candidates": [CANDIDATE],
            **dict.fromkeys(("kept_referenced", "kept_young", "ignored_key_count"), 0),
            "deleted": [],
            "failed": [{"key": CANDIDATE["key"], "error": "AccessDenied"}],
        },
    )
    lines: list[str] = []
    variables = CiVariables({"DSHUB_DATASET_ID": "42", "CI_JOB_TOKEN": TOKEN})
    remote = RemoteConfig("site", f"{stub.url}/dvc/42")
    collected = collect_in_dshub(remote, variables, GcOptions(delete=True), set(), lines.append)
    assert lines[-1] == f"gc: dshub could not delete {CANDIDATE['key']}: AccessDenied"
    assert [item.key for item, _ in collected.result.failed] == [CANDIDATE["key"]]


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (
            Reply(
                400,
                {"error": {"code": "invalid_input", "message": "min_age_hours must be at least 1"}},
            ),
            CiConfigError,
            r"gc through dshub \(.*/api/v1/datasets/42/gc\) failed: dshub answered 400 "
            r"\(min_age_hours must be at least 1\)$",
        ),
        (
            Reply(
                403,
                {
                    "error": {
                        "code": "forbidden",
                        "message": "gc runs only from pipelines of the default branch",
                    }
                },
            ),
            CiConfigError,
            r"dshub answered 403 \(gc runs only from pipelines of the default branch\)$",
        ),
        (Reply(500, None), CiCheckFailed, r"dshub answered 500 \(Internal Server Error\)$"),
        (Reply(200, {"dry_run": True}), CiCheckFailed, r"gave an unexpected answer \(KeyError\)"),
        (
            Reply(
                200,
                {
                    **dict.fromkeys(("kept_referenced", "kept_young", "ignored_key_count"), 0),
                    "dry_run": False,
                    "candidates": [],
                    "deleted": [],
                    "failed": [],
                },
            ),
            CiCheckFailed,
            r"gave an unexpected answer \(ValueError\)",
        ),
    ],
)
def test_gc_through_dshub_fails_with_dshubs_message(
    stub: Stub, reply: Reply, error: type[Exception], message: str
) -> None:
    stub.reply = reply
    with pytest.raises(error, match=message) as caught:
        _collect(stub)
    assert TOKEN not in str(caught.value)


def test_gc_through_an_unreachable_dshub_says_the_outcome_is_unknown() -> None:
    variables = CiVariables({"DSHUB_DATASET_ID": "42", "CI_JOB_TOKEN": TOKEN})
    remote = RemoteConfig("site", "http://127.0.0.1:9/dvc/42")
    with pytest.raises(
        CiCheckFailed, match=r"got no answer \(ConnectionError\); what dshub did is unknown"
    ):
        collect_in_dshub(remote, variables, GcOptions(), set(), print)
