"""The real `dvc` command against dshub's DVC remote: push with a person's token (basic auth)
or a CI job token, pull from a fresh clone, on a local and an S3 storage site, DVC 3 and
DVC 2 layouts. Nothing but dshub ever touches the storage sites here.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.dvc_remote.conftest import World
from tests.support.dataset_repo import DatasetRepo, image_bytes, object_key, pointer_md5

pytestmark = pytest.mark.slow


def _dvc(repo: DatasetRepo, *args: str) -> subprocess.CompletedProcess[str]:
    """Run dvc, returning the result whether it succeeded or not."""
    return subprocess.run(
        ["dvc", *args], cwd=repo.path, env=repo.env, capture_output=True, text=True, check=False
    )


def _write_images(repo: DatasetRepo, seed: int) -> dict[str, bytes]:
    files = {
        "a.bin": os.urandom(200_000),
        "images/cat0.png": image_bytes(seed),
        "images/sub/cat1.png": image_bytes(seed + 1, 5000),
        "images/sub/cat2.png": image_bytes(seed + 2, 1),
    }
    for path, data in files.items():
        repo.write(path, data)
    return files


def _expected_keys(repo: DatasetRepo, files: dict[str, bytes]) -> set[str]:
    import hashlib

    keys = {object_key(hashlib.md5(data).hexdigest()) for data in files.values()}
    keys.add(object_key(pointer_md5(repo, "images.dvc")))
    return keys


def _log_lines(world: World) -> list[dict[str, object]]:
    lines = []
    for text in world.server.log.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


def test_a_developer_pushes_and_a_reporter_pulls_identical_bytes_on_a_local_site(
    world: World,
) -> None:
    dev = world.clone("cats", "cats-dev", "dev")
    files = _write_images(dev, 1)
    dev.track("a.bin", "images")
    before = set(world.lab_files("cats"))
    # dvc push with basic auth, then git push (Developers push branches; main is protected)
    dev.commit_and_push("Add cats", branch="add-cats")
    stored = world.lab_files("cats")
    assert set(stored) - before == _expected_keys(dev, files)
    assert stored[object_key(pointer_md5(dev, "a.bin.dvc"))] == files["a.bin"]
    manifest = stored[object_key(pointer_md5(dev, "images.dvc"))]
    assert json.loads(manifest)[0]["relpath"] == "cat0.png"

    rep = world.clone("cats", "cats-rep", "rep")
    rep.git("checkout", "-q", "add-cats")
    rep.dvc("pull", "-q")
    for path, data in files.items():
        assert (rep.path / path).read_bytes() == data

    # A Reporter may read but not push: dvc fails and nothing new is stored.
    rep.write("b.bin", b"reporter bytes")
    rep.track("b.bin")
    refused = _dvc(rep, "push")
    assert refused.returncode != 0
    assert set(world.lab_files("cats")) == set(stored)
    assert world.staged_uploads() == []

    # The upload is logged with who and what, never with a token.
    logged = [line for line in _log_lines(world) if line.get("msg") == "dvc object stored"]
    pushed = [line for line in logged if line["key"] in set(stored) - before]
    assert {line["key"] for line in pushed} == set(stored) - before
    user_id = world.users["dev"][0].id
    assert {(line["by"], line["project_id"]) for line in pushed} == {
        (f"user {user_id}", world.pid("cats"))
    }
    text = world.server.log.read_text(errors="replace")
    assert all(world.token(name) not in text for name in world.users)


def test_push_and_fetch_through_dshub_on_an_s3_site_of_a_dataset_never_indexed(
    world: World,
) -> None:
    dev = world.clone("birds", "birds-dev", "dev")
    files = _write_images(dev, 7)
    dev.track("a.bin", "images")
    before = world.bucket_keys("birds")
    dev.commit_and_push("Add birds", branch="add-birds")
    assert world.bucket_keys("birds") - before == _expected_keys(dev, files)

    mia = world.clone("birds", "birds-mia", "mia")
    mia.git("checkout", "-q", "add-birds")
    mia.dvc("fetch", "-q")
    mia.dvc("checkout", "-q")
    for path, data in files.items():
        assert (mia.path / path).read_bytes() == data

    # Pushing again finds everything present and uploads nothing.
    again = _dvc(dev, "push")
    assert again.returncode == 0, again.stderr
    assert "Everything is up to date" in again.stdout + again.stderr


@pytest.mark.parametrize("auth", ["custom-header", "basic"])
def test_a_ci_job_of_the_dataset_pushes_with_its_job_token(world: World, auth: str) -> None:
    repo = world.clone("cats", f"cats-job-{auth}", "dev")
    token = world.job_token("cats")
    if auth == "custom-header":  # what dshub's CI components configure
        repo.dvc("remote", "modify", "--local", "dshub", "auth", "custom")
        repo.dvc("remote", "modify", "--local", "dshub", "custom_auth_header", "JOB-TOKEN")
    else:  # how GitLab runners authenticate git
        repo.dvc("remote", "modify", "--local", "dshub", "user", "gitlab-ci-token")
    repo.dvc("remote", "modify", "--local", "dshub", "password", token)
    data = os.urandom(4096)
    repo.write(f"job-{auth}.bin", data)
    repo.track(f"job-{auth}.bin")
    repo.dvc("push", "-q")
    key = object_key(pointer_md5(repo, f"job-{auth}.bin.dvc"))
    assert world.lab_files("cats")[key] == data
    logged = [line for line in _log_lines(world) if line.get("key") == key]
    assert [str(line["by"]).split()[0] for line in logged] == ["job"]


def test_dvc_3_pushes_and_pulls_a_dvc_2_pointer_through_the_legacy_layout(world: World) -> None:
    from dvc_data.hashfile.hash import file_md5

    repo = world.clone("cats", "cats-legacy", "dev")
    text = b"line1\r\nline2\r\n" * 100
    target = repo.write("notes.txt", text)
    oid = file_md5(str(target), name="md5-dos2unix")  # DVC 2's id: of the LF text
    assert oid != __import__("hashlib").md5(text).hexdigest()
    # A DVC 2 pointer (no `hash:`) and its object in DVC 2's cache layout.
    repo.write(
        "notes.txt.dvc", f"outs:\n- md5: {oid}\n  size: {len(text)}\n  path: notes.txt\n".encode()
    )
    repo.write(f".dvc/cache/{oid[:2]}/{oid[2:]}", text)
    repo.git("add", "notes.txt.dvc")
    repo.git("commit", "-q", "-m", "A DVC 2 pointer")
    repo.dvc("push", "-q")
    repo.git("push", "-q", "origin", "HEAD:legacy")
    assert world.lab_files("cats")[object_key(oid, legacy=True)] == text  # CRLF bytes kept

    fresh = world.clone("cats", "cats-legacy-pull", "rep")
    fresh.git("checkout", "-q", "legacy")
    fresh.dvc("pull", "-q", "notes.txt")
    assert (fresh.path / "notes.txt").read_bytes() == text
