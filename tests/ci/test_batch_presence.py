"""The jobs' presence checks in proxy mode: dshub's batch answer instead of DVC's GETs.

`DshubRemote.missing` against the loopback stand-in (`tests.ci.dshub_stub`): requests of
10,000 keys with the job token, the remote's TLS setting, and one line for every way dshub can
refuse or fail; `RemoteObjects` switching to it with a real DVC repository. The real dshub
answers in tests/ci/test_pipeline_proxy.py and tests/dvc_remote/test_presence.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dshub.ci.access import remote_access
from dshub.ci.environment import Access
from dshub.ci.errors import CiCheckFailed, CiConfigError
from dshub.ci.presence import ObjectRef, RemoteObjects, remote_key
from dshub.ci.proxy import DshubRemote
from dshub.ci.remote import RemoteConfig
from dshub.config import CiVariables
from tests.ci.dshub_stub import Reply, Stub, self_signed_certificate, serve_stub

TOKEN = "glcbt-64_secretjobtoken1234"


def _key(i: int, legacy: bool = False) -> str:
    oid = f"{i:032x}"
    return f"{oid[:2]}/{oid[2:]}" if legacy else f"files/md5/{oid[:2]}/{oid[2:]}"


def _every_third_missing(body: bytes) -> Reply:
    keys = json.loads(body)["keys"]
    return Reply(200, {"missing": keys[::3], "checked": len(keys)})


def test_keys_are_asked_in_requests_of_ten_thousand_with_the_job_token(stub: Stub) -> None:
    stub.reply = _every_third_missing
    keys = [_key(i) for i in range(10_001)] + [_key(5), _key(7, legacy=True)]
    missing = DshubRemote(f"{stub.url}/dvc/42/", TOKEN).missing(keys)

    sent = [json.loads(body)["keys"] for _, _, _, body in stub.seen]
    assert [len(chunk) for chunk in sent] == [10_000, 2]
    assert sorted(key for chunk in sent for key in chunk) == sorted(set(keys))
    for method, path, headers, _ in stub.seen:
        assert (method, path, headers["JOB-TOKEN"]) == ("POST", "/dvc/42/missing", TOKEN)
    assert missing == {key for chunk in sent for key in chunk[::3]}
    assert DshubRemote(f"{stub.url}/dvc/42", TOKEN).missing([]) == set()
    assert len(stub.seen) == 2, "no request for no keys"


NOT_FOUND = {"error": {"code": "not_found", "message": "no such object: keys are files/md5/..."}}


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (
            Reply(403, {"error": {"code": "forbidden", "message": "belongs to another project"}}),
            CiConfigError,
            r"^dshub refused this job's CI_JOB_TOKEN for .*/dvc/42: dshub answered 403 "
            r"\(belongs to another project\)$",
        ),
        (
            Reply(401, None),
            CiConfigError,
            r"^dshub refused this job's CI_JOB_TOKEN for .*: dshub answered 401 \(Unauthorized\)$",
        ),
        (
            Reply(404, NOT_FOUND),
            CiConfigError,
            r"^dshub's DVC remote .*/dvc/42 answered 404 \(no such object: keys are "
            r"files/md5/\.\.\.; this job needs a dshub that answers POST .*/dvc/42/missing\)$",
        ),
        (
            Reply(409, {"error": {"code": "no_storage_site", "message": "no storage site yet"}}),
            CiConfigError,
            r"^dshub's DVC remote .*/dvc/42 answered 409 \(no storage site yet\)$",
        ),
        (
            Reply(
                503,
                {"error": {"code": "unavailable", "message": "storage site 's3' is unreachable"}},
            ),
            CiConfigError,
            r"^dshub's DVC remote .* answered 503 \(storage site 's3' is unreachable\)$",
        ),
        (Reply(200, b"<html>proxy login</html>"), CiCheckFailed, r"gave an unexpected answer"),
        (Reply(200, {"missing": [], "checked": 1}), CiCheckFailed, r"unexpected answer"),
        (Reply(200, {"missing": [_key(9)], "checked": 2}), CiCheckFailed, r"unexpected answer"),
        (Reply(200, {"missing": [[1]], "checked": 2}), CiCheckFailed, r"unexpected answer"),
        (Reply(200, {"checked": 2}), CiCheckFailed, r"of 2 objects it holds; see dshub's log$"),
    ],
)
def test_a_refusal_or_a_strange_answer_is_one_line_without_the_token(
    stub: Stub, reply: Reply, error: type[Exception], message: str
) -> None:
    stub.reply = reply
    with pytest.raises(error, match=message) as caught:
        DshubRemote(f"{stub.url}/dvc/42", TOKEN).missing([_key(1), _key(2)])
    text = str(caught.value)
    assert TOKEN not in text and "\n" not in text


def test_an_unreachable_dshub_is_named() -> None:
    with pytest.raises(
        CiConfigError, match=r"^cannot reach dshub's DVC remote .*/dvc/42 \(ConnectionError\)"
    ) as caught:
        DshubRemote("http://127.0.0.1:9/dvc/42", TOKEN).missing([_key(1)])
    assert TOKEN not in str(caught.value)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_remotes_tls_setting_is_used(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    with serve_stub((cert, key)) as stub:
        stub.reply = _every_third_missing
        url = f"{stub.url}/dvc/42"
        with pytest.raises(CiConfigError, match=r"cannot reach .* \(SSLError\)"):
            DshubRemote(url, TOKEN).missing([_key(1)])
        assert DshubRemote(url, TOKEN, str(cert)).missing([_key(1), _key(2)]) == {_key(1)}
        assert DshubRemote(url, TOKEN, False).missing([_key(3)]) == {_key(3)}


def _dvc_repo(root: Path, remote_url: str) -> Path:
    from dvc.repo import Repo

    root.mkdir(parents=True, exist_ok=True)
    Repo.init(str(root), no_scm=True).close()
    (root / ".dvc" / "config").write_text(
        f"[core]\n    no_scm = true\n    remote = site\n['remote \"site\"']\n"
        f"    url = {remote_url}\n    ssl_verify = false\n"
    )
    return root


def test_in_proxy_mode_the_remote_is_asked_once_not_per_object(tmp_path: Path, stub: Stub) -> None:
    url = f"{stub.url}/dvc/42"
    root = _dvc_repo(tmp_path / "repo", url)
    refs = [
        ObjectRef("md5", f"{1:032x}", "a.bin (a.bin.dvc)"),
        ObjectRef("md5", f"{2:032x}.dir", "images (images.dvc)"),
        ObjectRef("md5-dos2unix", f"{3:032x}", "old.txt (old.txt.dvc)"),
        ObjectRef("md5", "not-an-md5", "odd.bin (odd.bin.dvc)"),
    ]
    stub.reply = Reply(200, {"missing": [_key(1)], "checked": 3})
    stub.seen.clear()
    remote = RemoteConfig("site", url, {"ssl_verify": "false"})
    with remote_access(
        root, remote, CiVariables({"CI_JOB_TOKEN": TOKEN}), Access.READ_ONLY, print
    ) as dshub:
        assert dshub == DshubRemote(url, TOKEN, False)
        stub.seen.clear()  # the access check's GET
        objects = RemoteObjects(root, "site", 4, dshub)
        try:
            missing = objects.missing(refs)
        finally:
            objects.close()
    assert [ref.label for ref in missing] == ["a.bin (a.bin.dvc)", "odd.bin (odd.bin.dvc)"]
    assert [(method, path) for method, path, _, _ in stub.seen] == [("POST", "/dvc/42/missing")]
    assert json.loads(stub.seen[0][3]) == {
        "keys": sorted([_key(1), f"files/md5/00/{2:030x}.dir", _key(3, legacy=True)])
    }


def test_direct_mode_yields_no_dshub_remote(tmp_path: Path) -> None:
    with remote_access(
        tmp_path, RemoteConfig("site", str(tmp_path / "store")), CiVariables({}), Access.READ_ONLY
    ) as dshub:
        assert dshub is None


def test_remote_keys_follow_the_layout_and_refuse_what_is_not_an_md5() -> None:
    oid = "ab" + "c" * 30
    assert remote_key("md5", oid) == f"files/md5/ab/{'c' * 30}"
    assert remote_key("md5", oid + ".dir") == f"files/md5/ab/{'c' * 30}.dir"
    assert remote_key("md5-dos2unix", oid) == f"ab/{'c' * 30}"
    assert remote_key("md5", "AB" + "c" * 30) is None
    assert remote_key("md5", "../../etc/passwd") is None
