"""The files of a new dataset's first commit: `dvc init`'s own, a README and the pipeline.

The DVC files are produced by running the installed DVC's `dvc init` once per process in a
scratch git repository (so they are exactly what `dvc init` writes for this DVC version,
never a hand-kept copy); the pipeline is `gitlab-ci/dataset.gitlab-ci.yml` as shipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import threading
from importlib import metadata
from pathlib import Path

from indexer.data.dvc_env import dvc_environment
from indexer.errors import Unavailable

DVC_FILES = (".dvc/config", ".dvc/.gitignore", ".dvcignore")
# Where the dataset pipeline is: in a source checkout, the repository's own folder (an
# editable install's copy under share/ may be older); installed, the wheel's data files
# (`<prefix>/share/dshub/`, pyproject.toml's `data-files`).
PIPELINE_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "gitlab-ci" / "dataset.gitlab-ci.yml",
    Path(sysconfig.get_path("data")) / "share" / "dshub" / "gitlab-ci" / "dataset.gitlab-ci.yml",
)
_cache: dict[str, str] = {}
_lock = threading.Lock()


def dvc_init_files(state_dir: Path) -> dict[str, str]:
    """`{path: text}` of what `dvc init` writes for the installed DVC.

    Computed once per deployment: kept in memory, and in `state_dir/dvc-init-<version>.json`
    so every other web process (and a restart) reads it instead of running DVC again.
    `state_dir` also holds DVC's config and site cache for the run (see `indexer.data.dvc_env`),
    so it never reads a developer's own DVC configuration or calls home.
    """
    with _lock:
        if not _cache:
            _cache.update(_load_or_run(state_dir))
        return dict(_cache)


def _load_or_run(state_dir: Path) -> dict[str, str]:
    saved = state_dir / f"dvc-init-{metadata.version('dvc')}.json"
    try:
        loaded = json.loads(saved.read_text(encoding="utf-8"))
        if isinstance(loaded, dict) and set(loaded) == set(DVC_FILES):
            return {str(k): str(v) for k, v in loaded.items()}
    except (OSError, ValueError):
        pass  # absent or damaged: run dvc init again
    files = _run_dvc_init(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    scratch = saved.with_suffix(f".tmp{os.getpid()}")
    scratch.write_text(json.dumps(files), encoding="utf-8")
    os.replace(scratch, saved)  # atomic: a concurrent process reads all or nothing
    return files


def _run_dvc_init(state_dir: Path) -> dict[str, str]:
    dvc = Path(sys.executable).parent / "dvc"
    with tempfile.TemporaryDirectory(prefix="dshub-dvc-init-") as scratch:
        env = dvc_environment(state_dir)
        try:
            subprocess.run(["git", "init", "-q", scratch], check=True, capture_output=True, env=env)
            subprocess.run(
                [str(dvc), "init", "-q"], cwd=scratch, check=True, capture_output=True, env=env
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise Unavailable(f"dvc init could not run here ({type(exc).__name__})") from exc
        return {path: (Path(scratch) / path).read_text(encoding="utf-8") for path in DVC_FILES}


def pipeline_text() -> str:
    """The shipped dataset pipeline (`.gitlab-ci.yml` of every new dataset)."""
    for candidate in PIPELINE_CANDIDATES:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise Unavailable(
        "the dataset pipeline (share/dshub/gitlab-ci/dataset.gitlab-ci.yml) is not installed: "
        "reinstall dshub from its wheel"
    )


def readme_text(
    name: str, description: str, clone_url: str, project_id: int, dshub_url: str | None
) -> str:
    """The new dataset's README: its description, then how to get the data."""
    folder = clone_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    server = f"DSHUB_URL={dshub_url} " if dshub_url else ""
    lines = [
        f"# {name}",
        "",
        description.strip() or "_No description yet._",
        "",
        "## Get the data",
        "",
        "This dataset is a [DVC](https://dvc.org) repository: git holds small pointer files",
        "(`*.dvc`), the bytes live in the dataset's storage site. Once a storage site is",
        "selected, dshub commits the `dshub` remote to `.dvc/config`, and then:",
        "",
        "```sh",
        f"git clone {clone_url}",
        f"cd {folder}",
        "dvc pull",
        "```",
        "",
        "One file without cloning, with the dshub command line:",
        "",
        "```sh",
        f"{server}dshub download --project-id {project_id} NAME DATASET_PATH",
        "```",
        "",
    ]
    return "\n".join(lines)
