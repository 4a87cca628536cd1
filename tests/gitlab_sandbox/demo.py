"""Seed the GitLab sandbox with a small demo dataset (used by `make run` on its first start).

Creates the public dataset `demo/cats` with real DVC-tracked images in the local storage
site, two versions (`v0.1.0`, `v0.2.0`), and a system hook that delivers GitLab's events to
dshub — so the first `make run` shows search, versions and downloads working. Idempotent:
an existing `demo/cats` is left alone.

    python -m tests.gitlab_sandbox.demo --gitlab URL --dshub URL --storage DIR
    (tokens from DSHUB_SANDBOX_ADMIN_TOKEN and DSHUB_WEBHOOK_SECRET)
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import gitlab
from PIL import Image, ImageDraw

from indexer.data.dvc_env import dvc_environment

PROJECT = "demo/cats"
COLOURS = [(224, 122, 95), (61, 64, 91), (129, 178, 154), (242, 204, 143), (120, 94, 240)]


def picture(index: int, size: int = 320) -> bytes:
    """A small, distinct PNG (a 'cat' of circles) so previews have something to show."""
    colour = COLOURS[index % len(COLOURS)]
    image = Image.new("RGB", (size, size), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 90, 260, 290), fill=colour)
    draw.polygon([(70, 120), (110, 30), (150, 110)], fill=colour)
    draw.polygon([(170, 110), (210, 30), (250, 120)], fill=colour)
    draw.ellipse((115, 160, 135, 180), fill=(20, 20, 20))
    draw.ellipse((185, 160, 205, 180), fill=(20, 20, 20))
    draw.text((12, 12), f"cat {index}", fill=(40, 40, 40))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"demo seed: {' '.join(argv[:3])} failed: {result.stderr.strip()[-300:]}")


def seed(gitlab_url: str, token: str, dshub_url: str, secret: str, storage: Path) -> str:
    """Create the demo dataset unless it exists; returns a one-line summary."""
    gl = gitlab.Gitlab(gitlab_url, private_token=token)
    hook_url = f"{dshub_url.rstrip('/')}/webhooks/gitlab"
    if not any(hook.url == hook_url for hook in gl.hooks.list(get_all=True)):
        gl.hooks.create(
            {
                "url": hook_url,
                "token": secret,
                "push_events": True,
                "tag_push_events": True,
                "merge_requests_events": True,
                "repository_update_events": True,
            }
        )
    try:
        existing = gl.projects.get(PROJECT)
        return f"demo dataset {PROJECT} already exists (id {existing.id})"
    except gitlab.GitlabGetError:
        pass
    group = gl.groups.create({"name": "demo", "path": "demo", "visibility": "public"})
    project = gl.projects.create(
        {
            "name": "cats",
            "namespace_id": group.id,
            "visibility": "public",
            "initialize_with_readme": True,
            "topics": ["cats", "classification", "demo"],
            "description": "Demo dataset: cat pictures with labels, tracked with DVC",
        }
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": "local"})

    with tempfile.TemporaryDirectory(prefix="dshub-demo-") as tmp:
        work = Path(tmp) / "cats"
        env = {**dvc_environment(Path(tmp) / "dvc-state"), "GIT_TERMINAL_PROMPT": "0"}
        # dvc lives next to this interpreter, even when the venv is not activated.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        remote = f"http://oauth2:{token}@{urlsplit(gitlab_url).netloc}/{PROJECT}.git"
        _run(["git", "clone", "-q", remote, str(work)], Path(tmp), env)
        git = ["git", "-c", "user.name=Demo", "-c", "user.email=demo@example.com"]
        _run(["dvc", "init", "-q"], work, env)
        site_dir = storage / str(project.id)
        site_dir.mkdir(parents=True, exist_ok=True)
        _run(["dvc", "remote", "add", "-d", "local", str(site_dir)], work, env)
        (work / "images").mkdir()
        for index in range(4):
            (work / "images" / f"cat{index}.png").write_bytes(picture(index))
        (work / "labels.csv").write_text(
            "file,label\n" + "".join(f"images/cat{i}.png,cat\n" for i in range(4))
        )
        _run(["dvc", "add", "-q", "images", "labels.csv"], work, env)
        _run([*git, "add", "-A"], work, env)
        _run([*git, "commit", "-q", "-m", "Add four cats and their labels"], work, env)
        _run(["dvc", "push", "-q"], work, env)
        _run([*git, "push", "-q", "origin", "HEAD:main"], work, env)
        _run([*git, "tag", "-a", "v0.1.0", "-m", "First version"], work, env)
        _run([*git, "push", "-q", "origin", "v0.1.0"], work, env)
        (work / "images" / "cat4.png").write_bytes(picture(4))
        _run(["dvc", "add", "-q", "images"], work, env)
        _run([*git, "add", "-A"], work, env)
        _run([*git, "commit", "-q", "-m", "Add a fifth cat"], work, env)
        _run(["dvc", "push", "-q"], work, env)
        _run([*git, "push", "-q", "origin", "HEAD:main"], work, env)
        _run([*git, "tag", "-a", "v0.2.0", "-m", "Five cats"], work, env)
        _run([*git, "push", "-q", "origin", "v0.2.0"], work, env)
    return f"demo dataset {PROJECT} created (id {project.id}) with versions v0.1.0 and v0.2.0"


def main() -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gitlab", required=True)
    parser.add_argument("--dshub", required=True)
    parser.add_argument("--storage", required=True, type=Path)
    args = parser.parse_args()
    token = os.environ.get("DSHUB_SANDBOX_ADMIN_TOKEN")
    secret = os.environ.get("DSHUB_WEBHOOK_SECRET")
    if not token or not secret:
        print(
            "demo seed: DSHUB_SANDBOX_ADMIN_TOKEN and DSHUB_WEBHOOK_SECRET must be set",
            file=sys.stderr,
        )
        return 2
    print(seed(args.gitlab, token, args.dshub, secret.split(",")[0], args.storage))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
