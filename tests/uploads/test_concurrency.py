"""Two writers on one branch: both land when they touch different files; the same path changed
by both is a 409 for the later one, with nothing written."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import gitlab
import pytest

from indexer.data.storage import load_credentials, open_objects
from indexer.sites.registry import SiteRegistry
from indexer.write.changes import Operations
from indexer.write.errors import WriteConflict
from indexer.write.files import WriteRequest, write_files
from indexer.write.objects import stage_stream
from tests.uploads.conftest import UploadWorld
from webhook_service.app_settings import services as app_services


def test_two_concurrent_uploads_of_different_files_both_land(upload_world: UploadWorld) -> None:
    world = upload_world
    assert world.upload("mia", {"seed.bin": b"seed"}, folder="shared").status_code == 201
    assert world.upload("mia", {"s.bin": b"s"}, folder="dir", layout="directory").status_code == 201
    answers: dict[str, Any] = {}

    def upload(name: str, folder: str) -> None:
        client = world.app.test_client()
        headers = {"PRIVATE-TOKEN": world.tokens["mia"]}
        answers[name] = client.post(
            f"/api/v1/datasets/{world.pid}/files",
            headers=headers,
            data={"folder": folder, "files[]": [(io.BytesIO(name.encode() * 10), name)]},
            content_type="multipart/form-data",
        )

    threads = [
        threading.Thread(target=upload, args=(name, folder))
        for name, folder in (
            ("one.bin", "shared"),
            ("two.bin", "shared"),
            ("x.bin", "dir"),
            ("y.bin", "dir"),
        )
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 201)
    lines = world.pointer("shared/.gitignore").decode().splitlines()
    assert lines[0] == "/seed.bin" and sorted(lines) == ["/one.bin", "/seed.bin", "/two.bin"]
    assert b"nfiles: 3" in world.pointer("dir.dvc")


class _Racing:
    """A python-gitlab project whose first commit is preceded by someone else's commit."""

    def __init__(self, project: Any, competing: Any) -> None:
        self._project = project
        self._competing = competing
        self.commits = self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._project, name)

    def create(self, data: dict[str, Any]) -> Any:
        competing, self._competing = self._competing, None
        if competing is not None:
            competing()
        return self._project.commits.create(data)


def _request(world: UploadWorld, tmp_path: Path, name: str, data: bytes) -> WriteRequest:
    chunks = iter((data,))
    staged = stage_stream(lambda: next(chunks, b""), tmp_path, 1 << 20, lambda: WriteConflict("x"))
    return WriteRequest(
        project_id=world.pid,
        branch="main",
        message="race",
        operations=Operations(puts=[(name, staged.md5, staged.size)]),
        staged={staged.md5: staged},
    )


def _store(world: UploadWorld) -> Any:
    site = app_services(world.app).settings
    credentials = load_credentials(site.storage_credentials_file)
    registered = SiteRegistry(site.index_url).get("moto")
    assert registered is not None
    return open_objects(registered, world.pid, credentials)


def test_a_moved_head_is_re_derived_for_shared_files(
    upload_world: UploadWorld, tmp_path: Path
) -> None:
    world = upload_world
    assert world.upload("mia", {"a.bin": b"a"}, folder="f").status_code == 201
    mia = gitlab.Gitlab(world.sandbox.url, private_token=world.tokens["mia"])
    project = mia.projects.get(world.pid, lazy=True)

    def competing() -> None:
        answer = world.upload("mia", {"b.bin": b"b"}, folder="f")
        assert answer.status_code == 201

    result = write_files(
        _Racing(project, competing),
        _store(world),
        _request(world, tmp_path, "f/c.bin", b"c"),
        tmp_path,
    )
    assert result.attempts == 2
    assert set(world.pointer("f/.gitignore").decode().split()) == {"/a.bin", "/b.bin", "/c.bin"}


def test_the_same_path_changed_by_both_is_409_and_nothing_is_written(
    upload_world: UploadWorld, tmp_path: Path
) -> None:
    world = upload_world
    assert world.upload("mia", {"a.bin": b"a"}, folder="f").status_code == 201
    mia = gitlab.Gitlab(world.sandbox.url, private_token=world.tokens["mia"])
    project = mia.projects.get(world.pid, lazy=True)

    def competing() -> None:
        assert world.upload("mia", {"a.bin": b"theirs"}, folder="f").status_code == 201

    with pytest.raises(WriteConflict) as exc:
        write_files(
            _Racing(project, competing),
            _store(world),
            _request(world, tmp_path, "f/a.bin", b"ours"),
            tmp_path,
        )
    assert "f/a.bin was changed by another commit" in exc.value.message
    head = world.admin.projects.get(world.pid).commits.list(get_all=False)[0]
    assert head.title == "Upload 1 file to f"  # theirs, and nothing after it
    assert b"theirs" not in world.pointer("f/a.bin.dvc")  # a pointer, not the bytes
