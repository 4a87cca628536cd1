"""Single-file download at any ref, over HTTP from gunicorn, with the bytes checked exactly."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
from pathlib import Path

import pytest
import requests

from tests.download.world import CRLF_TEXT, SEED_NAME, SEED_PATH, World, md5
from tests.receiver.serving import Gunicorn


def _url(server: Gunicorn, project_id: int, path: str) -> str:
    return f"{server.url}/api/v1/datasets/{project_id}/files/{path}"


def _admin(world: World) -> dict[str, str]:
    return {"PRIVATE-TOKEN": world.tokens["admin"]}


def _get(world: World, server: Gunicorn, path: str, **kwargs: object) -> requests.Response:
    headers = {**_admin(world), **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return requests.get(
        _url(server, world.cats.id, path),
        headers=headers,
        timeout=30,
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_seed_curl_command_downloads_exactly_that_versions_bytes(
    world: World, server: Gunicorn, tmp_path: Path
) -> None:
    url = f"{_url(server, world.cats.id, SEED_PATH)}?ref=v0.1.0"
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-f",
            "-b",
            f"tokenGitLab={world.tokens['reporter']}",
            url,
            "--output",
            SEED_NAME,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / SEED_NAME).read_bytes() == world.files["v1/seed"]


def test_a_later_version_of_the_same_path_returns_the_later_bytes(
    world: World, server: Gunicorn
) -> None:
    first = _get(world, server, SEED_PATH, params={"ref": "v0.1.0"})
    later = _get(world, server, SEED_PATH, params={"ref": "v0.2.0"})
    default = _get(world, server, SEED_PATH)
    assert first.content == world.files["v1/seed"]
    assert later.content == world.files["v2/seed"] != first.content
    assert default.content == world.files["v2/seed"]  # the default branch is at v0.3.0
    assert later.headers["ETag"] == f'"{md5(world.files["v2/seed"])}"'
    assert later.headers["X-Dshub-Hash"] == "md5"
    assert later.headers["Content-Type"] == "image/jpeg"
    assert later.headers["Content-Disposition"] == (
        f"attachment; filename=\"{SEED_NAME}\"; filename*=UTF-8''{SEED_NAME}"
    )
    assert later.headers["Cache-Control"] == "private, no-cache"


def test_a_full_or_short_commit_sha_works_and_only_a_full_one_is_immutable(
    world: World, server: Gunicorn
) -> None:
    sha = world.shas["v0.1.0"]
    full = _get(world, server, SEED_PATH, params={"ref": sha})
    short = _get(world, server, SEED_PATH, params={"ref": sha[:10]})
    assert full.content == short.content == world.files["v1/seed"]
    assert full.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    assert short.headers["Cache-Control"] == "private, no-cache"


def test_an_entry_inside_a_tracked_directory_downloads(world: World, server: Gunicorn) -> None:
    for path in ("images/cat1.png", "images/sub/x.jpg"):
        answer = _get(world, server, path, params={"ref": "v0.1.0"})
        assert answer.status_code == 200
        assert answer.content == world.files[path]
        assert answer.headers["ETag"] == f'"{md5(world.files[path])}"'
        assert int(answer.headers["Content-Length"]) == len(world.files[path])


def test_an_unindexed_branch_is_resolved_live_from_gitlab_and_the_manifest(
    world: World, server: Gunicorn
) -> None:
    new = _get(world, server, "feature/new.bin", params={"ref": "feature"})
    assert new.content == world.files["feature/new.bin"]
    inside = _get(world, server, "images/sub/x.jpg", params={"ref": "feature"})
    assert inside.content == world.files["images/sub/x.jpg"]
    legacy = _get(world, server, "legacy/notes.txt", params={"ref": "feature"})
    assert legacy.content == CRLF_TEXT


def test_a_plain_git_file_downloads_with_its_blob_id(world: World, server: Gunicorn) -> None:
    answer = _get(world, server, "docs/notes.md", params={"ref": "v0.1.0"})
    data = world.files["docs/notes.md"]
    assert answer.content == data
    blob_id = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
    assert answer.headers["ETag"] == f'"{blob_id}"'
    assert answer.headers["X-Dshub-Hash"] == "git-sha1"
    ranged = _get(
        world, server, "docs/notes.md", params={"ref": "v0.1.0"}, headers={"Range": "bytes=2-6"}
    )
    assert ranged.status_code == 206 and ranged.content == data[2:7]


def test_a_dvc2_text_file_downloads_its_crlf_bytes_and_names_the_legacy_hash(
    world: World, server: Gunicorn
) -> None:
    answer = _get(world, server, "legacy/notes.txt", params={"ref": "v0.3.0"})
    assert answer.content == CRLF_TEXT
    assert answer.headers["X-Dshub-Hash"] == "md5-dos2unix"
    lf = md5(CRLF_TEXT.replace(b"\r\n", b"\n"))
    assert answer.headers["ETag"] == f'"{lf}"' != f'"{md5(CRLF_TEXT)}"'


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1048000-1049999", 1048000, 1049999),  # across a 1 MiB chunk boundary
        ("bytes=-1234", 2_500_000 - 1234, 2_499_999),
        ("bytes=2499990-", 2499990, 2_499_999),
        ("bytes=2000000-9999999", 2000000, 2_499_999),
    ],
)
def test_ranges_are_exact(
    world: World, server: Gunicorn, header: str, start: int, end: int
) -> None:
    answer = _get(world, server, "model.bin", params={"ref": "v0.1.0"}, headers={"Range": header})
    assert answer.status_code == 206
    assert answer.content == world.files["model.bin"][start : end + 1]
    assert answer.headers["Content-Range"] == f"bytes {start}-{end}/2500000"
    assert int(answer.headers["Content-Length"]) == end - start + 1


def test_an_unsatisfiable_range_is_416_with_the_size(world: World, server: Gunicorn) -> None:
    answer = _get(
        world, server, "model.bin", params={"ref": "v0.1.0"}, headers={"Range": "bytes=2500000-"}
    )
    assert answer.status_code == 416
    assert answer.headers["Content-Range"] == "bytes */2500000"


def test_if_range_with_another_etag_sends_the_whole_file(world: World, server: Gunicorn) -> None:
    etag = f'"{md5(world.files["model.bin"])}"'
    same = _get(
        world,
        server,
        "model.bin",
        params={"ref": "v0.1.0"},
        headers={"Range": "bytes=0-9", "If-Range": etag},
    )
    other = _get(
        world,
        server,
        "model.bin",
        params={"ref": "v0.1.0"},
        headers={"Range": "bytes=0-9", "If-Range": '"0123"'},
    )
    assert same.status_code == 206 and len(same.content) == 10
    assert other.status_code == 200 and other.content == world.files["model.bin"]
    unchanged = _get(
        world, server, "model.bin", params={"ref": "v0.1.0"}, headers={"If-None-Match": etag}
    )
    assert unchanged.status_code == 304 and unchanged.content == b""


def test_head_answers_the_same_headers_as_get_without_a_body(
    world: World, server: Gunicorn
) -> None:
    for path in ("model.bin", "images/cat1.png", "docs/notes.md", "legacy/notes.txt"):
        got = _get(world, server, path, params={"ref": "v0.3.0"})
        head = requests.head(
            _url(server, world.cats.id, path),
            params={"ref": "v0.3.0"},
            headers=_admin(world),
            timeout=30,
        )
        assert head.status_code == 200 and head.content == b""
        for name in (
            "ETag",
            "X-Dshub-Hash",
            "Content-Length",
            "Content-Type",
            "Content-Disposition",
            "Accept-Ranges",
            "Cache-Control",
        ):
            assert head.headers[name] == got.headers[name], (path, name)


@pytest.mark.parametrize(
    "path",
    [
        "../cats/model.bin",
        "images/../model.bin",
        "%2e%2e/model.bin",
        "%252e%252e/model.bin",
        "images/%2E%2E/model.bin",
        "images\\cat1.png",
        "images%5Ccat1.png",
        "images/cat1.png%00.jpg",
        "./model.bin",
        "images//cat1.png",
        "C:/model.bin",
    ],
)
def test_traversal_and_odd_paths_are_refused_with_400(
    world: World, server: Gunicorn, path: str
) -> None:
    # Sent raw with http.client: requests/urllib3 would normalise `..` away before sending.
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(
        "GET",
        f"/api/v1/datasets/{world.cats.id}/files/{path}?ref=v0.1.0",
        headers=_admin(world),
    )
    answer = connection.getresponse()
    body = json.loads(answer.read())
    connection.close()
    assert answer.status == 400, path
    assert body["error"]["code"] == "invalid_input"


@pytest.mark.parametrize(
    "ref",
    [
        "--upload-pack=touch",
        "v0.1.0..v0.2.0",
        "main\n",
        "a\x01b",
        "x" * 300,
        "refs/../x",
        "HEAD@{1}",
        "v1~1",
        "*",
    ],
)
def test_hostile_refs_are_refused_with_400(world: World, server: Gunicorn, ref: str) -> None:
    answer = _get(world, server, "model.bin", params={"ref": ref})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_input"


def test_an_unknown_ref_is_404_naming_it(world: World, server: Gunicorn) -> None:
    answer = _get(world, server, "model.bin", params={"ref": "v9.9.9"})
    assert answer.status_code == 404
    assert "'v9.9.9'" in answer.json()["error"]["message"]
    missing = _get(world, server, "nothing/here.bin", params={"ref": "v0.1.0"})
    assert missing.status_code == 404 and "nothing/here.bin" in missing.text


def test_a_folder_is_not_a_file(world: World, server: Gunicorn) -> None:
    answer = _get(world, server, "images/sub", params={"ref": "v0.1.0"})
    assert answer.status_code == 400 and "/tree?path=images/sub" in answer.text


def test_an_object_missing_from_storage_is_502_naming_object_and_site(
    world: World, server: Gunicorn
) -> None:
    answer = _get(world, server, "missing/ghost.bin", params={"ref": "v0.3.0"})
    assert answer.status_code == 502
    message = answer.json()["error"]["message"]
    ghost = md5(b"never pushed")
    assert f"files/md5/{ghost[:2]}/{ghost[2:]}" in message and "'lab'" in message


def test_an_unreachable_storage_site_is_503(world: World, server: Gunicorn) -> None:
    answer = requests.get(_url(server, world.offline.id, "a.bin"), timeout=60)
    assert answer.status_code == 503
    assert "'offline'" in answer.json()["error"]["message"]
