"""`dshub upload | rm | mv` against a gunicorn-served dshub (REST only, real processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.download.world import image
from tests.receiver.serving import start_gunicorn
from tests.uploads.conftest import UploadWorld, make_dataset

ROOT = Path(__file__).resolve().parents[2]


def _dshub(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "DSHUB_URL": url, "DSHUB_TOKEN": token, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "dshub", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=ROOT,
    )


def test_upload_a_directory_then_rm_and_mv_from_the_command_line(
    upload_world: UploadWorld, tmp_path: Path
) -> None:
    world = upload_world
    source = tmp_path / "plates"
    (source / "day1").mkdir(parents=True)
    for i in range(6):
        (source / "day1" / f"p{i}.png").write_bytes(image("PNG", (10 + i, 10), seed=i))
    (source / "notes.bin").write_bytes(b"n" * 3000)
    server = start_gunicorn(tmp_path / "gunicorn", world.config, workers=2)
    try:
        pid, token = str(world.pid), world.tokens["mia"]
        done = _dshub(
            server.url,
            token,
            "upload",
            "--project-id",
            pid,
            "--layout",
            "directory",
            "-m",
            "Plates",
            "--quiet",
            str(source),
        )
        assert done.returncode == 0, done.stderr
        assert "commit " in done.stdout and "created   plates/day1/p0.png" in done.stdout
        assert b"nfiles: 7" in world.pointer("plates.dvc")
        loose = _dshub(
            server.url,
            token,
            "upload",
            "--project-id",
            pid,
            "--folder",
            "extra",
            "--quiet",
            str(source / "notes.bin"),
        )
        assert loose.returncode == 0, loose.stderr
        moved = _dshub(
            server.url, token, "mv", "--project-id", pid, "extra/notes.bin", "extra/renamed.bin"
        )
        assert moved.returncode == 0 and "moved     extra/renamed.bin" in moved.stdout, moved.stderr
        removed = _dshub(server.url, token, "rm", "--project-id", pid, "plates/day1/p5.png")
        assert removed.returncode == 0, removed.stderr
        assert b"nfiles: 6" in world.pointer("plates.dvc")
        again = _dshub(
            server.url,
            token,
            "upload",
            "--project-id",
            pid,
            "--folder",
            "extra",
            "--quiet",
            str(source / "notes.bin"),
        )
        assert again.returncode == 0 and "created" in again.stdout  # renamed, so new here

        # Exit codes as the existing client's: 2 refused input, 3 not found, 4 no access.
        empty = make_dataset(world, world.group, "empty")
        no_site = _dshub(
            server.url,
            token,
            "upload",
            "--project-id",
            str(empty.id),
            "--quiet",
            str(source / "notes.bin"),
        )
        assert no_site.returncode == 2 and "select a storage site first" in no_site.stderr
        missing = _dshub(server.url, token, "rm", "--project-id", pid, "nope.bin")
        assert missing.returncode == 3
        guest = _dshub(
            server.url, world.tokens["gus"], "rm", "--project-id", pid, "extra/renamed.bin"
        )
        assert guest.returncode == 4 and token not in guest.stderr
    finally:
        server.stop()
