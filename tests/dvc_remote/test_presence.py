"""`POST /dvc/<id>/missing`: the DVC remote's batch presence answer, over HTTP.

Requests go to the gunicorn-served dshub of the package's world; objects are stored through
the remote itself and removed behind dshub's back on the site, so the answers prove they
come from storage (a local directory and moto S3), never from the index.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import gitlab
import pytest
import requests

from indexer.data.storage import StorageSite
from indexer.sites.registry import SiteRegistry
from tests.dvc_remote.conftest import SITE_CREDENTIALS, World
from tests.support.dataset_repo import object_key

pytestmark = pytest.mark.slow
TIMEOUT = 120
LIMIT = 10_000


def _ask(world: World, dataset: str, keys: list[Any], **kwargs: Any) -> requests.Response:
    headers = kwargs.pop("headers", {"PRIVATE-TOKEN": world.token("rep")})
    return requests.post(
        f"{world.remote_url(dataset)}/missing",
        json={"keys": keys},
        headers=headers,
        timeout=TIMEOUT,
        **kwargs,
    )


def _error(answer: requests.Response) -> tuple[int, str, str]:
    body = answer.json()["error"]
    return answer.status_code, body["code"], body["message"]


def _absent_key(legacy: bool = False, suffix: str = "") -> str:
    return object_key(hashlib.md5(os.urandom(16)).hexdigest() + suffix, legacy)


def _store(
    world: World, dataset: str, data: bytes, legacy: bool = False, manifest: bool = False
) -> str:
    """Push `data` through the remote (a Developer's POST); its key."""
    key = object_key(hashlib.md5(data).hexdigest() + (".dir" if manifest else ""), legacy)
    answer = requests.post(
        f"{world.remote_url(dataset)}/{key}",
        data=data,
        headers={"PRIVATE-TOKEN": world.token("dev")},
        timeout=TIMEOUT,
    )
    assert answer.status_code in (200, 201), answer.text
    return key


def _remover(world: World, dataset: str) -> Callable[[str], None]:
    """Deletes a key on the dataset's site directly, as a lost object would be."""
    if dataset == "cats":
        base = world.lab / "team" / str(world.pid(dataset))
        return lambda key: (base / key).unlink()
    client = world.bucket.client()
    prefix = f"proxy/{world.pid(dataset)}/"
    return lambda key: client.delete_object(Bucket=world.bucket.name, Key=prefix + key)


def _presence_counts(world: World) -> dict[str, float]:
    text = requests.get(f"{world.server.url}/metrics", timeout=TIMEOUT).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("dshub_dvc_remote_presence_keys_total"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


# ------------------------------------------------------------------------------ answers


@pytest.mark.parametrize("dataset", ["cats", "birds"])
def test_missing_keys_are_answered_from_storage_in_both_layouts(world: World, dataset: str) -> None:
    stored = [
        _store(world, dataset, os.urandom(300)),
        _store(
            world, dataset, b'[{"md5": "' + b"a" * 32 + b'", "relpath": "x.png"}]', manifest=True
        ),
        _store(world, dataset, b"dvc 2\ntext " + os.urandom(8).hex().encode(), legacy=True),
    ]
    lost = _store(world, dataset, os.urandom(200))
    _remover(world, dataset)(lost)  # behind dshub's back: only storage knows
    absent = [_absent_key(), _absent_key(suffix=".dir"), _absent_key(legacy=True)]
    keys = [absent[0], *stored, lost, absent[1], stored[0], absent[2], absent[0]]

    answer = _ask(world, dataset, keys)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"missing": [absent[0], lost, absent[1], absent[2]], "checked": 7}

    # Pushed now: the next answer says so.
    data = os.urandom(100)
    pushed = object_key(hashlib.md5(data).hexdigest())
    assert _ask(world, dataset, [pushed]).json() == {"missing": [pushed], "checked": 1}
    assert _store(world, dataset, data) == pushed
    assert _ask(world, dataset, [pushed, *stored]).json() == {"missing": [], "checked": 4}
    assert _ask(world, dataset, []).json() == {"missing": [], "checked": 0}


def test_the_answer_names_how_storage_was_asked_in_the_metrics(world: World) -> None:
    before = _presence_counts(world)
    key = _store(world, "cats", os.urandom(64))
    assert _ask(world, "cats", [key, _absent_key()]).status_code == 200
    after = _presence_counts(world)
    stored = 'dshub_dvc_remote_presence_keys_total{method="stat",state="stored"}'
    missing = 'dshub_dvc_remote_presence_keys_total{method="stat",state="missing"}'
    assert after[stored] - before.get(stored, 0) == 1
    assert after[missing] - before.get(missing, 0) == 1


def test_exactly_the_key_limit_is_checked_in_one_request(world: World) -> None:
    key = _store(world, "cats", os.urandom(64))
    keys = [key] + [object_key(f"{i:032x}") for i in range(LIMIT - 1)]
    answer = _ask(world, "cats", keys)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["checked"] == LIMIT and len(body["missing"]) == LIMIT - 1
    assert key not in body["missing"]


# ------------------------------------------------------------------------------ who may


def _job(world: World, dataset: str, finished: bool = False) -> dict[str, str]:
    token = world.job_token(dataset)
    if finished:
        world.sandbox.finish_job(token)
    return {"JOB-TOKEN": token}


@pytest.mark.parametrize(
    ("dataset", "caller", "status"),
    [
        ("cats", "rep", 200),
        ("cats", "dev", 200),
        ("cats", "own job", 200),
        ("seals", None, 200),
        ("cats", None, 401),
        ("cats", "bad token", 401),
        ("cats", "finished job", 401),
        ("cats", "gus", 403),
        ("cats", "foreign job", 403),
        ("cats", "out", 404),
    ],
)
def test_presence_needs_what_reading_an_object_needs(
    world: World, dataset: str, caller: str | None, status: int
) -> None:
    headers: dict[str, str] = {}
    if caller in ("rep", "dev", "gus", "out"):
        headers = {"PRIVATE-TOKEN": world.token(caller)}
    elif caller == "bad token":
        headers = {"PRIVATE-TOKEN": "glpat-not-a-token"}
    elif caller == "own job":
        headers = _job(world, dataset)
    elif caller == "finished job":
        headers = _job(world, dataset, finished=True)
    elif caller == "foreign job":
        headers = _job(world, "birds")
    key = _store(world, dataset, os.urandom(32))
    answer = _ask(world, dataset, [key], headers=headers)
    assert answer.status_code == status, answer.text
    if status == 200:
        assert answer.json() == {"missing": [], "checked": 1}
        return
    assert "glpat-not-a-token" not in answer.text
    for value in headers.values():
        assert value not in answer.text
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="dshub"'
    if status == 404:
        unknown = requests.post(
            f"{world.server.url}/dvc/987654/missing",
            json={"keys": [key]},
            headers=headers,
            timeout=TIMEOUT,
        )
        assert unknown.status_code == 404
        assert answer.json()["error"]["message"] == f"dataset {world.pid('cats')} not found"
        assert unknown.json()["error"]["message"] == "dataset 987654 not found"


def test_the_site_rules_of_the_remote_apply(world: World) -> None:
    headers = {"PRIVATE-TOKEN": world.token("dev")}
    status, code, message = _error(_ask(world, "dogs", [_absent_key()], headers=headers))
    assert (status, code) == (409, "direct_access_mode")
    assert "DSHUB_DVC_REMOTE_URL" in message
    status, code, message = _error(_ask(world, "fish", [_absent_key()], headers=headers))
    assert (status, code) == (409, "no_storage_site")
    assert f"POST /api/v1/datasets/{world.pid('fish')}/storage-site" in message


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        ("files/md5/AB/" + "c" * 30, "'files/md5/AB/"),
        ("files/md5/ab/" + "c" * 29, "'files/md5/ab/"),
        ("files/md5/ab/" + "c" * 30 + ".DIR", ".DIR'"),
        ("files/md5/../ab/" + "c" * 30, "'files/md5/../ab/"),
        ("/files/md5/ab/" + "c" * 30, "'/files/md5/ab/"),
        ("files/sha256/ab/" + "c" * 30, "'files/sha256/"),
        ("ab/" + "c" * 30 + "\x00", "\\x00'"),
        (12, "12"),
        (None, "None"),
        (["files/md5/ab/" + "c" * 30], "['files/md5/ab/"),
        ("x" * 500, "'xxxxx"),
    ],
)
def test_the_first_bad_key_is_named_and_nothing_is_checked(
    world: World, bad: object, shown: str
) -> None:
    before = _presence_counts(world)
    keys = [_absent_key(), bad, "also bad"]
    status, code, message = _error(_ask(world, "birds", keys))
    assert (status, code) == (400, "invalid_input")
    assert message.startswith("keys[1] ") and message.endswith("nothing was checked")
    assert shown in message and "also bad" not in message
    assert len(message) < 400
    assert _presence_counts(world) == before


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b'["files/md5/ab/cccccccccccccccccccccccccccccc"]',
        b"{}",
        b'{"keys": "files/md5/ab/cccccccccccccccccccccccccccccc"}',
        b'{"keys": [], "dry_run": true}',
    ],
)
def test_a_body_that_is_not_a_keys_object_is_refused(world: World, body: bytes) -> None:
    answer = requests.post(
        f"{world.remote_url('cats')}/missing",
        data=body,
        headers={"PRIVATE-TOKEN": world.token("rep"), "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    status, code, message = _error(answer)
    assert (status, code) == (400, "invalid_input")
    assert '"keys"' in message or "keys must be a list" in message


def test_more_keys_than_the_limit_are_refused_with_the_limit(world: World) -> None:
    keys = [object_key(f"{i:032x}") for i in range(LIMIT + 1)]
    status, code, message = _error(_ask(world, "cats", keys))
    assert (status, code) == (413, "too_many_keys")
    assert f"at most {LIMIT}" in message and "several requests" in message


def test_a_body_over_the_cap_is_refused_declared_or_streamed(world: World) -> None:
    big = json.dumps({"keys": ["files/md5/ab/" + "c" * 30] * 30_000}).encode()
    assert len(big) > 1024 * 1024
    headers = {"PRIVATE-TOKEN": world.token("rep")}
    url = f"{world.remote_url('cats')}/missing"
    declared = requests.post(url, data=big, headers=headers, timeout=TIMEOUT)
    assert _error(declared)[:2] == (413, "body_too_large")

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    try:
        streamed = requests.post(url, data=chunks(), headers=headers, timeout=TIMEOUT)
        assert _error(streamed)[:2] == (413, "body_too_large")
    except requests.ConnectionError:
        pass  # the server may close the connection while the client still sends


def _raw_post(world: World, path: str, body: bytes) -> int:
    parts = urlsplit(world.server.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        connection.putheader("PRIVATE-TOKEN", world.token("rep"))
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_only_the_exact_path_answers(world: World) -> None:
    pid = world.pid("cats")
    body = json.dumps({"keys": [_absent_key()]}).encode()
    assert _raw_post(world, f"/dvc/{pid}/missing", body) == 200
    for path in (
        f"/dvc/{pid}/%6Dissing",
        f"/dvc/0{pid}/missing",
        f"/dvc/{pid}/missing/",
        f"/dvc/{pid}//missing",
        f"/dvc/{pid}/files/missing",
        f"/dvc/{pid}/MISSING",
    ):
        assert _raw_post(world, path, body) == 404, path
    for method in ("GET", "HEAD"):
        answer = requests.request(
            method,
            f"{world.remote_url('cats')}/missing",
            headers={"PRIVATE-TOKEN": world.token("rep")},
            timeout=TIMEOUT,
        )
        assert answer.status_code == 404, method


# ------------------------------------------------------------------------------ storage down


def test_a_storage_site_that_cannot_answer_is_503_naming_it(world: World) -> None:
    admin = gitlab.Gitlab(world.sandbox.url, private_token=world.sandbox.admin_token)
    group = admin.groups.get("vision")
    project = admin.projects.create({"name": "eels", "namespace_id": group.id})
    project.members.create({"user_id": world.users["rep"][0].id, "access_level": 20})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    registry = SiteRegistry(world.index_url)
    registry.put(
        StorageSite(
            name="gone",
            kind="s3",
            bucket="gone",
            prefix="proxy",
            endpoint_url=f"http://127.0.0.1:{port}",
            region=world.bucket.region,
            credentials_ref=SITE_CREDENTIALS,
        )
    )
    registry.select(project.id, "gone", None)
    answer = requests.post(
        f"{world.server.url}/dvc/{project.id}/missing",
        json={"keys": [_absent_key(), _absent_key()]},
        headers={"PRIVATE-TOKEN": world.token("rep")},
        timeout=TIMEOUT,
    )
    status, code, message = _error(answer)
    assert (status, code) == (503, "unavailable")
    assert "'gone'" in message and "unreachable" in message
