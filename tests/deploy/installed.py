"""Building dshub's wheel from the working tree and installing it into a fresh virtualenv.

Used by the wheel test and by `make lint-deploy` (systemd-analyze verify needs the installed
`dshub` the unit files start). The wheel is built from a copy of the files git would commit
(tracked plus untracked-but-not-ignored), so a stale `build/` folder or an ignored file in
the checkout can never leak into it.

The venv gets its dependencies with `uv pip install -c constraints.txt` (uv is pinned in the
test extra): measured on the 2-core development machine, pip takes about 75 s for dshub's
~150 dependencies and uv about 10 s, resolving the same pins from the same index. The wheel
is built with `uv build --wheel` for the same reason (7 s against `pip wheel`'s 20 s; the
two wheels hold the same files).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Installed:
    """A fresh virtualenv with dshub's wheel installed, and how long it took."""

    wheel: Path
    venv: Path
    build_seconds: float
    install_seconds: float

    @property
    def bin(self) -> Path:
        """The venv's bin/ folder (`dshub`, `python`, `gunicorn`, `dvc`)."""
        return self.venv / "bin"


def source_files(root: Path = ROOT) -> list[str]:
    """Relative paths of the regular files git would commit from `root`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    names = []
    for raw in listed:
        name = raw.decode()
        path = root / name
        # Deleted-but-tracked files and symlinks (node_modules) are not part of the tree.
        if name and path.is_file() and not path.is_symlink():
            names.append(name)
    return sorted(names)


def build_wheel(workdir: Path, root: Path = ROOT) -> tuple[Path, float]:
    """Build the wheel from a clean copy of `root`; returns its path and the seconds taken."""
    started = time.monotonic()
    source = workdir / "source"
    for name in source_files(root):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    dist = workdir / "dist"
    # uv's build frontend: the same PEP 517 build in an isolated environment with the
    # `build-system.requires` of pyproject.toml (what `pip wheel --no-deps .` does), but its
    # build environment is cached: about 7 s here against pip's 20 s.
    subprocess.run(
        [sys.executable, "-m", "uv", "build", "--wheel", "--quiet", "--out-dir", str(dist), "."],
        cwd=source,
        check=True,
        capture_output=True,
        env=clean_environment(),
    )
    (wheel,) = dist.glob("dshub-*.whl")
    return wheel, time.monotonic() - started


def clean_environment() -> dict[str, str]:
    """The process environment without anything pointing into the source checkout or its venv.

    No PYTHONPATH, VIRTUAL_ENV, coverage hooks or DSHUB_* settings; PATH keeps the system
    folders (git) but drops the development venv's bin/.
    """
    dev_bin = str(Path(sys.executable).parent)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DSHUB_", "COV_CORE_", "PYTEST_"))
        and key not in {"PYTHONPATH", "VIRTUAL_ENV", "PROMETHEUS_MULTIPROC_DIR", "PYTHONHOME"}
    }
    env["PATH"] = os.pathsep.join(
        part for part in os.environ.get("PATH", "").split(os.pathsep) if part and part != dev_bin
    )
    return env


def install(workdir: Path, root: Path = ROOT) -> Installed:
    """Build the wheel and install it with its pinned dependencies into `workdir/venv`."""
    wheel, build_seconds = build_wheel(workdir, root)
    started = time.monotonic()
    venv = workdir / "venv"
    env = clean_environment()
    # The stdlib venv, without --system-site-packages: nothing of the development venv shows.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        capture_output=True,
        env=env,
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            "-c",
            str(root / "constraints.txt"),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"installing {wheel.name} failed:\n{result.stderr[-3000:]}")
    return Installed(wheel, venv, build_seconds, time.monotonic() - started)


def wheel_names(wheel: Path) -> list[str]:
    """Every member name of the wheel archive."""
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()
