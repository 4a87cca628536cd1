"""`GET /datasets/<id>/archive` (pointer archive and materialised zip) and `dshub get`."""

from __future__ import annotations

import http.client
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from dshub.download import compute_hash
from tests.archive.conftest import GOOD, HOSTILE_NAMES, ArchiveWorld
from tests.download.world import CRLF_TEXT, SEED_PATH, md5
from tests.receiver.serving import ROOT, Gunicorn

V1_FILES = ("v1/seed", "images/cat0.png", "images/cat1.png", "images/sub/x.jpg", "model.bin")


def _get(server: Gunicorn, world: ArchiveWorld, pid: int, **params: Any) -> requests.Response:
    token = params.pop("token", world.base.tokens["reporter"])
    headers = {"PRIVATE-TOKEN": token} if token else {}
    return requests.get(
        f"{server.url}/api/v1/datasets/{pid}/archive", params=params, headers=headers, timeout=60
    )


def _expected_v1(world: ArchiveWorld) -> dict[str, bytes]:
    files = world.base.files
    expected = {name: files[name] for name in V1_FILES if not name.startswith("v1/")}
    expected[SEED_PATH] = files["v1/seed"]
    expected["docs/notes.md"] = files["docs/notes.md"]
    expected["README.md"] = world.base.cats.files.raw("README.md", ref="v0.1.0")
    return expected


def _unpack(data: bytes) -> tuple[dict[str, bytes], str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        names = [i.filename for i in infos]
        assert names[-1] == "MANIFEST.md5"
        contents = {n: archive.read(n) for n in names}
    manifest = contents.pop("MANIFEST.md5").decode()
    return contents, manifest


def _verify_manifest(contents: dict[str, bytes], manifest: str) -> dict[str, tuple[str, str]]:
    """Check every line as `md5sum -c` would, and each recorded hash with its own kind."""
    recorded: dict[str, tuple[str, str]] = {}
    pending: tuple[str, str] | None = None
    for line in manifest.splitlines():
        if line.startswith("# ") and line.split(" ")[1] in ("md5", "md5-dos2unix", "git-sha1"):
            _, kind, value = line.split(" ")
            pending = (kind, value)
        elif line and not line.startswith("#"):
            digest, path = line.split("  ", 1)
            assert md5(contents[path]) == digest, path
            assert pending is not None
            recorded[path] = pending
            pending = None
    assert sorted(recorded) == sorted(contents)
    for path, (kind, value) in recorded.items():
        local = Path(os.environ.get("TMPDIR", "/tmp")) / f"manifest-check-{os.getpid()}"
        local.write_bytes(contents[path])
        with local.open("rb") as handle:
            assert compute_hash(handle, kind) == value, path
        local.unlink()
    return recorded


# ---------------------------------------------------------------------------- pointers


def test_pointer_archive_holds_the_pointers_in_zip_and_tar_gz(
    world: ArchiveWorld, server: Gunicorn
) -> None:
    cats, sha = world.base.cats, world.base.shas["v0.1.0"]
    answer = _get(server, world, cats.id, ref="v0.1.0", format="zip")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/zip"
    assert f'filename="cats-v0.1.0-{sha}.zip"' in answer.headers["Content-Disposition"]
    assert answer.headers["X-Dshub-Commit"] == sha
    names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    prefix = f"cats-v0.1.0-{sha}/"
    assert f"{prefix}images.dvc" in names
    assert f"{prefix}model.bin.dvc" in names
    assert f"{prefix}{SEED_PATH}.dvc" in names
    assert not any(n.endswith("model.bin") or n.endswith("cat0.png") for n in names)
    pointer = zipfile.ZipFile(io.BytesIO(answer.content)).read(f"{prefix}model.bin.dvc")
    assert md5(world.base.files["model.bin"]).encode() in pointer

    tgz = _get(server, world, cats.id, ref="v0.1.0", format="tar.gz", path="dataset")
    assert tgz.status_code == 200, tgz.text
    assert tgz.headers["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(tgz.content), mode="r:gz") as tar:
        files = sorted(m.name for m in tar.getmembers() if m.isfile())
    folder = f"cats-v0.1.0-{sha}-dataset/dataset/VITVI"
    assert files == [f"{folder}/.gitignore", f"{folder}/{SEED_PATH.rsplit('/', 1)[1]}.dvc"]

    missing = _get(server, world, cats.id, ref="v0.1.0", path="images")
    assert missing.status_code == 404
    assert "materialize=1" in missing.json()["error"]["message"]
    bad = _get(server, world, cats.id, ref="v0.1.0", format="rar")
    assert bad.status_code == 400
    assert "format must be one of" in bad.json()["error"]["message"]


# ---------------------------------------------------------------------------- materialised


def test_materialised_zip_at_v010_unpacks_to_that_versions_bytes(
    world: ArchiveWorld, server: Gunicorn
) -> None:
    answer = _get(server, world, world.base.cats.id, ref="v0.1.0", materialize="1")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/zip"
    assert "cats-v0.1.0-data.zip" in answer.headers["Content-Disposition"]
    assert "Content-Length" not in answer.headers  # streamed
    contents, manifest = _unpack(answer.content)
    assert contents == _expected_v1(world)
    recorded = _verify_manifest(contents, manifest)
    assert recorded["model.bin"] == ("md5", md5(world.base.files["model.bin"]))
    assert recorded["docs/notes.md"][0] == "git-sha1"
    assert f"commit {world.base.shas['v0.1.0']}" in manifest
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.getinfo("model.bin").file_size == len(world.base.files["model.bin"])


def test_materialised_zip_of_a_tracked_directory_and_of_a_live_branch(
    world: ArchiveWorld, server: Gunicorn
) -> None:
    files = world.base.files
    answer = _get(server, world, world.base.cats.id, ref="v0.2.0", materialize="1", path="images")
    assert answer.status_code == 200, answer.text
    contents, manifest = _unpack(answer.content)
    assert contents == {
        p: files[p] for p in ("images/cat0.png", "images/cat1.png", "images/sub/x.jpg")
    }
    _verify_manifest(contents, manifest)
    assert "path 'images'" in manifest

    # `feature` is not indexed: the files are read live, the answer is the same kind.
    live = _get(server, world, world.base.cats.id, ref="feature", materialize="1", path="feature")
    assert live.status_code == 200, live.text
    contents, manifest = _unpack(live.content)
    assert contents == {"feature/new.bin": files["feature/new.bin"]}
    _verify_manifest(contents, manifest)


def test_dvc2_file_is_named_with_its_own_hash_kind(world: ArchiveWorld, server: Gunicorn) -> None:
    answer = _get(server, world, world.base.cats.id, ref="v0.3.0", materialize="1", path="legacy")
    assert answer.status_code == 200, answer.text
    contents, manifest = _unpack(answer.content)
    assert contents == {"legacy/notes.txt": CRLF_TEXT}
    recorded = _verify_manifest(contents, manifest)
    lf = md5(CRLF_TEXT.replace(b"\r\n", b"\n"))
    assert recorded["legacy/notes.txt"] == ("md5-dos2unix", lf)
    assert f"{md5(CRLF_TEXT)}  legacy/notes.txt" in manifest  # the bytes' md5 differs


@pytest.mark.parametrize("label", sorted(HOSTILE_NAMES))
def test_hostile_entry_names_are_refused_before_streaming(
    world: ArchiveWorld, server: Gunicorn, label: str
) -> None:
    pid = world.hostile.id
    answer = _get(server, world, pid, materialize="1", path=label)
    assert answer.status_code == 422, answer.text
    message = answer.json()["error"]["message"]
    assert "not a safe file name" in message and "nothing was sent" in message
    whole = _get(server, world, pid, materialize="1")
    assert whole.status_code == 422  # the whole dataset holds them too
    assert not whole.content.startswith(b"PK")


def test_clashes_and_duplicates_are_refused_and_a_clean_folder_is_not(
    world: ArchiveWorld, server: Gunicorn
) -> None:
    pid = world.hostile.id
    clash = _get(server, world, pid, materialize="1", path="clash")
    assert clash.status_code == 422
    assert (
        "'clash/x' is both a file and the folder of 'clash/x/y'" in clash.json()["error"]["message"]
    )
    duplicate = _get(server, world, pid, materialize="1", path="dup")
    assert duplicate.status_code == 422
    assert "'dup/same.txt' is a second entry's name" in duplicate.json()["error"]["message"]
    good = _get(server, world, pid, materialize="1", path="good")
    assert good.status_code == 200, good.text
    contents, _ = _unpack(good.content)
    assert contents == {"good/fine.txt": GOOD}


def _raw_transfer(server: Gunicorn, path: str, token: str) -> tuple[int, bytes, Exception | None]:
    """Read an answer with http.client, keeping what arrived before the transfer broke."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    conn.request("GET", path, headers={"PRIVATE-TOKEN": token})
    response = conn.getresponse()
    received = bytearray()
    failure: Exception | None = None
    try:
        while chunk := response.read(65536):
            received += chunk
    except http.client.IncompleteRead as exc:
        received += exc.partial
        failure = exc
    except ConnectionError as exc:
        failure = exc
    finally:
        conn.close()
    return response.status, bytes(received), failure


@pytest.mark.parametrize(
    ("dataset", "query"),
    [
        ("cats", "ref=v0.3.0&materialize=1"),  # missing/ghost.bin was never pushed
        ("hostile", "materialize=1&path=bad"),  # the object's bytes are not the pointer's
    ],
)
def test_a_storage_failure_mid_zip_breaks_the_transfer(
    world: ArchiveWorld, server: Gunicorn, dataset: str, query: str
) -> None:
    project = world.base.cats if dataset == "cats" else world.hostile
    path = f"/api/v1/datasets/{project.id}/archive?{query}"
    status, received, failure = _raw_transfer(server, path, world.base.tokens["reporter"])
    assert status == 200
    assert isinstance(failure, http.client.IncompleteRead | ConnectionError)
    assert received.startswith(b"PK")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(received))


# ---------------------------------------------------------------------------- permissions


CALLERS = ("anonymous", "outsider", "guest", "reporter", "admin")


@pytest.mark.parametrize("mode", [{"format": "zip"}, {"materialize": "1"}])
@pytest.mark.parametrize("caller", CALLERS)
def test_permission_matrix(
    world: ArchiveWorld, server: Gunicorn, caller: str, mode: dict[str, str]
) -> None:
    token = None if caller == "anonymous" else world.base.tokens[caller]
    params = {"ref": "v0.1.0", "path": "docs", **mode}
    private = _get(server, world, world.base.cats.id, token=token, **params)
    public = _get(server, world, world.base.dogs.id, token=token, **{**mode, "path": "pics"})
    assert public.status_code == 200, public.text
    if caller in ("reporter", "admin"):
        assert private.status_code == 200, private.text
        return
    nonexistent = _get(server, world, 999999, token=token, **params)
    assert private.status_code == nonexistent.status_code == 404
    assert private.json()["error"]["code"] == nonexistent.json()["error"]["code"]
    assert private.json()["error"]["message"] == f"dataset {world.base.cats.id} not found"


# ---------------------------------------------------------------------------- dshub get


def _dshub(server: Gunicorn, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSHUB_URL": server.url, "DSHUB_CONFIG": "/nonexistent/dshub.json"}
    env["DSHUB_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "dshub", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_dshub_get_of_a_folder_verifies_and_resumes(
    world: ArchiveWorld, server: Gunicorn, tmp_path: Path
) -> None:
    files, out = world.base.files, tmp_path / "got"
    args = ("get", "--project-id", str(world.base.cats.id), "--ref", "v0.2.0", "--output", str(out))
    first = _dshub(server, world.base.tokens["reporter"], *args, "--include", "images/*")
    assert first.returncode == 0, first.stderr
    want = {p: files[p] for p in ("images/cat0.png", "images/cat1.png", "images/sub/x.jpg")}
    assert _tree(out) == want
    assert "3 downloaded" in first.stdout

    # Interrupted copy: one file half-written as .part, one damaged, one intact.
    (out / "images/cat1.png").unlink()
    (out / "images/cat1.png.part").write_bytes(files["images/cat1.png"][:1000])
    (out / "images/sub/x.jpg").write_bytes(b"damaged")
    again = _dshub(server, world.base.tokens["reporter"], *args, "--include", "images/*")
    assert again.returncode == 0, again.stderr
    assert _tree(out) == want
    assert "2 downloaded (1 resumed), 1 already present" in again.stdout

    everything = _dshub(server, world.base.tokens["reporter"], *args, "--quiet")
    assert everything.returncode == 0, everything.stderr
    got = _tree(out)
    assert got["model.bin"] == files["model.bin"]
    assert got[SEED_PATH] == files["v2/seed"]
    assert "images.dvc" not in got and "docs/notes.md" in got


def test_dshub_get_never_writes_a_hostile_name(
    world: ArchiveWorld, server: Gunicorn, tmp_path: Path
) -> None:
    out = tmp_path / "inside" / "out"
    args = ("get", "--project-id", str(world.hostile.id), "--output", str(out))
    result = _dshub(server, world.base.tokens["reporter"], *args, "--include", "backslash/*")
    assert result.returncode != 0
    assert "not a safe local name" in result.stderr
    assert not (tmp_path / "inside").exists() or not any((tmp_path / "inside").rglob("*.txt"))
    good = _dshub(server, world.base.tokens["reporter"], *args, "--include", "good/*")
    assert good.returncode == 0, good.stderr
    assert _tree(out) == {"good/fine.txt": GOOD}
