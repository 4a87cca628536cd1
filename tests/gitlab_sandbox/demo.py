"""Seed the GitLab sandbox with demo datasets — through dshub's own API (used by `make run`).

GitLab-side setup only is done with the sandbox's admin token: two people (`alice`, who owns
the groups `demo` and `lab`, and `bob`, who belongs to neither), their personal access tokens,
the two groups and a system hook delivering GitLab's events to dshub. Everything a person does
to a dataset is then done **as alice through dshub's REST API** (the same client and upload
code as the `dshub` command line): create three datasets, apply the local storage site, upload
generated images (loose files, and one tracked directory), make versions v0.1.0 and v0.2.0 with
release notes, and start a project from a dataset when the server offers that.

- `demo/cats` (public): `images/cat0..3.png` + `labels.csv` → v0.1.0; `images/cat4.png` → v0.2.0
- `demo/cells` (public): the tracked directory `cells/` (six micrographs) → v0.1.0
- `lab/scans` (private: bob sees it nowhere): `scans/scan0..2.png` → v0.1.0

Tokens are written to `<data dir>/tokens/<user>` (0600) and never printed. Idempotent: when
`demo/cats` exists nothing is done.

    python -m tests.gitlab_sandbox.demo --gitlab URL --dshub URL --data-dir DIR
    (the sandbox admin token from DSHUB_SANDBOX_ADMIN_TOKEN, the hook's from DSHUB_WEBHOOK_SECRET)
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab
from PIL import Image, ImageDraw

from dshub.client import ApiClient
from dshub.config import ClientConfig
from dshub.upload import collect, upload
from indexer.errors import DshubError

PROJECT = "demo/cats"
COLOURS = [(224, 122, 95), (61, 64, 91), (129, 178, 154), (242, 204, 143), (120, 94, 240)]
PEOPLE = {"alice": "Alice Example", "bob": "Bob Example"}


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
    return _png(image)


def micrograph(index: int, size: int = 256) -> bytes:
    """A 'microscope image': a few cells (nucleus in a membrane) on a dark field."""
    image = Image.new("RGB", (size, size), (12, 16, 28))
    draw = ImageDraw.Draw(image)
    for cell in range(3 + index % 3):
        x = 30 + (cell * 67 + index * 41) % (size - 60)
        y = 30 + (cell * 89 + index * 23) % (size - 60)
        draw.ellipse((x - 26, y - 22, x + 26, y + 22), outline=(90, 220, 120), width=3)
        draw.ellipse((x - 9, y - 8, x + 9, y + 8), fill=(70, 110, 240))
    draw.text((8, 8), f"field {index}", fill=(200, 200, 200))
    return _png(image)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class Seeded:
    """What the seed made, for the summary `make run` prints."""

    tokens: dict[str, Path]
    datasets: list[str]
    project: str | None


def _person(gl: gitlab.Gitlab, username: str, token_dir: Path) -> tuple[int, str]:
    """Create a sandbox user with a personal access token; the token is stored 0600."""
    user = gl.users.create(
        {"username": username, "name": PEOPLE[username], "email": f"{username}@example.com"}
    )
    token = str(user.personal_access_tokens.create({"name": "demo", "scopes": ["api"]}).token)
    token_dir.mkdir(parents=True, exist_ok=True)
    path = token_dir / username
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return int(user.id), token


def _group(gl: gitlab.Gitlab, path: str, visibility: str, owner: int) -> None:
    group = gl.groups.create({"name": path, "path": path, "visibility": visibility})
    group.members.create({"user_id": owner, "access_level": 50})


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


class _Dshub:
    """alice's side of the seed: dshub's REST API and upload client, nothing else."""

    def __init__(self, url: str, token: str, scratch: Path) -> None:
        self.api = ApiClient(ClientConfig(url=url.rstrip("/"), token=token), timeout=120)
        self.scratch = scratch

    def dataset(
        self, name: str, namespace: str, visibility: str, description: str, topics: list[str]
    ) -> int:
        made = self.api.send_json(
            "POST",
            "/api/v1/datasets",
            {
                "name": name,
                "namespace": namespace,
                "description": description,
                "visibility": visibility,
                "topics": topics,
            },
        )
        project_id = int(made["id"])
        self.api.send_json("POST", f"/api/v1/datasets/{project_id}/storage-site", {"name": "local"})
        return project_id

    def upload(
        self,
        project_id: int,
        folder: str,
        files: dict[str, bytes],
        message: str,
        layout: str = "files",
    ) -> None:
        source = _write(Path(tempfile.mkdtemp(dir=self.scratch)), files)
        upload(
            self.api,
            project_id,
            collect([str(source)]),
            options={"folder": folder, "layout": layout, "confirm": True},
            message=message,
            progress=False,
        )

    def version(self, project_id: int, name: str, notes: str) -> None:
        self.api.send_json(
            "POST", f"/api/v1/datasets/{project_id}/versions", {"name": name, "message": notes}
        )

    def start_project(self, project_id: int, name: str, namespace: str, ref: str) -> str | None:
        """Start a project from a dataset when this server offers it (issue: new projects)."""
        try:
            made: dict[str, Any] = self.api.send_json(
                "POST",
                f"/api/v1/datasets/{project_id}/projects",
                {"name": name, "namespace": namespace, "ref": ref},
            )
        except DshubError as exc:
            if getattr(exc, "status", None) in (404, 405):
                return None
            raise
        return str(made.get("path_with_namespace") or made.get("path") or name)


def seed(
    gitlab_url: str, admin_token: str, dshub_url: str, secret: str, data_dir: Path
) -> Seeded | str:
    """Create the demo unless it exists; returns what was made (or why nothing was)."""
    gl = gitlab.Gitlab(gitlab_url, private_token=admin_token)
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
    token_dir = data_dir / "tokens"
    alice_id, alice = _person(gl, "alice", token_dir)
    _person(gl, "bob", token_dir)
    _group(gl, "demo", "public", alice_id)
    _group(gl, "lab", "private", alice_id)

    with tempfile.TemporaryDirectory(prefix="dshub-demo-") as tmp:
        dshub = _Dshub(dshub_url, alice, Path(tmp))
        cats = dshub.dataset(
            "cats",
            "demo",
            "public",
            "Demo dataset: cat pictures with labels",
            ["cats", "classification", "demo"],
        )
        labels = "file,label\n" + "".join(f"images/cat{i}.png,cat\n" for i in range(4))
        dshub.upload(cats, "images", {f"cat{i}.png": picture(i) for i in range(4)}, "Add four cats")
        dshub.upload(cats, "", {"labels.csv": labels.encode()}, "Add the labels")
        dshub.version(cats, "v0.1.0", "First version: four cats and their labels")
        dshub.upload(cats, "images", {"cat4.png": picture(4)}, "Add a fifth cat")
        dshub.version(cats, "v0.2.0", "Five cats (cat4 added)")

        cells = dshub.dataset(
            "cells",
            "demo",
            "public",
            "Demo dataset: fluorescence micrographs, one DVC-tracked directory",
            ["microscopy", "segmentation", "demo"],
        )
        fields = {f"field{i}.png": micrograph(i) for i in range(6)}
        dshub.upload(cells, "cells", fields, "Add six fields", layout="directory")
        dshub.version(cells, "v0.1.0", "Six fields of view")

        scans = dshub.dataset(
            "scans", "lab", "private", "Private demo dataset: only the lab sees it", ["demo"]
        )
        dshub.upload(
            scans, "scans", {f"scan{i}.png": micrograph(10 + i) for i in range(3)}, "Scans"
        )
        dshub.version(scans, "v0.1.0", "Three scans")

        project = dshub.start_project(cats, "cats-classifier", "demo", "v0.2.0")
    return Seeded(
        tokens={name: token_dir / name for name in PEOPLE},
        datasets=["demo/cats", "demo/cells", "lab/scans"],
        project=project,
    )


def summary(seeded: Seeded | str, dshub_url: str) -> str:
    """The lines `make run` prints: what to open and which token is whose."""
    if isinstance(seeded, str):
        return seeded
    base = dshub_url.rstrip("/")
    lines = [
        "Demo (made through dshub's API as alice):",
        *(f"  {base}/datasets/{path}" for path in seeded.datasets),
    ]
    if seeded.project:
        lines.append(f"  project started from demo/cats at v0.2.0: {seeded.project}")
    lines += [
        f"  alice owns demo and lab: token in {seeded.tokens['alice']}",
        f"  bob has no access to lab/scans: token in {seeded.tokens['bob']}",
        "  sign in on the web page with a token; for git and dvc:",
        f"  .venv/bin/dshub login --token-stdin < {seeded.tokens['alice']}",
    ]
    return "\n".join(lines)


def main() -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gitlab", required=True)
    parser.add_argument("--dshub", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    args = parser.parse_args()
    token = os.environ.get("DSHUB_SANDBOX_ADMIN_TOKEN")
    secret = os.environ.get("DSHUB_WEBHOOK_SECRET")
    if not token or not secret:
        print(
            "demo seed: DSHUB_SANDBOX_ADMIN_TOKEN and DSHUB_WEBHOOK_SECRET must be set",
            file=sys.stderr,
        )
        return 2
    try:
        seeded = seed(args.gitlab, token, args.dshub, secret.split(",")[0], args.data_dir)
    except DshubError as exc:
        print(f"demo seed: dshub refused a step: {exc}", file=sys.stderr)
        return 1
    print(summary(seeded, args.dshub))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
