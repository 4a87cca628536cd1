"""`dshub download` and `dshub ls` end to end against the gunicorn-served API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.download.world import CRLF_TEXT, SEED_NAME, SEED_PATH, World, md5
from tests.receiver.serving import ROOT, Gunicorn
from tests.support.services import free_port


def _dshub(
    world: World, server: Gunicorn | str, token: str | None, *args: str
) -> subprocess.CompletedProcess[str]:
    url = server if isinstance(server, str) else server.url
    env = {**os.environ, "DSHUB_URL": url, "DSHUB_CONFIG": "/nonexistent/dshub.json"}
    env.pop("DSHUB_TOKEN", None)
    if token:
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


def test_download_in_the_seed_shape_writes_the_versions_bytes(
    world: World, server: Gunicorn, tmp_path: Path
) -> None:
    out = tmp_path / "jisap-cli2"
    result = _dshub(
        world,
        server,
        world.tokens["reporter"],
        "download",
        "--project-id",
        str(world.cats.id),
        "--ref",
        "v0.1.0",
        "--output",
        str(out),
        SEED_NAME,
        f"/{SEED_PATH}",
        "cat1.png",
        "/images/cat1.png",
    )
    assert result.returncode == 0, result.stderr
    assert (out / SEED_NAME).read_bytes() == world.files["v1/seed"]
    assert (out / "cat1.png").read_bytes() == world.files["images/cat1.png"]
    assert "md5:" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([SEED_NAME, "cat1.png"])


def test_a_dvc2_text_file_verifies_with_the_legacy_hash(
    world: World, server: Gunicorn, tmp_path: Path
) -> None:
    result = _dshub(
        world,
        server,
        world.tokens["admin"],
        "download",
        "--project-id",
        str(world.cats.id),
        "--ref",
        "v0.3.0",
        "--output",
        str(tmp_path),
        "notes.txt",
        "legacy/notes.txt",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "notes.txt").read_bytes() == CRLF_TEXT
    assert "md5-dos2unix:" in result.stdout


def test_an_interrupted_download_resumes_from_the_part_file(
    world: World, server: Gunicorn, tmp_path: Path
) -> None:
    data = world.files["model.bin"]
    (tmp_path / "model.bin.part").write_bytes(data[:1_234_567])
    result = _dshub(
        world,
        server,
        world.tokens["admin"],
        "download",
        "--project-id",
        str(world.cats.id),
        "--ref",
        "v0.1.0",
        "--output",
        str(tmp_path),
        "model.bin",
        "model.bin",
    )
    assert result.returncode == 0, result.stderr
    assert "resumed at byte 1234567" in result.stdout
    assert (tmp_path / "model.bin").read_bytes() == data
    assert not (tmp_path / "model.bin.part").exists()


def test_a_corrupted_object_fails_the_checksum_and_keeps_nothing(
    world: World, server: Gunicorn, tmp_path: Path
) -> None:
    original = world.files["dogs/pics/victim.bin"]
    objects = world.local_site / "sets" / str(world.dogs.id) / "files" / "md5"
    digest = md5(original)
    stored = objects / digest[:2] / digest[2:]
    stored.chmod(0o644)
    stored.write_bytes(b"X" * len(original))
    result = _dshub(
        world,
        server,
        None,
        "download",
        "--project-id",
        str(world.dogs.id),
        "--ref",
        "v1",
        "--output",
        str(tmp_path / "out"),
        "victim.bin",
        "pics/victim.bin",
    )
    assert result.returncode == 6, result.stderr
    assert "hash to" in result.stderr and digest in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_exit_codes_tell_not_found_no_access_and_network_failure_apart(
    world: World, server: Gunicorn, tmp_path: Path
) -> None:
    args = (
        "download",
        "--project-id",
        str(world.cats.id),
        "--ref",
        "v0.1.0",
        "--output",
        str(tmp_path),
        "a.bin",
        "model.bin",
    )
    hidden = _dshub(world, server, world.tokens["guest"], *args)
    assert hidden.returncode == 3 and "not found" in hidden.stderr
    unknown_ref = _dshub(world, server, world.tokens["admin"], *args[:4], "v7", *args[5:])
    assert unknown_ref.returncode == 3 and "'v7'" in unknown_ref.stderr
    refused = _dshub(world, server, "glpat-wrong", *args)
    assert refused.returncode == 4
    offline = _dshub(world, f"http://127.0.0.1:{free_port()}", world.tokens["admin"], *args)
    assert offline.returncode == 5 and "cannot reach" in offline.stderr
    missing = _dshub(
        world,
        server,
        world.tokens["admin"],
        "download",
        "--project-id",
        str(world.cats.id),
        "--ref",
        "v0.3.0",
        "--output",
        str(tmp_path),
        "g.bin",
        "missing/ghost.bin",
    )
    assert missing.returncode == 7 and "'lab'" in missing.stderr


def test_ls_lists_a_folder_level(world: World, server: Gunicorn) -> None:
    result = _dshub(
        world,
        server,
        world.tokens["admin"],
        "ls",
        "--project-id",
        str(world.cats.id),
        "--ref",
        "v0.1.0",
        "images",
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines == [
        ["file", str(len(world.files["images/cat0.png"])), "images/cat0.png"],
        ["file", "3000", "images/cat1.png"],
        ["dir", "-", "images/sub"],
    ]
