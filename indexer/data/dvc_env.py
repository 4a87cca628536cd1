"""Process hygiene for every code path that runs DVC: no analytics, no update checks.

DVC reads a global and a system config directory; pointing both at a private directory
whose config turns off `check_update` and `analytics` keeps a developer's own DVC config
out of our runs and keeps DVC from calling home.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CONFIG_TEXT = "[core]\n    check_update = false\n    analytics = false\n"


def dvc_environment(state_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return an environment for running DVC with its config and site cache under `state_dir`.

    `state_dir` is created if needed; `base` defaults to the current process environment.
    """
    config_dir = state_dir / "config"
    site_cache = state_dir / "site-cache"
    config_dir.mkdir(parents=True, exist_ok=True)
    site_cache.mkdir(parents=True, exist_ok=True)
    config_file = config_dir / "config"
    if not config_file.exists() or config_file.read_text() != CONFIG_TEXT:
        config_file.write_text(CONFIG_TEXT)
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "DVC_NO_ANALYTICS": "1",
            "DVC_GLOBAL_CONFIG_DIR": str(config_dir),
            "DVC_SYSTEM_CONFIG_DIR": str(config_dir),
            "DVC_SITE_CACHE_DIR": str(site_cache),
            "DVC_STUDIO_OFFLINE": "true",
        }
    )
    return env


def apply_to_process(state_dir: Path) -> None:
    """Apply `dvc_environment` to this process, for DVC used as a library in-process."""
    os.environ.update(dvc_environment(state_dir))
