"""Redirect mode (302 to a presigned S3 URL) and a 300 MB file streamed within the memory budget."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import requests

from tests.download.world import SEED_PATH, World, blob
from tests.receiver.serving import ROOT, Gunicorn, start_gunicorn

LARGE = 300 * 1024 * 1024
RSS_BUDGET = 250 * 1024 * 1024


@pytest.fixture(scope="module")
def redirecting(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    started = start_gunicorn(
        tmp_path_factory.mktemp("redirect"), world.env(DSHUB_DOWNLOAD_MODE="redirect"), workers=1
    )
    yield started
    started.stop()


def test_redirect_mode_sends_get_to_a_presigned_url_and_answers_head_itself(
    world: World, redirecting: Gunicorn
) -> None:
    url = f"{redirecting.url}/api/v1/datasets/{world.cats.id}/files/{SEED_PATH}"
    admin = {"PRIVATE-TOKEN": world.tokens["admin"]}
    answer = requests.get(
        url, params={"ref": "v0.1.0"}, headers=admin, allow_redirects=False, timeout=30
    )
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(world.bucket.endpoint_url)
    assert urlsplit(location).path.startswith(f"/{world.bucket.name}/team/{world.cats.id}/")
    assert "Signature" in location or "X-Amz-Signature" in location
    followed = requests.get(location, timeout=30)  # no dshub token goes to storage
    assert followed.content == world.files["v1/seed"]
    assert "attachment" in followed.headers["Content-Disposition"]
    head = requests.head(url, params={"ref": "v0.1.0"}, headers=admin, timeout=30)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == len(world.files["v1/seed"])
    # A local site has no presigned URLs: it always streams.
    local = requests.get(
        f"{redirecting.url}/api/v1/datasets/{world.dogs.id}/files/pics/photo.jpg",
        allow_redirects=False,
        timeout=30,
    )
    assert local.status_code == 200 and local.content == world.files["dogs/pics/photo.jpg"]


def test_dshub_download_follows_the_redirect(
    world: World, redirecting: Gunicorn, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DSHUB_URL": redirecting.url,
        "DSHUB_TOKEN": world.tokens["admin"],
        "DSHUB_CONFIG": "/nonexistent/dshub.json",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dshub",
            "download",
            "--project-id",
            str(world.cats.id),
            "--ref",
            "v0.1.0",
            "--output",
            str(tmp_path),
            "model.bin",
            "model.bin",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.bin").read_bytes() == world.files["model.bin"]


def _large_dataset(world: World) -> tuple[int, str]:
    """A dataset whose one file is 300 MB, written straight into the local site."""
    group = world.admin.groups.list(search="pets")[0]
    project = world.admin.projects.create(
        {"name": "big", "namespace_id": group.id, "visibility": "public"}
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "disk"})
    digest = hashlib.md5(usedforsecurity=False)
    base = blob(99, 1024 * 1024)
    staging = world.local_site / "staging.bin"
    with staging.open("wb") as out:
        for index in range(LARGE // len(base)):
            chunk = index.to_bytes(8, "big") + base[8:]
            digest.update(chunk)
            out.write(chunk)
    md5 = digest.hexdigest()
    target = world.local_site / "sets" / str(project.id) / "files" / "md5" / md5[:2] / md5[2:]
    target.parent.mkdir(parents=True)
    staging.rename(target)
    pointer = f"outs:\n- md5: {md5}\n  size: {LARGE}\n  hash: md5\n  path: big.bin\n"
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "A large file",
            "actions": [
                {"action": "create", "file_path": ".dvc/config", "content": "[core]\n"},
                {"action": "create", "file_path": "big.bin.dvc", "content": pointer},
            ],
        }
    )
    world.sync(project.id)
    return project.id, md5


@pytest.fixture(scope="module")
def large(world: World) -> tuple[int, str]:
    return _large_dataset(world)


def test_a_300_mb_file_streams_with_the_worker_under_the_memory_budget(
    world: World, server: Gunicorn, large: tuple[int, str]
) -> None:
    project_id, expected = large
    workers = psutil.Process(server.process.pid).children()
    assert len(workers) == 1
    worker = workers[0]
    digest = hashlib.md5(usedforsecurity=False)
    peak = worker.memory_info().rss
    received = 0
    with requests.get(
        f"{server.url}/api/v1/datasets/{project_id}/files/big.bin", stream=True, timeout=60
    ) as answer:
        assert answer.status_code == 200
        assert int(answer.headers["Content-Length"]) == LARGE
        for index, chunk in enumerate(answer.iter_content(1024 * 1024)):
            digest.update(chunk)
            received += len(chunk)
            if index % 16 == 0:
                peak = max(peak, worker.memory_info().rss)
    assert received == LARGE and digest.hexdigest() == expected
    assert peak < RSS_BUDGET, f"worker RSS reached {peak / 2**20:.0f} MiB"
    assert peak < LARGE / 2  # far below the file: nothing buffered it whole


def test_a_client_that_goes_away_releases_the_reader_and_the_object(
    world: World, server: Gunicorn, large: tuple[int, str]
) -> None:
    project_id, expected = large
    worker = psutil.Process(server.process.pid).children()[0]
    with requests.get(
        f"{server.url}/api/v1/datasets/{project_id}/files/big.bin", stream=True, timeout=60
    ) as answer:
        received = 0
        for chunk in answer.iter_content(1024 * 1024):
            received += len(chunk)
            if received >= 5 * 1024 * 1024:
                break
        assert any(expected[2:] in f.path for f in worker.open_files())
        threads_streaming = worker.num_threads()  # includes the read-ahead thread
    # The connection is closed mid-body: the object is closed and no reader thread lingers.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        still_open = any(expected[2:] in f.path for f in worker.open_files())
        if not still_open and worker.num_threads() < threads_streaming:
            break
        time.sleep(0.05)
    assert not any(expected[2:] in f.path for f in worker.open_files())
    assert worker.num_threads() < threads_streaming
