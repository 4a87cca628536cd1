"""dshub's DVC remote over plain HTTP: who may do what, what an upload must be, and paths that
must never reach storage. Requests go to the gunicorn-served dshub of the package's world;
hostile paths are sent with http.client so nothing normalises them on the way.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.dvc_remote.conftest import MAX_OBJECT_BYTES, World
from tests.support.dataset_repo import object_key

pytestmark = pytest.mark.slow
TIMEOUT = 60


def _request(method: str, url: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, url, timeout=TIMEOUT, **kwargs)


def _get(url: str, **kwargs: Any) -> requests.Response:
    return _request("GET", url, **kwargs)


def _head(url: str, **kwargs: Any) -> requests.Response:
    return _request("HEAD", url, **kwargs)


def _post(url: str, **kwargs: Any) -> requests.Response:
    return _request("POST", url, **kwargs)


def _put(url: str, **kwargs: Any) -> requests.Response:
    return _request("PUT", url, **kwargs)


def _auth(world: World, user: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": world.token(user)}


def _basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def _url(world: World, dataset: str, key: str) -> str:
    return f"{world.remote_url(dataset)}/{key}"


def _new_object(size: int = 1024) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, object_key(hashlib.md5(data).hexdigest())


def _upload(world: World, dataset: str, user: str = "dev", size: int = 1024) -> tuple[bytes, str]:
    data, key = _new_object(size)
    answer = _post(_url(world, dataset, key), data=data, headers=_auth(world, user))
    assert answer.status_code == 201, answer.text
    return data, key


def _error(answer: requests.Response) -> tuple[int, str, str]:
    body = answer.json()["error"]
    return answer.status_code, body["code"], body["message"]


# ------------------------------------------------------------------------------ who may


def test_no_credentials_on_a_private_dataset_is_a_basic_challenge(world: World) -> None:
    data, key = _new_object()
    for answer in (
        _get(_url(world, "cats", key)),
        _post(_url(world, "cats", key), data=data),
    ):
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="dshub"'
        assert answer.json()["error"]["code"] == "not_authenticated"
    assert key not in world.lab_files("cats")


def test_a_public_dataset_is_readable_without_a_token_but_not_writable(world: World) -> None:
    data, key = _upload(world, "seals")
    answer = _get(_url(world, "seals", key))
    assert answer.status_code == 200
    assert answer.content == data
    other, other_key = _new_object()
    refused = _post(_url(world, "seals", other_key), data=other)
    assert refused.status_code == 401
    assert other_key not in world.lab_files("seals")


def test_a_dataset_the_caller_cannot_see_answers_like_a_missing_one(world: World) -> None:
    _, key = _upload(world, "cats")
    hidden = _get(_url(world, "cats", key), headers=_auth(world, "out"))
    missing = _get(f"{world.server.url}/dvc/987654/{key}", headers=_auth(world, "out"))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    assert hidden.json()["error"]["message"] == f"dataset {world.pid('cats')} not found"
    assert missing.json()["error"]["message"] == "dataset 987654 not found"


def test_guests_cannot_read_and_reporters_cannot_write_a_private_dataset(world: World) -> None:
    data, key = _upload(world, "cats")
    status, code, message = _error(_get(_url(world, "cats", key), headers=_auth(world, "gus")))
    assert (status, code) == (403, "forbidden")
    assert "Reporter" in message
    assert _get(_url(world, "cats", key), headers=_auth(world, "rep")).content == data
    other, other_key = _new_object()
    status, code, message = _error(
        _post(_url(world, "cats", other_key), data=other, headers=_auth(world, "rep"))
    )
    assert (status, code) == (403, "forbidden")
    assert "Developer" in message
    assert other_key not in world.lab_files("cats")


def test_every_way_of_presenting_a_personal_token(world: World) -> None:
    data, key = _upload(world, "cats")
    token = world.token("rep")
    for headers, cookies in (
        ({"PRIVATE-TOKEN": token}, None),
        ({"Authorization": f"Bearer {token}"}, None),
        ({}, {"tokenGitLab": token}),
        (_basic("rep", token), None),
        (_basic("oauth2", token), None),
    ):
        answer = _get(_url(world, "cats", key), headers=headers, cookies=cookies)
        assert answer.status_code == 200, (headers.keys(), answer.text)
        assert answer.content == data
    for headers in (
        {"PRIVATE-TOKEN": "glpat-not-a-token"},
        _basic("rep", "glpat-not-a-token"),
        _basic("rep", ""),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Digest abc"},
    ):
        answer = _get(_url(world, "cats", key), headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="dshub"'
        assert "glpat-not-a-token" not in answer.text


def test_job_tokens_reach_only_their_own_running_project(world: World) -> None:
    data, key = _new_object()
    own = world.job_token("cats")
    stored = _put(_url(world, "cats", key), data=data, headers={"JOB-TOKEN": own})
    assert stored.status_code == 201, stored.text
    assert _get(_url(world, "cats", key), headers=_basic("gitlab-ci-token", own)).ok

    foreign = world.job_token("birds")
    status, code, message = _error(_get(_url(world, "cats", key), headers={"JOB-TOKEN": foreign}))
    assert (status, code) == (403, "forbidden")
    assert "another project" in message

    finished = world.job_token("cats")
    world.sandbox.finish_job(finished)
    answer = _get(_url(world, "cats", key), headers={"JOB-TOKEN": finished})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="dshub"'
    assert finished not in answer.text


# ------------------------------------------------------------------------------ which store


def test_a_direct_mode_dataset_is_told_to_use_its_bucket(world: World) -> None:
    data, key = _new_object()
    status, code, message = _error(
        _post(_url(world, "dogs", key), data=data, headers=_auth(world, "dev"))
    )
    assert (status, code) == (409, "direct_access_mode")
    assert "use the bucket directly" in message.lower()
    assert "DSHUB_DVC_REMOTE_URL" in message
    assert world.bucket_keys("dogs") == set()


def test_a_dataset_without_a_storage_site_is_told_how_to_choose_one(world: World) -> None:
    data, key = _new_object()
    status, code, message = _error(
        _post(_url(world, "fish", key), data=data, headers=_auth(world, "dev"))
    )
    assert (status, code) == (409, "no_storage_site")
    assert f"POST /api/v1/datasets/{world.pid('fish')}/storage-site" in message


# ------------------------------------------------------------------------------ uploads


def test_bytes_that_do_not_hash_to_the_key_are_refused_and_nothing_is_stored(
    world: World,
) -> None:
    data, _ = _new_object()
    _, wrong_key = _new_object()
    status, code, message = _error(
        _post(_url(world, "cats", wrong_key), data=data, headers=_auth(world, "dev"))
    )
    assert (status, code) == (400, "checksum_mismatch")
    assert hashlib.md5(data).hexdigest() in message
    assert wrong_key not in world.lab_files("cats")
    # The same for a chunked body (DVC's own way of sending), and on the S3 site.
    status, code, _ = _error(
        _post(
            _url(world, "birds", wrong_key),
            data=iter([data[:100], data[100:]]),
            headers=_auth(world, "dev"),
        )
    )
    assert (status, code) == (400, "checksum_mismatch")
    assert wrong_key not in world.bucket_keys("birds")
    assert world.staged_uploads() == []


def test_a_directory_manifest_is_checked_like_any_object(world: World) -> None:
    manifest = b'[{"md5": "0123456789abcdef0123456789abcdef", "relpath": "a.png"}]'
    oid = hashlib.md5(manifest).hexdigest() + ".dir"
    stored = _post(_url(world, "cats", object_key(oid)), data=manifest, headers=_auth(world, "dev"))
    assert stored.status_code == 201, stored.text
    assert world.lab_files("cats")[object_key(oid)] == manifest
    bad = object_key("0" * 32 + ".dir")
    refused = _post(_url(world, "cats", bad), data=manifest, headers=_auth(world, "dev"))
    assert refused.status_code == 400
    assert bad not in world.lab_files("cats")


def test_dvc_2_keys_are_checked_with_dvc_2s_text_hash(world: World) -> None:
    text = b"a\r\nb\r\n"
    raw = hashlib.md5(text).hexdigest()
    dos2unix = hashlib.md5(text.replace(b"\r\n", b"\n")).hexdigest()
    refused = _post(
        _url(world, "cats", object_key(raw, legacy=True)), data=text, headers=_auth(world, "dev")
    )
    assert refused.status_code == 400
    stored = _post(
        _url(world, "cats", object_key(dos2unix, legacy=True)),
        data=text,
        headers=_auth(world, "dev"),
    )
    assert stored.status_code == 201, stored.text
    files = world.lab_files("cats")
    assert files[object_key(dos2unix, legacy=True)] == text
    assert object_key(raw, legacy=True) not in files


def test_an_upload_over_the_limit_is_413_declared_or_streamed(world: World) -> None:
    data, key = _new_object(MAX_OBJECT_BYTES + 1)
    declared = _post(_url(world, "cats", key), data=data, headers=_auth(world, "dev"))
    assert _error(declared)[:2] == (413, "object_too_large")
    assert "DSHUB_DVC_MAX_OBJECT_BYTES" in _error(declared)[2]

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            yield data[start : start + 256 * 1024]

    try:
        streamed = _post(_url(world, "cats", key), data=chunks(), headers=_auth(world, "dev"))
        assert streamed.status_code == 413
    except requests.ConnectionError:
        pass  # the server may close the connection while the client still sends
    assert key not in world.lab_files("cats")
    assert world.staged_uploads() == []
    # Exactly the limit is accepted.
    fits, fits_key = _new_object(MAX_OBJECT_BYTES)
    stored = _post(_url(world, "cats", fits_key), data=fits, headers=_auth(world, "dev"))
    assert stored.status_code == 201


def test_an_object_already_stored_is_not_rewritten(world: World) -> None:
    data, key = _upload(world, "cats")
    path = world.lab / "team" / str(world.pid("cats")) / key
    os.utime(path, (1_000_000, 1_000_000))
    again = _post(_url(world, "cats", key), data=data, headers=_auth(world, "dev"))
    assert again.status_code == 200
    assert again.json()["stored"] is False
    assert path.stat().st_mtime == 1_000_000


def test_concurrent_uploads_of_one_object_leave_exactly_its_bytes(world: World) -> None:
    data, key = _new_object(1024 * 1024)
    corrupt = bytearray(data)
    corrupt[-1] ^= 0xFF
    statuses: list[tuple[bool, int]] = []
    lock = threading.Lock()

    def send(body: bytes) -> None:
        answer = _post(_url(world, "birds", key), data=body, headers=_auth(world, "dev"))
        with lock:
            statuses.append((body == data, answer.status_code))

    threads = [
        threading.Thread(target=send, args=(bytes(corrupt) if i % 4 == 3 else data,))
        for i in range(12)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    good = [status for intact, status in statuses if intact]
    bad = [status for intact, status in statuses if not intact]
    assert set(good) <= {200, 201}
    assert 201 in good
    # Wrong bytes are refused; once the object exists an upload is answered without reading
    # it (content-addressed: the stored bytes are the object's).
    assert set(bad) <= {200, 400}
    body = (
        world.bucket.client()
        .get_object(Bucket=world.bucket.name, Key=f"proxy/{world.pid('birds')}/{key}")["Body"]
        .read()
    )
    assert body == data
    assert world.staged_uploads() == []


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_client_that_disconnects_mid_upload_leaves_nothing(world: World, framing: str) -> None:
    data, key = _new_object(2 * 1024 * 1024)
    parts = urlsplit(_url(world, "cats", key))
    head = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"PRIVATE-TOKEN: {world.token('dev')}",
    ]
    head.append(
        f"Content-Length: {len(data)}"
        if framing == "content-length"
        else "Transfer-Encoding: chunked"
    )
    half = data[: len(data) // 2]
    sent = half if framing == "content-length" else b"%x\r\n" % len(half) + half + b"\r\n"
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + sent)
        _wait_for(lambda: len(world.staged_uploads()) == 1)  # the server is staging it
    _wait_for(lambda: world.staged_uploads() == [])
    assert key not in world.lab_files("cats")


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        ("Transfer-Encoding: chunked", b"zz\r\n" + b"x" * 100 + b"\r\n0\r\n\r\n"),
        ("Transfer-Encoding: chunked", b"64\r\n" + b"x" * 100 + b"XX0\r\n\r\n"),
        ("Transfer-Encoding: chunked", b"64\r\n" + b"x" * 50),
        ("Content-Length: 200", b"x" * 100),
    ],
)
def test_broken_framing_of_an_upload_is_a_400_and_stores_nothing(
    world: World, framing: str, body: bytes
) -> None:
    """Invalid chunked framing and a body shorter than its Content-Length (the client
    half-closes) are the client's 400, never a 500; nothing is staged or stored."""
    key = object_key(hashlib.md5(b"x" * 100, usedforsecurity=False).hexdigest())
    parts = urlsplit(_url(world, "cats", key))
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"PRIVATE-TOKEN: {world.token('dev')}\r\n{framing}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400"), answer[:400]
    assert b"nothing was" in answer, answer[:400]
    _wait_for(lambda: world.staged_uploads() == [])
    assert key not in world.lab_files("cats")


# ------------------------------------------------------------------------------ downloads


def test_head_and_ranges_answer_like_a_file_server(world: World) -> None:
    data, key = _upload(world, "birds", size=100_000)
    oid = key.removeprefix("files/md5/").replace("/", "")
    head = _head(_url(world, "birds", key), headers=_auth(world, "rep"))
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["ETag"] == f'"{oid}"'
    assert head.content == b""
    part = _get(_url(world, "birds", key), headers={**_auth(world, "rep"), "Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    missing = _get(_url(world, "birds", _new_object()[1]), headers=_auth(world, "rep"))
    assert missing.status_code == 404


# ------------------------------------------------------------------------------ hostile paths


def _raw(world: World, method: str, path: str, token: str, body: bytes = b"") -> int:
    parts = urlsplit(world.server.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        connection.putheader("PRIVATE-TOKEN", token)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def _snapshot(world: World) -> tuple[dict[str, bytes], set[str], set[str]]:
    return (
        world.lab_files("cats"),
        world.bucket_keys("birds"),
        set(map(str, world.staged_uploads())),
    )


def test_paths_that_are_not_object_keys_never_touch_storage(world: World) -> None:
    data, _ = _new_object()
    while hashlib.md5(data).hexdigest()[:2].isdigit():  # the uppercase variants must differ
        data, _ = _new_object()
    md5 = hashlib.md5(data).hexdigest()
    head, tail = md5[:2], md5[2:]
    pid = world.pid("cats")
    hostile = [
        f"/dvc/{pid}/files/md5/{head.upper()}/{tail}",
        f"/dvc/{pid}/files/md5/{head}/{tail.upper()}",
        f"/dvc/{pid}/files/md5/{head}/{tail}.DIR",
        f"/dvc/{pid}/files/md5/{head}/{tail[:-1]}",
        f"/dvc/{pid}/files/md5/{head}/{tail}0",
        f"/dvc/{pid}/files/md5/{head}/{tail}/",
        f"/dvc/{pid}/files/md5/{head}",
        f"/dvc/{pid}/files/md5/",
        f"/dvc/{pid}/",
        f"/dvc/{pid}",
        f"/dvc/{pid}/files/md5/../../{head}/{tail}",
        f"/dvc/{pid}/files/md5/{head}/../{head}/{tail}",
        f"/dvc/{pid}/files%2Fmd5%2F{head}%2F{tail}",
        f"/dvc/{pid}/files/md5/{head}%2F{tail}",
        f"/dvc/{pid}/files/md5/%2e%2e/{head}/{tail}",
        f"/dvc/{pid}/files/md5/{head}/{tail}%00",
        f"/dvc/{pid}/files/md5/{head}/{tail}%00.dir",
        f"/dvc/{pid}//files/md5/{head}/{tail}",
        f"/dvc/{pid}/files//md5/{head}/{tail}",
        f"/dvc/{pid}/./files/md5/{head}/{tail}",
        f"/dvc/{pid}/files/sha256/{head}/{tail}",
        f"/dvc/0{pid}/files/md5/{head}/{tail}",
        f"/dvc/-{pid}/files/md5/{head}/{tail}",
        f"/dvc/{pid}/files/md5/{head}/{tail}\\..\\x",
        f"/dvc/../dvc/{pid}/files/md5/{head}/{tail}",
        f"/dvc/{pid}/%66iles/md5/{head}/{tail}",
    ]
    before = _snapshot(world)
    for path in hostile:
        for method, body in (("GET", b""), ("HEAD", b""), ("POST", data), ("PUT", data)):
            status = _raw(world, method, path, world.token("dev"), body)
            assert 400 <= status < 500, (method, path, status)
    assert _snapshot(world) == before
    # The well-formed path stores the object: the refusals above were about the path only.
    assert (
        _raw(world, "POST", f"/dvc/{pid}/files/md5/{head}/{tail}", world.token("dev"), data) == 201
    )


def test_requests_and_stored_bytes_are_counted_in_the_metrics(world: World) -> None:
    def scrape() -> dict[str, float]:
        text = _get(f"{world.server.url}/metrics").text
        found = {}
        for line in text.splitlines():
            if line.startswith("dshub_dvc_remote_"):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    before = scrape()
    data, key = _upload(world, "cats", size=3000)
    _get(_url(world, "cats", key), headers=_auth(world, "rep"))
    after = scrape()
    stored = 'dshub_dvc_remote_requests_total{method="POST",status="201"}'
    read = 'dshub_dvc_remote_requests_total{method="GET",status="200"}'
    assert after[stored] - before.get(stored, 0) == 1
    assert after[read] - before.get(read, 0) == 1
    grown = after["dshub_dvc_remote_stored_bytes_total"]
    assert grown - before.get("dshub_dvc_remote_stored_bytes_total", 0) == len(data)
